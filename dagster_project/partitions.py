"""Partitions: reanalysis months from 2001-01 as the source publishes them, CMIP5 experiments,
RCPs and architectures."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from dagster import DynamicPartitionsDefinition, StaticPartitionsDefinition

from ml import architecture_catalog
from sources import catalog

# Keys are the month's first day ("2001-01-01"). Dynamic, not a calendar: a month exists as a
# partition once the source has published it (registered by the new-month sensor, the
# monthly schedule or `make demo`, always as the whole run 2001-01..newest, in order), so the
# UI never lists an unpublished month as missing.
REANALYSIS_MONTHS = "reanalysis_months"
reanalysis_months = DynamicPartitionsDefinition(name=REANALYSIS_MONTHS)


def published_month_keys(latest: dt.date) -> list[str]:
    """Partition keys of every month from the history start to `latest`, in order."""
    return [month.isoformat() for month in catalog.month_range(catalog.HISTORY_START, latest)]


def months_to_register(registered: list[str], latest: dt.date) -> list[str]:
    """Published months not registered yet, oldest first. Registering the whole prefix keeps
    the dynamic partitions in calendar order, which ranges (backfills) rely on."""
    known = set(registered)
    return [key for key in published_month_keys(latest) if key not in known]


def register_published_months(instance, latest: dt.date) -> list[str]:
    """Add every published month up to `latest` that the instance does not know yet."""
    missing = months_to_register(instance.get_dynamic_partitions(REANALYSIS_MONTHS), latest)
    if missing:
        instance.add_dynamic_partitions(REANALYSIS_MONTHS, missing)
    return missing


def month_window(first_key: str, last_key: str) -> tuple[dt.date, dt.date]:
    """[start, end) of the months from `first_key` to `last_key` (partition keys)."""
    first, last = dt.date.fromisoformat(first_key), dt.date.fromisoformat(last_key)
    if last < first:
        raise ValueError(f"month range {first_key}..{last_key} runs backwards")
    return first, catalog.add_months(last, 1)


cmip5_experiments = StaticPartitionsDefinition(list(catalog.CMIP5_EXPERIMENTS))

rcp_scenarios = StaticPartitionsDefinition(list(catalog.RCP_EXPERIMENTS))


def architecture_partitions() -> StaticPartitionsDefinition:
    """One partition per architecture of ``ml.architecture_catalog`` (a light module: no Keras)."""
    return StaticPartitionsDefinition(list(architecture_catalog.names()))


architectures = architecture_partitions()

# Grid mode's tiles (`sources.grid.Tile.key`, r<row>c<col>): static partitions whose keys are the
# configured grid's tiles with land, so they exist only when the definitions are built for a grid.
TILE_KEY = re.compile(r"r\d{2,}c\d{2,}")


def tile_partitions(keys: Iterable[str]) -> StaticPartitionsDefinition:
    """One partition per tile key of the grid, in the grid's order."""
    keys = list(keys)
    bad = [key for key in keys if not TILE_KEY.fullmatch(key)]
    if not keys or bad:
        raise ValueError(f"tile partitions need tile keys like r00c03; got {bad[:5] or 'none'}")
    return StaticPartitionsDefinition(keys)


def is_tile_partitions(partitions_def) -> bool:
    return isinstance(partitions_def, StaticPartitionsDefinition) and all(
        TILE_KEY.fullmatch(key) for key in partitions_def.get_partition_keys()
    )


@dataclass(frozen=True)
class Partitioning:
    """One partitioning of the graph and the named job that runs its assets (a run holds one
    partitioning)."""

    definition: object  # a PartitionsDefinition, or None for unpartitioned assets
    job: str
    description: str


PARTITIONINGS: dict[str, Partitioning] = {
    "unpartitioned": Partitioning(
        None,
        "unpartitioned_assets",
        "Every unpartitioned asset: static extracts, the dbt models over them and the scenario mart, the "
        "conduction core, training windows, evaluation, projections, active layer, explanations and the "
        "perfect-model validation. Launch with an asset selection.",
    ),
    "reanalysis_month": Partitioning(
        reanalysis_months,
        "monthly_refresh",
        "The monthly refresh: a reanalysis month lands raw and its rows of the history mart are rebuilt "
        "(with the mart's blocking checks). Launch for one month, or a range of months as one run (backfill).",
    ),
    "cmip5_experiment": Partitioning(
        cmip5_experiments, "cmip5_ingest", "CMIP5 experiments (historical and four RCPs) landed raw."
    ),
    "rcp": Partitioning(
        rcp_scenarios,
        "scenario_features",
        "Per RCP: bias-corrected scenario features, each ensemble member's drivers and core run, scenario windows.",
    ),
    "architecture": Partitioning(
        architectures,
        "model_training",
        "Retraining: one partition per architecture, each training its seeds on the training windows.",
    ),
    # grid mode only: its definition is the configured grid's (`tile_partitions`), None here
    "tile": Partitioning(
        None,
        "grid_tiles",
        "Grid mode, per tile of the grid: the conduction core fitted per cell, the scenarios regridded onto the "
        "cells and bias-corrected per cell, and the projections under each RCP with the active layer; a range "
        "of tiles runs as one run on the dask cluster and lands all or nothing.",
    ),
}


def partitioning_of(partitions_def) -> str:
    """The name in PARTITIONINGS of `partitions_def` (None for unpartitioned assets)."""
    if is_tile_partitions(partitions_def):
        return "tile"
    for name, partitioning in PARTITIONINGS.items():
        if partitioning.definition == partitions_def:
            return name
    raise KeyError(f"partitions definition {partitions_def} is not one of the graph's partitionings")
