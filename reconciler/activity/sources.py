"""The seam between the activity use case and the clouds' audit logs.

A source answers one ``ScopeQuery`` (one scope, its principals, a time range) with the
``LogEvent`` values it found, principals spelled as in ``identities``; it raises
``LogReadError`` when the scope's log cannot be read (the other scopes are still read).

```python
class MySource:
    def read(self, query: ScopeQuery) -> list[LogEvent]: ...
    calls: int  # API calls made so far (pages)
```
"""

from __future__ import annotations

from typing import Protocol

from reconciler.core.activity import LogEvent, ScopeQuery
from reconciler.errors import ProviderError


class LogReadError(ProviderError):
    """One scope's audit log could not be read: reported under ``errors``, exit 1."""


class LogSource(Protocol):
    calls: int

    def read(self, query: ScopeQuery) -> list[LogEvent]: ...
