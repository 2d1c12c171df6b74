"""The dbt CLI resource, without the per-run costs dagster-dbt adds that this project does not use.

Before each dbt command dagster-dbt 0.29 runs `dbt --version` in a subprocess (once per
resource, and resources are built per run) and opens an in-process dbt adapter, used only to
fetch row counts and column metadata; `assets/staging.py` reads those from the warehouse itself
after dbt has finished. Together that was about 3 s of every dbt step on 2 cores (measured in
`benchmarks/new_month_benchmark.py`). These two private hooks of the pinned dagster-dbt are
overridden here, in one place; `tests/dagster_project/test_definitions.py` fails if they vanish.
"""

from __future__ import annotations

import importlib.metadata
from functools import cached_property

from dagster_dbt import DbtCliResource
from packaging import version


class ProjectDbtCliResource(DbtCliResource):
    @cached_property
    def _cli_version(self) -> version.Version:
        # the dbt executable is the venv's own (dagster_project.dbt.dbt_executable)
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args):
        return None  # no in-process adapter: row counts and column types are read after the run
