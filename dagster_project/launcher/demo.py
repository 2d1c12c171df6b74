"""`make demo`: materialize every asset of the graph on the configured source (the offline demo
by default).

The stages come from the asset graph, not from a list kept here: each stage is the largest set
of assets of one partitioning whose upstream assets are all done, and Dagster orders the
assets inside a run. Each stage runs through the named job of its partitioning
(`dagster_project.assembly.jobs`), in a worker process of its own (`runs`), against the
instance in $DAGSTER_HOME (so the UI lists the runs, with tags saying what each was): a
partitioned stage as one single-run backfill over every partition (for the reanalysis, every
published month, registered first), or one run per partition where the asset backfills
partition by partition. Asset checks run with their assets.

The terminal shows one progress line per stage and, at the end, what was made and where; the
runs' whole output (Dagster's console, dbt, TensorFlow) goes to `<lake>/logs/demo-<time>.log`.

Faults, as an operator meets them (README, "Fault guide"):
- at start, runs of this instance left in progress by a process that no longer exists (a
  killed `make demo`) are marked failed and their pool slots freed, with a line saying so;
- a step waiting for a slot of a concurrency pool is reported with the run holding it;
- a failed check (or a dbt test that stops the build) stops the demo with its findings:
  band, month and value of the first failing rows, from the check's metadata, and the
  failing step's error;
- Ctrl-C or SIGTERM interrupts the current run, which ends failed or canceled with its slots
  freed, and the demo exits with 130 or 143; the lake keeps only what earlier runs landed.

    python -m dagster_project.launcher.demo [--select '+key:fct_band_month_features']
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dagster import AssetKey, AssetSelection, DagsterInstance

from dagster_project import settings
from dagster_project.assembly import jobs
from dagster_project.lake import OUTPUT_VIEWS, LakeLayout, is_object_root
from dagster_project.launcher import recovery
from dagster_project.launcher.findings import describe_failure
from dagster_project.launcher.progress import Output, PlainProgress, Progress, for_stdout, say
from dagster_project.launcher.runs import DemoStopped, Launch, PlannedRun, execute_runs
from dagster_project.partitions import architectures, partitioning_of, register_published_months
from dagster_project.resources import build_resources

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
LAUNCHED_BY = "permafrost/launched_by"
STAGE = "permafrost/stage"
# Step-level DEBUG events go to the instance (and the UI); the log gets INFO and up.
CONSOLE_INFO = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


# Beside the lake's data, not part of it: LakeLayout does not declare it (yet).
@dataclass(frozen=True)
class Stage:
    """Assets of one partitioning that can run together: every upstream asset is done."""

    partitioning: str
    keys: tuple[AssetKey, ...]

    def label(self) -> str:
        names = [key.to_user_string() for key in self.keys]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        return f"{self.partitioning}: {shown}"


def plan_stages(asset_graph, selected: set[AssetKey] | None = None) -> list[Stage]:
    """Stages in dependency order, from the graph alone.

    Repeatedly take the assets whose parents are all done; among them pick the partitioning
    of the one that comes first in topological order, then grow the stage with every asset of
    that partitioning whose parents are done or already in the stage. With `selected`, only
    those assets are planned (their other parents count as done).
    """
    order = {key: i for i, key in enumerate(asset_graph.toposorted_asset_keys)}
    remaining = set(asset_graph.materializable_asset_keys)
    if selected is not None:
        remaining &= set(selected)
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


def stage_runs(stage: Stage, asset_graph, instance: DagsterInstance) -> list[PlannedRun]:
    """The runs of a stage: one unless an asset of the stage backfills partition by partition.
    Dynamic partitions (the published reanalysis months) are those the instance knows."""
    definition = asset_graph.get(stage.keys[0]).partitions_def
    if definition is None:
        return [PlannedRun()]
    keys = definition.get_partition_keys(dynamic_partitions_store=instance)
    policies = {asset_graph.get(key).backfill_policy for key in stage.keys}
    # a single-run policy puts every partition in one run (max_partitions_per_run is None)
    single_run = all(p is not None and p.max_partitions_per_run is None for p in policies)
    if single_run and len(keys) > 1:
        return [PlannedRun(tags={RANGE_START: keys[0], RANGE_END: keys[-1]}, partitions=len(keys))]
    return [PlannedRun(partition_key=key) for key in keys]


def stage_config(stage: Stage, asset_config: Mapping[str, dict]) -> dict:
    """Run config for the assets of this stage among those given config (op name -> config)."""
    names = {key.to_user_string() for key in stage.keys}
    ops = {name: {"config": config} for name, config in asset_config.items() if name in names}
    return {**CONSOLE_INFO, **({"ops": ops} if ops else {})}


def made_summary(config: settings.Settings, made: set[AssetKey], log: Path | None) -> list[str]:
    """What the demo made and where: the output views (and their files) whose assets it
    materialized, the figures, the log, and how to look at the runs."""
    layout = LakeLayout(config.lake_root)
    names = {key.to_user_string() for key in made}
    views = [(view, output) for view, output in OUTPUT_VIEWS.items() if set(output.owners.split()) <= names]
    lines = [f"lake: {config.lake_root}", f"warehouse: {config.warehouse_path}"]
    if views:
        lines.append("outputs (a view in the warehouse over its files in the lake; README, 'Querying the outputs'):")
        lines += [f"  {view}: {output.files(layout)} ({output.description})" for view, output in views]
    figures = layout.figure("any").parent
    if figures.is_dir():
        lines.append(f"figures: {figures} ({len(list(figures.glob('*.png')))} PNG)")
    if log is not None:
        lines.append(f"log of the runs (Dagster, dbt, TensorFlow): {log}")
    lines.append("the runs, their assets and checks in the Dagster UI: make dev, then http://127.0.0.1:3000")
    return lines


def demo_log(lake_root, now: dt.datetime | None = None, warehouse: Path | None = None) -> Path:
    """A new log file for one `make demo`, under `<lake>/logs/`; with the lake on an object store,
    under `logs/` beside the (local) warehouse file: a log is appended to line by line, which an
    object cannot be."""
    now = now or dt.datetime.now()
    layout = LakeLayout(lake_root)
    if is_object_root(layout.root):
        if warehouse is None:
            raise ValueError(f"the lake {lake_root} is on an object store: the log needs the local warehouse's folder")
        folder = Path(warehouse).parent / "logs"
    else:
        folder = Path(layout.logs())
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"demo-{now:%Y%m%d-%H%M%S}.log"


def run_demo(
    instance: DagsterInstance | None = None,
    out: Output = say,
    select: str | None = None,
    progress: Progress | None = None,
    log: Path | None = None,
) -> dict[str, float]:
    """Materialize the whole graph (or the assets `select` names, in Dagster's selection syntax,
    e.g. `+key:fct_band_month_features`); returns seconds per stage. Raises DemoStopped when a
    run fails (its findings printed first) or a signal stops it.

    The instance must be persistent (the workers open it); without one, the instance in
    $DAGSTER_HOME. Lines go to `progress` (default: plain lines through `out`); the runs'
    output goes to `log` (default: this process's output)."""
    from dagster_project.definitions import defs

    instance = instance if instance is not None else DagsterInstance.get()
    progress = progress if progress is not None else PlainProgress(out)
    config = settings.from_environment()
    recovery.recover_dead_runs(instance, log=progress.say)
    graph = defs.resolve_asset_graph()
    # the source the environment names now, not the one the definitions were imported with
    sources = build_resources(config)["sources"]
    registered = register_published_months(instance, sources.latest_published_month())
    if registered:
        progress.say(f"registered {len(registered)} published month(s): {registered[0][:7]}..{registered[-1][:7]}")
    asset_config = {
        "trained_models": {"epochs": config.training_epochs, "seeds": config.training_seeds},
        # one bias-correction draw per network: architectures x seeds
        "scenario_windows": {"bias_draws": len(architectures.get_partition_keys()) * config.training_seeds},
    }
    selected = AssetSelection.from_string(select).resolve(graph) if select else None
    stages = plan_stages(graph, selected)
    timings: dict[str, float] = {}
    for number, stage in enumerate(stages, start=1):
        started = time.perf_counter()
        label = f"stage {number}/{len(stages)} {stage.label()}"
        planned = stage_runs(stage, graph, instance)
        launch = Launch(
            job=jobs.job_name(stage.partitioning),
            runs=tuple(planned),
            asset_selection=tuple(key.to_user_string() for key in stage.keys),
            run_config=stage_config(stage, asset_config),
            tags={LAUNCHED_BY: "make demo", STAGE: f"{number}/{len(stages)}"},
        )
        if log is not None:
            with log.open("a") as header:
                header.write(f"\n===== {label} ({dt.datetime.now():%H:%M:%S}) =====\n")
        progress.stage_started(label, sum(run.partitions for run in planned) * len(stage.keys))
        outcomes = execute_runs(launch, instance, progress.say, on_progress=progress.stage_advanced, log=log)
        failed = next((outcome for outcome in outcomes if not outcome.success), None)
        if failed is not None:
            progress.say(f"{label}: run {failed.run_id} {failed.status.value}")
            for line in describe_failure(failed):
                progress.say(line)
            raise DemoStopped(f"{label}: run {failed.run_id} failed", 1)
        timings[label] = time.perf_counter() - started
        progress.stage_finished(timings[label])
    for line in made_summary(config, {key for stage in stages for key in stage.keys}, log):
        progress.say(line)
    return timings


@contextmanager
def _instance() -> Iterator[DagsterInstance]:
    """The instance in $DAGSTER_HOME, or one in a temporary folder for this demo alone."""
    if os.environ.get("DAGSTER_HOME"):
        with DagsterInstance.get() as instance:
            yield instance
        return
    with tempfile.TemporaryDirectory(prefix="dagster_home-") as home, DagsterInstance.local_temp(home) as instance:
        yield instance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dagster_project.launcher.demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--select",
        help="only these assets, in Dagster's selection syntax (e.g. '+key:fct_band_month_features'); "
        "their upstream assets count as done",
    )
    args = parser.parse_args(argv)
    config = settings.from_environment()
    log = demo_log(config.lake_root, warehouse=config.warehouse_path)
    started = time.perf_counter()
    with _instance() as instance, for_stdout() as progress:
        progress.say(f"the runs' output goes to {log}")
        try:
            run_demo(instance, select=args.select, progress=progress, log=log)
        except DemoStopped as stopped:
            progress.say(f"stopped after {time.perf_counter() - started:.1f} s: {stopped}")
            progress.say(f"the runs' whole output: {log}")
            return stopped.exit_code
        progress.say(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
