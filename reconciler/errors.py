"""The one exception base of accessctl, and Finding: a problem at file:line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Finding:
    """A problem in a file, reported to a person at ``file:line``.

    ``code`` is a stable, greppable identifier (``E-YAML-DUPKEY``, ``E-POLICY-NONE``...).
    ``line`` is 1-based; 1 when the problem concerns the whole file.
    """

    file: str
    line: int
    code: str
    message: str
    severity: Severity = "error"

    def to_json(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "code": self.code, "message": self.message}

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.code}: {self.message}"


class AccessctlError(Exception):
    """Base of every error accessctl raises on purpose; ``str()`` is for a person."""

    exit_code = 2


class ConfigError(AccessctlError):
    """Configuration or usage is wrong (exit 2): missing credentials, bad flag, bad policies."""

    def __init__(self, message: str, findings: tuple[Finding, ...] = ()) -> None:
        super().__init__(message)
        self.findings = findings


class ProviderError(AccessctlError):
    """A cloud call failed after its retries; the scope it concerns is reported failed."""

    exit_code = 1


class GitHubError(AccessctlError):
    """A GitHub API call failed after its retries."""

    exit_code = 1
