"""Dagster instances for tests: ephemeral, and knowing the reanalysis months as partitions (the
new-month sensor or `make demo` registers published months; a test registers them itself)."""

import datetime as dt

from dagster import DagsterInstance

from dagster_project.partitions import register_published_months


def instance_knowing_months(latest: str = "2024-12") -> DagsterInstance:
    """An ephemeral instance whose reanalysis months 2001-01..`latest` (YYYY-MM) are partitions."""
    instance = DagsterInstance.ephemeral()
    register_published_months(instance, dt.date.fromisoformat(f"{latest}-01"))
    return instance
