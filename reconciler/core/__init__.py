"""The pure core: no I/O, no clock, no cloud, GitHub or CLI imports."""
