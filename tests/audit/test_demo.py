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
def test_demo_grants_uses_expires_revokes_cuts_off_and_audits_within_a_minute() -> None:
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
    # the unmanaged binding and the project's audit config survived every apply
    assert out.count("roles/viewer: group:payments-team@example.com") == 2
    assert out.count("Data Access audit logs on: cloudsql.googleapis.com") == 2
    # alice at work: an allowed read and a refused restart, checked by the GCP emulator
    assert "-> 200 OK: checkout-db (POSTGRES_15, RUNNABLE)" in out
    assert "-> 403 PERMISSION_DENIED: The client is not authorized" in out
    # activity shows her operations, the denied one marked, the AWS calls after the end
    assert "cloudsql.instances.list projects/payments-prod\n" in out
    assert "cloudsql.instances.restart projects/payments-prod/instances/checkout-db DENIED" in out
    assert "ec2 DescribeInstances AFTER-END" in out
    assert "s3 GetObject DENIED AFTER-END" in out
    assert "! used-after-end: requests/alice/inc-4821-aws.yaml" in out
    assert "! denied-attempts: requests/alice/inc-4821.yaml" in out
    # audit --activity flags the AWS grant too
    audit = out[out.index("$ accessctl audit") :]
    assert "! used-after-end: alice@example.com made 2 call(s) in 111122223333" in audit
    # the revocation cut her earlier AWS sessions off, then the Deny was cleaned up
    deny = out.index('"Sid": "AccessctlRevoke20261201T111000ZUntil20261201T121000Z"')
    assert '"aws:TokenIssueTime": "2026-12-01T11:10:00Z"' in out[deny:]
    assert "is alice@example.com's identity-store user id" in out[deny:]
    assert "inline policy: (none)" in out[: out.index("What the clouds hold after expiry")]
    cleaned = out.index("The Deny is cleaned up")
    assert deny < cleaned < out.index("ReadOnlyAccess inline policy: (none)", cleaned)
    assert '"sessions_ended_at": "2026-12-01T11:10:00Z"' in out
    # the temporary repository was cleaned up
    assert "kept:" not in out
