"""The emulator's partial responses (``fields``), as Google's REST APIs answer them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime

import pytest

from reconciler.sandbox.gcp_emulator import GcpEmulator
from reconciler.sandbox.gcp_fields import FieldsError, parse, select

ENTRY = {
    "logName": "projects/p/logs/x",
    "timestamp": "2026-12-01T09:00:00Z",
    "insertId": "abc",
    "protoPayload": {
        "methodName": "m",
        "authenticationInfo": {"principalEmail": "a@x", "other": 1},
        "status": {"code": 7, "message": "PERMISSION_DENIED"},
    },
}


def test_select_keeps_only_the_named_fields():
    tree = parse("entries(timestamp,protoPayload(methodName,status/code,missing)),nextPageToken")
    answer = select({"entries": [ENTRY], "other": 1}, tree)
    assert answer == {
        "entries": [
            {
                "timestamp": "2026-12-01T09:00:00Z",
                "protoPayload": {"methodName": "m", "status": {"code": 7}},
            }
        ]
    }


@pytest.mark.parametrize("bad", ["", "a(", "a()", "a//b", ",a", "a)b"])
def test_ill_formed_selectors_are_refused(bad: str):
    with pytest.raises(FieldsError):
        parse(bad)


def test_entries_list_answers_the_selection_and_400_for_a_bad_one():
    emu = GcpEmulator(port=0).start()
    try:
        emu.logging.record(
            "projects/p", "a@x.com", at=datetime(2026, 12, 1, 9),
            service="s", method="m", resource="r", log="activity",
        )  # fmt: skip
        body = json.dumps({"resourceNames": ["projects/p"]}).encode()

        def post(fields: str) -> dict:
            url = f"{emu.url}/v2/entries:list?fields={fields}"
            req = urllib.request.Request(url, data=body, method="POST")
            req.add_header("Content-Type", "application/json")
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())

        [entry] = post("entries(timestamp,protoPayload/methodName)")["entries"]
        assert set(entry) == {"timestamp", "protoPayload"}
        assert entry["protoPayload"] == {"methodName": "m"}
        with pytest.raises(urllib.error.HTTPError) as refused:
            post("entries(")
        assert refused.value.code == 400
    finally:
        emu.stop()
