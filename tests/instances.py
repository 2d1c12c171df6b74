"""Dagster instances for tests: ephemeral or in a folder, and knowing the reanalysis months as
partitions (the new-month sensor or `make demo` registers published months; a test registers
them itself)."""

import datetime as dt
from pathlib import Path

from dagster import DagsterInstance

from dagster_project.partitions import register_published_months


def instance_in(home: Path) -> DagsterInstance:
    """An instance kept in the folder `home`, where other processes (the launcher's workers) can
    open it."""
    home.mkdir(parents=True, exist_ok=True)
    return DagsterInstance.local_temp(str(home))


def instance_knowing_months(latest: str = "2024-12", home: Path | None = None) -> DagsterInstance:
    """An instance whose reanalysis months 2001-01..`latest` (YYYY-MM) are partitions: ephemeral,
    or kept in the folder `home` (`instance_in`)."""
    instance = DagsterInstance.ephemeral() if home is None else instance_in(home)
    register_published_months(instance, dt.date.fromisoformat(f"{latest}-01"))
    return instance
