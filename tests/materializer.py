"""Materialize selections of the definitions' assets in one ephemeral instance, as the asset
tests do step by step."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dagster import AssetSelection, DagsterInstance, ExecuteInProcessResult, materialize

from dagster_project.definitions import defs

Run = Callable[..., tuple[dict[str, Any], ExecuteInProcessResult]]


def materializer(resources: Mapping[str, Any]) -> Run:
    """``run(selection, partition_key=None, tags=None, run_config=None)``: materialize the assets
    ``selection`` (names) with ``resources`` in one instance shared by every call, assert the run
    succeeded, and return each materialized asset's metadata and the result."""
    instance = DagsterInstance.ephemeral()
    everything = list(defs.assets)

    def run(
        selection: Sequence[str],
        partition_key: str | None = None,
        tags: Mapping[str, str] | None = None,
        run_config: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], ExecuteInProcessResult]:
        result = materialize(
            everything,
            selection=AssetSelection.assets(*selection),
            resources=dict(resources),
            instance=instance,
            partition_key=partition_key,
            tags=dict(tags or {}),
            run_config=run_config,
        )
        assert result.success
        return {
            event.materialization.asset_key.to_user_string(): event.materialization.metadata
            for event in result.get_asset_materialization_events()
        }, result

    return run
