"""The Cloud SQL Admin API the GCP emulator serves to principals: instances of a project.

A read a viewer makes and a write a viewer may not, in the shapes of the API's discovery
document (``sqladmin`` v1, the same paths under ``/sql/v1beta4``):

- ``GET  /v1/projects/{project}/instances``: ``InstancesListResponse``
  (``kind: sql#instancesList``, ``items``), permission ``cloudsql.instances.list``;
- ``GET  /v1/projects/{project}/instances/{instance}``: a ``DatabaseInstance``,
  permission ``cloudsql.instances.get``;
- ``POST /v1/projects/{project}/instances/{instance}/restart``: an ``Operation``
  (``kind: sql#operation``, ``operationType: RESTART``), ``cloudsql.instances.restart``.

Cloud SQL's audit logs use the service ``cloudsql.googleapis.com`` and the permission as the
method name; reads (ADMIN_READ) go to the Data Access log, writes (ADMIN_WRITE) to Admin
Activity. Instances are seeded (``add``); nothing here runs a database.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SERVICE = "cloudsql.googleapis.com"
BASE = "https://sqladmin.googleapis.com/v1"
NOT_AUTHORIZED = "The client is not authorized to make this request."
PATH = re.compile(
    r"^/(?:v1|sql/v1beta4)/projects/(?P<project>[^/]+)/instances"
    r"(?:/(?P<instance>[^/:]+)(?:/(?P<action>restart))?)?$"
)


@dataclass(frozen=True)
class SqlCall:
    """What one Cloud SQL Admin request asks for, and what IAM and the logs make of it."""

    project: str
    instance: str | None
    permission: str  # also the audit log's methodName
    log_type: str  # ADMIN_READ or ADMIN_WRITE

    @property
    def resource(self) -> str:
        """The audited resourceName."""
        if self.instance is None:
            return f"projects/{self.project}"
        return f"projects/{self.project}/instances/{self.instance}"


def parse(http_method: str, path: str) -> SqlCall | None:
    """The call a path stands for; None when it is not a Cloud SQL Admin path served here."""
    m = PATH.match(path)
    if m is None:
        return None
    project, instance, action = m["project"], m["instance"], m["action"]
    if http_method == "GET" and instance is None:
        return SqlCall(project, None, "cloudsql.instances.list", "ADMIN_READ")
    if http_method == "GET" and action is None:
        return SqlCall(project, instance, "cloudsql.instances.get", "ADMIN_READ")
    if http_method == "POST" and action == "restart":
        return SqlCall(project, instance, "cloudsql.instances.restart", "ADMIN_WRITE")
    return None


def error_body(status: int, message: str, reason: str) -> dict[str, Any]:
    """Cloud SQL's error body: Google's JSON error with the legacy ``errors`` list."""
    name = {403: "PERMISSION_DENIED", 404: "NOT_FOUND"}.get(status, "UNKNOWN")
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": name,
        }
    }


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class SqlInstances:
    """Seeded Cloud SQL instances per project id; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instances: dict[str, dict[str, dict[str, Any]]] = {}

    def add(
        self,
        project: str,
        name: str,
        *,
        database_version: str = "POSTGRES_15",
        region: str = "europe-west1",
        tier: str = "db-custom-2-7680",
    ) -> dict[str, Any]:
        """An instance in ``project`` (an id, or ``projects/<id>``), as ``instances.get``
        returns it."""
        project = project.removeprefix("projects/")
        instance = {
            "kind": "sql#instance",
            "state": "RUNNABLE",
            "databaseVersion": database_version,
            "settings": {"kind": "sql#settings", "tier": tier, "availabilityType": "ZONAL"},
            "project": project,
            "name": name,
            "region": region,
            "gceZone": f"{region}-b",
            "backendType": "SECOND_GEN",
            "instanceType": "CLOUD_SQL_INSTANCE",
            "connectionName": f"{project}:{region}:{name}",
            "selfLink": f"{BASE}/projects/{project}/instances/{name}",
        }
        with self._lock:
            self._instances.setdefault(project, {})[name] = instance
        return dict(instance)

    def list(self, project: str) -> dict[str, Any]:
        with self._lock:
            items = [dict(i) for _, i in sorted(self._instances.get(project, {}).items())]
        answer: dict[str, Any] = {"kind": "sql#instancesList"}
        if items:
            answer["items"] = items
        return answer

    def get(self, project: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._instances.get(project, {}).get(name)
            return dict(found) if found else None

    def restart(self, project: str, name: str, user: str, at: datetime) -> dict[str, Any]:
        """The operation a restart returns (done at once: nothing runs)."""
        digest = hashlib.sha256(f"{project}/{name}/{_stamp(at)}".encode()).hexdigest()
        op = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
        return {
            "kind": "sql#operation",
            "targetLink": f"{BASE}/projects/{project}/instances/{name}",
            "status": "DONE",
            "user": user,
            "insertTime": _stamp(at),
            "startTime": _stamp(at),
            "endTime": _stamp(at),
            "operationType": "RESTART",
            "name": op,
            "targetId": name,
            "selfLink": f"{BASE}/projects/{project}/operations/{op}",
            "targetProject": project,
        }
