"""Our own strict RFC 3339 timestamps and durations (``30m``, ``2h``, ``1d``, ``PT1H30M``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RFC3339 = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?P<frac>\.\d{1,9})?"
    r"(?P<tz>[Zz]|[+-]\d{2}:\d{2})$"
)
_SHORT = re.compile(r"^(?P<n>[0-9]{1,6})(?P<unit>[smhdw])$")
_ISO = re.compile(
    r"^P(?:(?P<w>\d{1,6})W)?(?:(?P<d>\d{1,6})D)?"
    r"(?:T(?:(?P<h>\d{1,6})H)?(?:(?P<m>\d{1,6})M)?(?:(?P<s>\d{1,6})S)?)?$"
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=3660)
MAX_YEAR = 9000


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp that carries an explicit offset; return it in UTC.

    >>> parse_rfc3339("2026-12-01T09:00:00+01:00").isoformat()
    '2026-12-01T08:00:00+00:00'
    """
    m = _RFC3339.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(
            f"{text!r} is not an RFC 3339 timestamp with an offset (e.g. 2026-12-01T09:00:00Z)"
        )
    frac = (m["frac"] or "")[:7].ljust(7, "0")[1:] if m["frac"] else ""
    tz = "+00:00" if m["tz"] in ("Z", "z") else m["tz"]
    stamp = f"{m['date']}T{m['time']}{('.' + frac) if frac else ''}{tz}"
    try:
        value = datetime.fromisoformat(stamp).astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # 0001-01-01T00:00:00+14:00 is before year 1
        raise ValueError(f"{text!r} is not a valid date and time: {exc}") from None
    if value.year > MAX_YEAR:
        # Windows and GCP conditions add durations to these times; year 9999 would overflow.
        raise ValueError(f"{text!r} is too far in the future (after the year {MAX_YEAR})")
    return value


def format_rfc3339(value: datetime) -> str:
    """UTC, second precision, with a ``Z``: the one format accessctl prints."""
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_duration(text: str) -> timedelta:
    """``30m``, ``2h``, ``1d``, ``1w`` or ISO 8601 (``PT1H30M``, ``P1D``); positive, bounded."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration (use 30m, 2h, 1d or ISO 8601 like PT2H)")
    s = text.strip()
    m = _SHORT.match(s)
    if m:
        value = timedelta(seconds=int(m["n"]) * _UNIT_SECONDS[m["unit"]])
    else:
        iso = _ISO.match(s)
        if not iso or s in ("P", "PT") or s.endswith("T"):
            raise ValueError(f"{text!r} is not a duration (use 30m, 2h, 1d or ISO 8601 like PT2H)")
        parts = {k: int(v) for k, v in iso.groupdict().items() if v is not None}
        value = timedelta(
            weeks=parts.get("w", 0),
            days=parts.get("d", 0),
            hours=parts.get("h", 0),
            minutes=parts.get("m", 0),
            seconds=parts.get("s", 0),
        )
    if value <= timedelta(0):
        raise ValueError(f"duration {text!r} must be greater than zero")
    if value > MAX_DURATION:
        raise ValueError(f"duration {text!r} is longer than ten years")
    return value


def format_duration(value: timedelta) -> str:
    """The shortest of ``1d2h30m`` that says it exactly (``45s`` for sub-minute)."""
    total = int(value.total_seconds())
    if total <= 0:
        return "0m"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, total = divmod(total, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)
