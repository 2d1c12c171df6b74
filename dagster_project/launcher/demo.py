"""`make demo`: materialize every asset of the graph on the configured source (the offline demo
by default).

The stages come from the asset graph, not from a list kept here: each stage is the largest set
of assets of one partitioning whose upstream assets are all done, and Dagster orders the
assets inside a run. Each stage runs through the named job of its partitioning
(`dagster_project.assembly.jobs`) against the instance in $DAGSTER_HOME (so the UI lists the runs, with
tags saying what each was): a partitioned stage as one single-run backfill over every
partition (for the reanalysis, every published month, registered first), or one run per partition where the
asset backfills partition by partition. Asset checks run with their assets.

Faults, as an operator meets them (README, "Fault guide"):
- at start, runs of this instance left in progress by a process that no longer exists (a
  killed `make demo`) are marked failed and their pool slots freed, with a line saying so;
- a step waiting for a slot of a concurrency pool is reported with the run holding it;
- a failed check (or a dbt test that stops the build) stops the demo with its findings:
  band, month and value of the first failing rows, from the check's metadata;
- Ctrl-C or SIGTERM interrupts the current run, which ends failed or canceled with its slots
  freed; the lake keeps only what earlier runs landed.

    python -m dagster_project.launcher.demo [--select '+key:fct_band_month_features']
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from dagster import AssetKey, AssetSelection, DagsterInstance, Definitions

from dagster_project import processes, settings
from dagster_project.assembly import jobs
from dagster_project.launcher import recovery
from dagster_project.partitions import architectures, partitioning_of, register_published_months
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


def stage_runs(stage: Stage, asset_graph, instance: DagsterInstance) -> list[tuple[str | None, dict[str, str]]]:
    """(partition key, tags) of each run of a stage: one run unless an asset of the stage
    backfills partition by partition. Dynamic partitions (the published reanalysis months) are
    those the instance knows."""
    definition = asset_graph.get(stage.keys[0]).partitions_def
    if definition is None:
        return [(None, {})]
    keys = definition.get_partition_keys(dynamic_partitions_store=instance)
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


class DemoStopped(Exception):
    """The demo stopped before the end: a run failed, or a signal interrupted it."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


Output = Callable[[str], None]


def _say(line: str) -> None:
    print(f"[demo] {line}", flush=True)


# --- why a step waits ---------------------------------------------------------------------

WAIT_REPORT_AFTER_SECONDS = 2.0
WAIT_REPEAT_SECONDS = 60.0


def describe_run(instance: DagsterInstance, run_id: str) -> str:
    """'run <id> (<job>, <status>, pid <n> alive|gone)' for the run holding a slot."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return f"run {run_id} (deleted from the instance)"
    first_seen = recovery.run_processes(instance, run)
    pids = []
    for pid, since in sorted(first_seen.items()):
        if processes.is_alive(pid, since=since):
            command = processes.command_line(pid, limit=80)
            pids.append(f"pid {pid} alive" + (f": {command}" if command else ""))
        else:
            pids.append(f"pid {pid} gone")
    where = f", {'; '.join(pids)}" if pids else ""
    return f"run {run_id} ({run.job_name}, {run.status.value}{where})"


def pool_waits(instance: DagsterInstance, run_id: str) -> list[str]:
    """For each step of `run_id` waiting for a pool slot: which pool, and which runs hold it."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    waits = []
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        waiting = [
            step.step_key for step in info.pending_steps if step.run_id == run_id and not step.assigned_timestamp
        ]
        if not waiting:
            continue
        holders = sorted(
            {slot.run_id for slot in info.claimed_slots}
            | {step.run_id for step in info.pending_steps if step.assigned_timestamp}
        )
        held_by = "; ".join(describe_run(instance, holder) for holder in holders if holder != run_id) or "nobody"
        waits.append(
            f"step {', '.join(waiting)} is blocked by limit for pool {pool} (limit {info.limit}): "
            f"the slot is held by {held_by}"
        )
    return waits


# --- one run, interruptible ---------------------------------------------------------------

INTERRUPT_GRACE_SECONDS = 30.0


@contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """SIGINT and SIGTERM recorded (not raised) while the block runs; restored afterwards."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def record(signum, _frame):
        received.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_in_thread(thread: threading.Thread, error: type[BaseException]) -> None:
    """Raise `error` in `thread` at its next Python instruction (a blocking call finishes first)."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(error))


def _free_slots(instance: DagsterInstance, run_id: str) -> None:
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def execute_run(job, instance: DagsterInstance, out: Output = _say, **kwargs):
    """`job.execute_in_process(**kwargs)` that reports why it waits and stops on a signal.

    The run executes in a worker thread so this (main) thread keeps its signal handlers: in the
    main thread Dagster defers SIGINT while a step waits for a pool slot, so a blocked run
    would ignore Ctrl-C and SIGTERM for ever. On a signal the run is interrupted like Dagster
    interrupts it on Ctrl-C (the step fails, its batch is discarded, its slot freed); a run
    that does not end within INTERRUPT_GRACE_SECONDS is marked canceled and its slots freed.
    """
    # SQLAlchemy's ORM imports some of its modules lazily, on first use; the run (worker thread)
    # and the wait report (this thread) both query the instance's storage, and two threads
    # importing the same circular modules at once can see one half-initialised (it happened:
    # "partially initialized module 'sqlalchemy.orm.exc'"). Import them before the threads start.
    import sqlalchemy.orm  # noqa: F401
    from dagster._core.errors import DagsterExecutionInterruptedError
    from dagster._core.utils import make_new_run_id

    run_id = make_new_run_id()
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["result"] = job.execute_in_process(instance=instance, run_id=run_id, raise_on_error=False, **kwargs)
        except BaseException as error:  # reported by the main thread
            outcome["error"] = error

    worker = threading.Thread(target=work, name=f"run {run_id}", daemon=True)
    started = time.monotonic()
    next_report = started + WAIT_REPORT_AFTER_SECONDS
    with _stop_signals() as received:
        worker.start()
        while worker.is_alive() and not received:
            worker.join(0.2)
            if worker.is_alive() and time.monotonic() >= next_report:
                try:
                    waits = pool_waits(instance, run_id)
                except Exception as error:  # a report that fails must not stop the run it reports on
                    out(f"could not read the pool waits of run {run_id}: {error}")
                    waits = []
                for line in waits:
                    out(f"waiting ({time.monotonic() - started:.0f} s): {line}")
                next_report = time.monotonic() + (WAIT_REPEAT_SECONDS if waits else 1.0)
        if received:
            name = signal.Signals(received[0]).name
            out(f"{name} received: interrupting run {run_id}")
            _raise_in_thread(worker, DagsterExecutionInterruptedError)
            worker.join(INTERRUPT_GRACE_SECONDS)
            run = instance.get_run_by_id(run_id)
            if run is not None and not run.is_finished:
                instance.report_run_canceled(run, f"make demo stopped by {name}")
            _free_slots(instance, run_id)
            run = instance.get_run_by_id(run_id)
            status = run.status.value if run is not None else "never started"
            out(f"run {run_id} ended {status}; its pool slots are free. Run `make demo` again to go on.")
            raise DemoStopped(f"stopped by {name}", 128 + received[0])
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


# --- what a failed run found ---------------------------------------------------------------


def _metadata_value(value):
    return getattr(value, "value", value)


def describe_failed_check(evaluation) -> list[str]:
    """Lines naming a failed check and its findings (band, month, value of the first rows)."""
    name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
    metadata = {key: _metadata_value(value) for key, value in evaluation.metadata.items()}
    lines = [f"check {name} FAILED" + (f" ({metadata['summary']})" if "summary" in metadata else "")]
    for failure in metadata.get("failures") or []:
        expected = failure.get("expected") or {}
        low, high = expected.get("min_value"), expected.get("max_value")
        bounds = {
            (True, True): f" (expected {low}..{high})",
            (True, False): f" (expected >= {low})",
            (False, True): f" (expected <= {high})",
        }.get((low is not None, high is not None), "")
        lines.append(
            f"  {failure.get('expectation')} on {failure.get('column')}{bounds}: "
            f"{failure.get('unexpected_count')} row(s), first:"
        )
        for row in failure.get("rows", [])[:5]:
            keys = [key for key in ("scenario", "band", "month") if key in row]
            ordered = keys + [key for key in row if key not in keys]  # where first, then the value
            lines.append("    " + ", ".join(f"{key} {row[key]}" for key in ordered))
    for key in ("dagster_dbt/failed_row_count",):
        if key in metadata:
            lines.append(f"  failing rows: {metadata[key]}")
    return lines


def step_failures(result) -> dict[str, str]:
    """step key -> what made it fail: a `Failure`'s description, else the innermost error messages."""
    failures = {}
    for event in result.all_events:
        if not (event.is_step_failure and event.step_failure_data):
            continue
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            failures[event.step_key] = data.user_failure_data.description.strip()
            continue
        messages, error = [], data.error
        while error is not None:
            messages.append(error.message.strip())
            error = error.cause or error.context
        # Dagster wraps the user's error: the wrapper's message says only which step it was
        failures[event.step_key] = "\n".join(messages[1:] or messages)
    return failures


def describe_failure(result) -> list[str]:
    """Everything a failed run found: failed checks with their rows, failed steps' errors."""
    lines = []
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            lines += describe_failed_check(evaluation)
    for step, message in step_failures(result).items():
        lines.append(f"step {step} failed: {message[:4000]}")
    return lines


# --- the demo ------------------------------------------------------------------------------


def run_demo(
    instance: DagsterInstance | None = None, out: Output = _say, select: str | None = None
) -> dict[str, float]:
    """Materialize the whole graph (or the assets `select` names, in Dagster's selection syntax,
    e.g. `+key:fct_band_month_features`); returns seconds per stage. Raises DemoStopped when a
    run fails (its findings printed first) or a signal stops it."""
    from dagster_project.definitions import defs

    instance = instance if instance is not None else DagsterInstance.ephemeral()
    config = settings.from_environment()
    recovery.recover_dead_runs(instance, log=out)
    # resources from the environment now, not the ones built when definitions were imported
    resources = build_resources(config)
    demo_defs = Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs, resources=resources)
    graph = demo_defs.resolve_asset_graph()
    registered = register_published_months(instance, resources["sources"].latest_published_month())
    if registered:
        out(f"registered {len(registered)} published month(s): {registered[0][:7]}..{registered[-1][:7]}")
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
        job = demo_defs.resolve_job_def(jobs.job_name(stage.partitioning))
        label = f"stage {number}/{len(stages)} {stage.label()}"
        for partition_key, tags in stage_runs(stage, graph, instance):
            result = execute_run(
                job,
                instance,
                out,
                run_config=stage_config(stage, asset_config),
                partition_key=partition_key,
                asset_selection=list(stage.keys),
                tags={**tags, **recovery.owner_tags(), LAUNCHED_BY: "make demo", STAGE: f"{number}/{len(stages)}"},
            )
            if not result.success:
                out(f"{label}: run {result.run_id} FAILED")
                for line in describe_failure(result):
                    out(line)
                raise DemoStopped(f"{label}: run {result.run_id} failed", 1)
        timings[label] = time.perf_counter() - started
        out(f"{label}: {timings[label]:.1f} s")
    out(f"lake: {config.lake_root}  warehouse: {config.warehouse_path}")
    return timings


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
    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
    started = time.perf_counter()
    try:
        run_demo(instance, select=args.select)
    except DemoStopped as stopped:
        _say(f"stopped after {time.perf_counter() - started:.1f} s: {stopped}")
        return stopped.exit_code
    _say(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
