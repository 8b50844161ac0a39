"""`accessctl demo` runs the whole lifecycle end to end, as `make demo` does."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.audit.conftest import ROOT

# The demo on the policies embedded in the package (an installed wheel's), not on the
# checkout's example policies/: the tests never depend on the example content.
DEMO_ON_EMBEDDED_POLICIES = (
    "import reconciler.commands.demo as demo\n"
    "demo.example_policies = lambda: dict(demo.FALLBACK_POLICIES)\n"
    "from reconciler.cli import main\n"
    "main(['demo'])\n"
)


@pytest.mark.slow
def test_demo_grants_expires_revokes_and_audits_within_a_minute() -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "AWS_", "ACCESSCTL_"))
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", DEMO_ON_EMBEDDED_POLICIES],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    elapsed = time.monotonic() - started

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert elapsed < 60
    out = proc.stdout
    assert "Traceback" not in out + proc.stderr
    # the grant, what the clouds held, the revocation, and the trail
    assert "Applied: 2 ok, 0 failed." in out
    assert 'request.time < timestamp("2026-12-01T11:00:00Z")' in out
    assert "ReadOnlyAccess USER alice@example.com" in out
    assert "- revoke user:alice@example.com" in out
    assert "(none)" in out  # the AWS assignment is gone after expiry
    assert "ledger      grant ok" in out and "ledger      revoke ok" in out
    assert "demo complete" in out
    # the unmanaged binding survived every apply
    assert out.count("roles/viewer: group:payments-team@example.com") == 2
    # the temporary repository was cleaned up
    assert "kept:" not in out
