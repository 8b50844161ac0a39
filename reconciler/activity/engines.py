"""Which log source reads each provider's activity, from ``providers.<name>.activity_source``.

- ``gcp``: ``entries-list`` (default: Cloud Logging per scope) or ``log-bucket`` (one
  organisation-level log bucket or aggregated sink: ``activity_bucket`` names its view).
How long a session can outlive its grant is the provider's knowledge: ``SESSIONS`` reads
it (AWS: each permission set's SessionDuration, through the AWS provider).

- ``aws``: ``lookup-events`` (default: CloudTrail per account and region) or
  ``cloudtrail-lake`` (one SQL query per account over an organisation event data store,
  ``activity_event_data_store``; the store's region when it is an ARN).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from reconciler.activity.sources import LogSource
from reconciler.core.models import Config
from reconciler.errors import ConfigError


def _settings(config: Config, provider: str) -> Mapping[str, Any]:
    return config.providers.get(provider) or {}


def gcp_source(config: Config, options: Mapping[str, Any]) -> LogSource:
    from reconciler.activity.gcp import PAGE_SIZE, CloudLogging

    raw = _settings(config, "gcp")
    kind = raw.get("activity_source", "entries-list")
    page_size = int(options.get("page_size") or PAGE_SIZE)
    if kind == "entries-list":
        return CloudLogging(options.get("endpoint"), page_size=page_size)
    if kind == "log-bucket":
        bucket = raw.get("activity_bucket")
        if not bucket:
            raise ConfigError(
                "providers.gcp.activity_source log-bucket needs activity_bucket "
                "(organizations/<n>/locations/<l>/buckets/<b>/views/<v>)"
            )
        return CloudLogging(options.get("endpoint"), page_size=page_size, bucket=str(bucket))
    raise ConfigError(f"providers.gcp.activity_source: unknown source {kind!r}")


def aws_regions(config: Config) -> list[str]:
    raw = _settings(config, "aws")
    regions = [str(raw["region"])] if raw.get("region") else []
    regions += [str(r) for r in raw.get("activity_regions") or ()]
    if not regions:
        raise ConfigError("no AWS region for activity: set providers.aws.region in policies/")
    return list(dict.fromkeys(regions))


def aws_source(config: Config, options: Mapping[str, Any]) -> LogSource:
    raw = _settings(config, "aws")
    kind = raw.get("activity_source", "lookup-events")
    role = raw.get("activity_role")
    if kind == "lookup-events":
        from reconciler.activity.aws import CloudTrail

        return CloudTrail(
            aws_regions(config),
            role_template=str(role) if role else None,
            client_factory=options.get("client_factory"),
        )
    if kind == "cloudtrail-lake":
        from reconciler.activity.lake import CloudTrailLake, store_region

        store = raw.get("activity_event_data_store")
        if not store:
            raise ConfigError(
                "providers.aws.activity_source cloudtrail-lake needs activity_event_data_store "
                "(the event data store ARN or id)"
            )
        region = store_region(str(store)) or aws_regions(config)[0]
        return CloudTrailLake(str(store), region=region)
    raise ConfigError(f"providers.aws.activity_source: unknown source {kind!r}")


SOURCES: dict[str, Callable[[Config, Mapping[str, Any]], LogSource]] = {
    "gcp": gcp_source,
    "aws": aws_source,
}


# role -> its longest session (None: unset or unreadable), and the API calls it took
SessionLengths = tuple[dict[str, timedelta | None], int]


def aws_sessions(config: Config, options: Mapping[str, Any]) -> SessionLengths:
    """Permission set name -> SessionDuration, read once through the AWS provider
    (ListPermissionSets, then DescribePermissionSet once per set)."""
    from reconciler.core import providers

    adapter = providers.spec("aws").adapter(config, options)
    lengths = {name: duration for name, _, duration in adapter.describe_permission_sets()}
    return lengths, sum(adapter.calls.snapshot().values())


SESSIONS: dict[str, Callable[[Config, Mapping[str, Any]], SessionLengths]] = {
    "aws": aws_sessions,
}
