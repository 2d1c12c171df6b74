"""`make demo`: materialize every asset of the graph on the configured source (the offline demo
by default).

The stages come from the asset graph, not from a list kept here: each stage is the largest set
of assets of one partitioning whose upstream assets are all done, and Dagster orders the
assets inside a run. Each stage runs through the named job of its partitioning
(`dagster_project.jobs`) against the instance in $DAGSTER_HOME (so the UI lists the runs, with
tags saying what each was): a partitioned stage as one single-run backfill over every
partition (only published months for the reanalysis), or one run per partition where the
asset backfills partition by partition. Asset checks run with their assets; a failed
blocking check stops the demo.

    python -m dagster_project.demo
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

from dagster import AssetKey, DagsterInstance, Definitions, TimeWindowPartitionsDefinition

from dagster_project import jobs, settings
from dagster_project.partitions import partitioning_of
from dagster_project.resources import build_resources

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
LAUNCHED_BY = "permafrost/launched_by"
STAGE = "permafrost/stage"
# Step-level DEBUG events go to the instance (and the UI); the terminal gets INFO and up.
CONSOLE_INFO = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass(frozen=True)
class Stage:
    """Assets of one partitioning that can run together: every upstream asset is done."""

    partitioning: str
    keys: tuple[AssetKey, ...]

    def label(self) -> str:
        names = [key.to_user_string() for key in self.keys]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        return f"{self.partitioning}: {shown}"


def plan_stages(asset_graph) -> list[Stage]:
    """Stages in dependency order, from the graph alone.

    Repeatedly take the assets whose parents are all done; among them pick the partitioning
    of the one that comes first in topological order, then grow the stage with every asset of
    that partitioning whose parents are done or already in the stage.
    """
    order = {key: i for i, key in enumerate(asset_graph.toposorted_asset_keys)}
    remaining = set(asset_graph.materializable_asset_keys)
    partitioning = {key: partitioning_of(asset_graph.get(key).partitions_def) for key in remaining}
    done: set[AssetKey] = set()
    stages: list[Stage] = []

    def ready(key: AssetKey, available: set[AssetKey]) -> bool:
        return all(parent in available or parent not in partitioning for parent in asset_graph.get(key).parent_keys)

    while remaining:
        candidates = sorted((key for key in remaining if ready(key, done)), key=order.__getitem__)
        if not candidates:
            raise RuntimeError(f"no asset can run next; left: {sorted(k.to_user_string() for k in remaining)}")
        kind = partitioning[candidates[0]]
        stage: set[AssetKey] = set()
        grew = True
        while grew:
            grew = False
            for key in sorted(remaining - stage, key=order.__getitem__):
                if partitioning[key] == kind and ready(key, done | stage):
                    stage.add(key)
                    grew = True
        stages.append(Stage(kind, tuple(sorted(stage, key=order.__getitem__))))
        done |= stage
        remaining -= stage
    return stages


def stage_runs(stage: Stage, asset_graph, latest_month) -> list[tuple[str | None, dict[str, str]]]:
    """(partition key, tags) of each run of a stage: one run unless an asset of the stage
    backfills partition by partition."""
    definition = asset_graph.get(stage.keys[0]).partitions_def
    if definition is None:
        return [(None, {})]
    keys = definition.get_partition_keys()
    if isinstance(definition, TimeWindowPartitionsDefinition):
        keys = [key for key in keys if key <= latest_month.isoformat()]  # only what is published
    policies = {asset_graph.get(key).backfill_policy for key in stage.keys}
    # a single-run policy puts every partition in one run (max_partitions_per_run is None)
    single_run = all(p is not None and p.max_partitions_per_run is None for p in policies)
    if single_run and len(keys) > 1:
        return [(None, {RANGE_START: keys[0], RANGE_END: keys[-1]})]
    return [(key, {}) for key in keys]


def stage_config(stage: Stage, asset_config: Mapping[str, dict]) -> dict:
    """Run config for the assets of this stage among those given config (op name -> config)."""
    names = {key.to_user_string() for key in stage.keys}
    ops = {name: {"config": config} for name, config in asset_config.items() if name in names}
    return {**CONSOLE_INFO, **({"ops": ops} if ops else {})}


def run_demo(instance: DagsterInstance | None = None) -> dict[str, float]:
    """Materialize the whole graph; returns seconds per stage."""
    from dagster_project.definitions import defs

    config = settings.from_environment()
    # resources from the environment now, not the ones built when definitions were imported
    resources = build_resources(config)
    demo_defs = Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs, resources=resources)
    graph = demo_defs.resolve_asset_graph()
    latest = resources["sources"].latest_published_month()
    asset_config = {"trained_models": {"epochs": config.training_epochs}}
    stages = plan_stages(graph)
    timings: dict[str, float] = {}
    for number, stage in enumerate(stages, start=1):
        started = time.perf_counter()
        job = demo_defs.resolve_job_def(jobs.job_name(stage.partitioning))
        for partition_key, tags in stage_runs(stage, graph, latest):
            job.execute_in_process(
                run_config=stage_config(stage, asset_config),
                instance=instance,
                partition_key=partition_key,
                asset_selection=list(stage.keys),
                tags={**tags, LAUNCHED_BY: "make demo", STAGE: f"{number}/{len(stages)}"},
            )
        label = f"stage {number}/{len(stages)} {stage.label()}"
        timings[label] = time.perf_counter() - started
        print(f"[demo] {label}: {timings[label]:.1f} s", flush=True)
    print(f"[demo] lake: {config.lake_root}  warehouse: {config.warehouse_path}", flush=True)
    return timings


def main() -> int:
    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
    started = time.perf_counter()
    run_demo(instance)
    print(f"[demo] done in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
