"""A second, independently written Resource Manager v3 IAM emulator for black-box tests.

Written from Google's public reference (Policy, GetPolicyOptions, setIamPolicy), not from
reconciler/sandbox/gcp_emulator.py, so the provider cannot lean on our own emulator's quirks.
Behaviour modelled on the real API:

- POST /v3/{projects|folders|organizations}/ID:getIamPolicy and :setIamPolicy; any query
  string (the client sends ``$alt=json;enum-encoding=int``) is accepted and ignored.
- Responses omit empty fields like proto3 JSON does: no ``bindings`` key on an empty policy,
  no ``condition``, no ``auditConfigs``.  ``version`` is 1 unless a binding has a condition.
- etags are opaque base64 of a per-resource counter; a stale etag on set is 409 ABORTED.
- A conditional policy read with requestedPolicyVersion < 3 is 400; a set with conditions
  and version != 3 is 400; conditions on basic roles are 400.
- Bindings come back sorted by role, members sorted and de-duplicated, equal (role,
  condition) bindings merged: the order of the write is not the order of the read.
- A condition title over 100 characters is 400. Google documents no limit; this holds
  accessctl to the one its docs promise (docs/gcp.md), as the strictest surface might.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
TITLE_MAX = 100
_PATH = re.compile(
    r"^/v3/(?P<res>(?:projects|folders|organizations)/[^/:]+):(?P<verb>getIamPolicy|setIamPolicy)$"
)
_MEMBER = re.compile(
    r"^(user|serviceAccount|group|domain|deleted:user|deleted:group|deleted:serviceAccount"
    r"|principal|principalSet):\S+$"
)


class ApiError(Exception):
    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


def _canonical(bindings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for b in bindings:
        cond = b.get("condition") or None
        key = json.dumps([b["role"], cond], sort_keys=True)
        slot = merged.setdefault(key, {"role": b["role"], "members": set(), "condition": cond})
        slot["members"].update(b.get("members") or [])
    out = []
    for slot in sorted(
        merged.values(), key=lambda s: (s["role"], json.dumps(s["condition"], sort_keys=True))
    ):
        if not slot["members"]:
            continue
        item: dict[str, Any] = {"role": slot["role"], "members": sorted(slot["members"])}
        if slot["condition"]:
            item["condition"] = {k: v for k, v in slot["condition"].items() if v}
        out.append(item)
    return out


def _lower(member: str) -> str:
    kind, _, ident = member.partition(":")
    return f"{kind}:{ident.lower()}" if kind in ("user", "group", "serviceAccount") else member


class IndependentGcp:
    """Thread-safe store of IAM policies plus an HTTP server in front of it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.policies: dict[str, dict[str, Any]] = {}
        self.counters: dict[str, int] = {}
        self.calls: list[tuple[str, str]] = []
        self.raw_sets: list[dict[str, Any]] = []
        self.conflicts_to_inject = 0
        self.failing: set[str] = set()  # resources answering 503 UNAVAILABLE
        # IAM stores e-mail member identifiers in lower case; off by default (undocumented)
        self.lowercase_members = False
        # answer setIamPolicy with an empty body (a lazy endpoint): a read must judge
        self.empty_set_response = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> IndependentGcp:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the model -------------------------------------------------------------------

    def _etag(self, res: str) -> str:
        n = self.counters.get(res, 0)
        return base64.b64encode(b"\x07\x05" + n.to_bytes(6, "big")).decode()

    def seed(
        self, res: str, bindings: list[dict[str, Any]], audit: list[dict[str, Any]] | None = None
    ) -> None:
        with self.lock:
            self.policies[res] = {"bindings": _canonical(bindings)}
            if audit:
                self.policies[res]["auditConfigs"] = audit
            self.counters[res] = self.counters.get(res, 0) + 1

    def audit_configs(self, res: str) -> list[dict[str, Any]]:
        with self.lock:
            return json.loads(json.dumps(self.policies.get(res, {}).get("auditConfigs", [])))

    def bindings(self, res: str) -> list[dict[str, Any]]:
        with self.lock:
            return json.loads(json.dumps(self.policies.get(res, {}).get("bindings", [])))

    def bump(self, res: str, bindings: list[dict[str, Any]]) -> None:
        """A concurrent writer: changes the policy (and so its etag) behind our back."""
        self.seed(res, bindings)

    def _view(self, res: str, requested: int) -> dict[str, Any]:
        stored = self.policies.get(res, {})
        bindings = stored.get("bindings", [])
        conditional = any("condition" in b for b in bindings)
        if conditional and requested < 3:
            raise ApiError(400, "INVALID_ARGUMENT", "Policy has conditions: request version 3")
        out: dict[str, Any] = {"version": 3 if conditional else 1}
        if bindings:
            out["bindings"] = json.loads(json.dumps(bindings))
        if stored.get("auditConfigs"):
            out["auditConfigs"] = json.loads(json.dumps(stored["auditConfigs"]))
        out["etag"] = self._etag(res)
        return out

    def get(self, res: str, body: dict[str, Any]) -> dict[str, Any]:
        requested = int((body.get("options") or {}).get("requestedPolicyVersion") or 0)
        if requested not in (0, 1, 3):
            raise ApiError(400, "INVALID_ARGUMENT", "Invalid requestedPolicyVersion")
        with self.lock:
            return self._view(res, requested)

    def set(self, res: str, body: dict[str, Any]) -> dict[str, Any]:
        policy = body.get("policy")
        if not isinstance(policy, dict):
            raise ApiError(400, "INVALID_ARGUMENT", "policy is required")
        self.raw_sets.append(json.loads(json.dumps(body)))
        version = int(policy.get("version") or 0)
        if version not in (0, 1, 3):
            raise ApiError(400, "INVALID_ARGUMENT", "Invalid policy version")
        bindings = policy.get("bindings") or []
        for b in bindings:
            role, cond = b.get("role", ""), b.get("condition")
            if not isinstance(role, str) or not role.startswith(
                ("roles/", "projects/", "organizations/")
            ):
                raise ApiError(400, "INVALID_ARGUMENT", f"Invalid role {role!r}")
            for m in b.get("members") or []:
                if not isinstance(m, str) or not _MEMBER.match(m):
                    raise ApiError(400, "INVALID_ARGUMENT", f"Invalid member {m!r}")
            if cond:
                if version != 3:
                    raise ApiError(400, "INVALID_ARGUMENT", "Conditions require policy version 3")
                if role in BASIC_ROLES:
                    raise ApiError(
                        400, "INVALID_ARGUMENT", f"Conditions are not supported for {role}"
                    )
                if not cond.get("expression") or not cond.get("title"):
                    raise ApiError(400, "INVALID_ARGUMENT", "Condition needs title and expression")
                if len(str(cond["title"])) > TITLE_MAX:
                    raise ApiError(400, "INVALID_ARGUMENT", "Condition title is too long")
        with self.lock:
            etag = policy.get("etag")
            if self.conflicts_to_inject > 0:
                self.conflicts_to_inject -= 1
                self.counters[res] = self.counters.get(res, 0) + 1
            if etag is not None and etag != self._etag(res):
                raise ApiError(409, "ABORTED", "There were concurrent policy changes.")
            stored = self.policies.get(res, {}).get("bindings", [])
            if etag is not None and version != 3 and any("condition" in b for b in stored):
                raise ApiError(
                    400, "INVALID_ARGUMENT", "Stored policy is conditional: use version 3"
                )
            # updateMask defaults to "bindings,etag": other fields survive unless named
            mask = {p.strip() for p in str(body.get("updateMask") or "bindings,etag").split(",")}
            new = dict(self.policies.get(res, {}))
            if "bindings" in mask:
                if self.lowercase_members:
                    bindings = [
                        dict(b, members=[_lower(m) for m in b.get("members") or []])
                        for b in bindings
                    ]
                new["bindings"] = _canonical(bindings)
            if "auditConfigs" in mask or "audit_configs" in mask:
                new["auditConfigs"] = policy.get("auditConfigs") or []
            self.policies[res] = new
            self.counters[res] = self.counters.get(res, 0) + 1
            return {} if self.empty_set_response else self._view(res, 3)

    # -- HTTP ------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emu = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _reply(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                m = _PATH.match(path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if not m:
                    self._reply(
                        404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}
                    )
                    return
                res, verb = m.group("res"), m.group("verb")
                with emu.lock:
                    emu.calls.append((verb, res))
                try:
                    if res in emu.failing:
                        raise ApiError(503, "UNAVAILABLE", "The service is currently unavailable.")
                    body = json.loads(raw or b"{}")
                    payload = emu.get(res, body) if verb == "getIamPolicy" else emu.set(res, body)
                except ApiError as e:
                    self._reply(
                        e.code,
                        {"error": {"code": e.code, "message": e.message, "status": e.status}},
                    )
                    return
                except (ValueError, TypeError, KeyError) as e:
                    self._reply(
                        400,
                        {"error": {"code": 400, "message": str(e), "status": "INVALID_ARGUMENT"}},
                    )
                    return
                self._reply(200, payload)

            def do_GET(self) -> None:
                self._reply(
                    404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}
                )

        return Handler
