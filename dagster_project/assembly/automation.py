"""Declarative automation: which assets follow their upstream, which refresh on a cadence.

- A published month is requested by the new-month sensor (or the monthly schedule); the
  month's staging rows and its rows of the history mart follow at once (`follows_upstream`).
- Everything that learns from the whole history (the reanalysis' soil-water climatology,
  bias correction, grid mode's per-tile bias correction `tile_scenarios`, the conduction core
  (per band and per cell, `tile_core`), training windows, grid mode's `cell_network`) refreshes
  on the retraining cadence (`on_cadence`, yearly by default, `PERMAFROST_RETRAIN_CRON`), not on
  every month; models, evaluation and projections (per band and per tile) follow those.
- Static extracts and the CMIP5 experiments change only when a user re-lands them; the dbt
  models over them follow.

The conditions are evaluated by Dagster's automation sensor (`automation_sensor`), on by
default; `make demo` materializes the whole graph itself and does not need it.
"""

from __future__ import annotations

from collections.abc import Iterable

from dagster import (
    AssetKey,
    AssetSelection,
    AssetSpec,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    map_asset_specs,
)

AUTOMATION_SENSOR = "automation_sensor"
# Assets that learn from the whole history: they refresh on the cadence, not on every month.
ON_CADENCE: frozenset[AssetKey] = frozenset(
    AssetKey(name)
    for name in (
        "int_era5_land_soil_water_shares",
        "cmip5_bias_corrected",
        "thermal_core",
        "training_windows",
        "tile_scenarios",  # grid mode's bias correction, per tile
        "tile_core",  # grid mode's conduction core, fitted per cell (minutes per tile)
        "cell_network",  # grid mode's shared network over the cells
    )
)
# Assets a person or a sensor lands: no condition of their own.
LANDED_BY_REQUEST_GROUP = "raw"


def follows_upstream() -> AutomationCondition:
    """Materialize a partition when an upstream partition it depends on was updated (or a new
    partition appeared), once nothing upstream is missing or running."""
    return AutomationCondition.eager()


def on_cadence(cron: str) -> AutomationCondition:
    """Materialize once after each tick of `cron`, once nothing upstream is missing or running."""
    return (
        AutomationCondition.cron_tick_passed(cron).since_last_handled()
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label(f"on the retraining cadence ({cron})")


def condition_for(spec: AssetSpec, cron: str) -> AutomationCondition | None:
    """The automation condition of one asset (see the module docstring)."""
    if spec.group_name == LANDED_BY_REQUEST_GROUP:
        return None
    if spec.key in ON_CADENCE:
        return on_cadence(cron)
    return follows_upstream()


def apply(assets: Iterable, cron: str) -> list:
    """The assets with their automation conditions, decided here in one place."""
    return list(
        map_asset_specs(lambda spec: spec.replace_attributes(automation_condition=condition_for(spec, cron)), assets)
    )


def automation_sensor(interval_seconds: int = 60) -> AutomationConditionSensorDefinition:
    return AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=AssetSelection.all(),
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_seconds,
        description="Evaluates every asset's automation condition: a landed month flows to the history mart; "
        "retraining and projections refresh on the retraining cadence.",
    )
