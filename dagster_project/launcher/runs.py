"""Runs executed in a worker process of their own, watched from the launcher's process.

The launcher starts `python -m dagster_project.launcher.worker` for a `Launch` (a job and the
runs to make of it, one after the other) and finds the runs through the instance by the
launch's tag. Meanwhile it reports why a step waits (the pool and the run holding its slot)
and the number of materializations so far; on SIGINT or SIGTERM it forwards SIGINT to the
worker, so Dagster interrupts the run its own way (the step fails, its staged writes are
discarded, its slots are freed). Two cases Dagster's interrupt does not reach are ended here
with public instance methods: a run whose steps all wait for a pool slot (Dagster looks at an
interrupt only when a step's code runs) is marked failed at once, and a run still going after
INTERRUPT_GRACE_SECONDS is marked canceled; either way its worker is killed and its slots freed.

The worker leads a process group of its own, so a Ctrl-C on the terminal reaches it once, from
here, and not a second time during its clean-up; it ends that group (itself and dbt) when this
process dies, as the runs died with the launcher when they ran in its process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from dagster_project import processes
from dagster_project.launcher import recovery
from dagster_project.launcher.progress import Output, say

# The tag that names the launch a run belongs to: the launcher finds its worker's runs by it.
LAUNCH_TAG = "permafrost/launch"
DEFINITIONS = "dagster_project.definitions:defs"
WORKER_MODULE = "dagster_project.launcher.worker"
# TensorFlow's C++ start-up lines (CPU features, oneDNN) stay out of the log; its errors stay in.
TF_CPP_MIN_LOG_LEVEL = "2"

WAIT_REPORT_AFTER_SECONDS = 2.0
WAIT_REPEAT_SECONDS = 60.0
INTERRUPT_GRACE_SECONDS = 30.0
# How often the launcher looks for a signal or the worker's end, and reads the instance.
POLL_SECONDS = 0.2
READ_EVERY_SECONDS = 1.0
LOG_TAIL_LINES = 40


class DemoStopped(Exception):
    """The demo stopped before the end: a run failed, or a signal interrupted it."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class PlannedRun:
    """One run of a launch: its partition (or a range, in `tags`), and how many partitions it
    materializes per asset (the range's length for a single-run backfill)."""

    partition_key: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    partitions: int = 1


@dataclass(frozen=True)
class Launch:
    """What one worker process executes: runs of the job `job` of the Definitions object named by
    `definitions` (`module:attribute`), with the same assets, run config and tags."""

    job: str
    definitions: str = DEFINITIONS
    runs: tuple[PlannedRun, ...] = (PlannedRun(),)
    asset_selection: tuple[str, ...] = ()  # asset keys as user strings; none: the whole job
    run_config: Mapping = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    launch_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Launch:
        data = json.loads(text)
        runs = tuple(PlannedRun(**run) for run in data.pop("runs"))
        return cls(runs=runs, asset_selection=tuple(data.pop("asset_selection")), **data)


@dataclass(frozen=True)
class RunOutcome:
    """A run of a launch as the instance recorded it; `describe_failure` reads its events."""

    run_id: str
    status: DagsterRunStatus
    all_events: list

    @property
    def success(self) -> bool:
        return self.status == DagsterRunStatus.SUCCESS


# --- why a step waits ---------------------------------------------------------------------


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


def _waiting_steps(instance: DagsterInstance, run_id: str) -> dict[str, tuple[list[str], object]]:
    """pool -> (steps of `run_id` waiting for a slot of it, the pool's concurrency info)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    waiting = {}
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        steps = [step.step_key for step in info.pending_steps if step.run_id == run_id and not step.assigned_timestamp]
        if steps:
            waiting[pool] = (steps, info)
    return waiting


def pool_waits(instance: DagsterInstance, run_id: str) -> list[str]:
    """For each step of `run_id` waiting for a pool slot: which pool, and which runs hold it."""
    waits = []
    for pool, (steps, info) in _waiting_steps(instance, run_id).items():
        holders = sorted(
            {slot.run_id for slot in info.claimed_slots}
            | {step.run_id for step in info.pending_steps if step.assigned_timestamp}
        )
        held_by = "; ".join(describe_run(instance, holder) for holder in holders if holder != run_id) or "nobody"
        waits.append(
            f"step {', '.join(steps)} is blocked by limit for pool {pool} (limit {info.limit}): "
            f"the slot is held by {held_by}"
        )
    return waits


STEP_EVENTS = {
    DagsterEventType.STEP_START,
    DagsterEventType.STEP_SUCCESS,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.STEP_SKIPPED,
    DagsterEventType.STEP_UP_FOR_RETRY,
}


def only_waits_for_slots(instance: DagsterInstance, run_id: str) -> bool:
    """Whether no step of `run_id` is executing and some step waits for a pool slot."""
    if not _waiting_steps(instance, run_id):
        return False
    started, ended = set(), set()
    for entry in instance.all_logs(run_id, of_type=STEP_EVENTS):
        event = entry.dagster_event
        (started if event.event_type == DagsterEventType.STEP_START else ended).add(event.step_key)
    return not started - ended


# --- the launch, watched ------------------------------------------------------------------


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


def launch_runs(instance: DagsterInstance, launch: Launch) -> list[DagsterRun]:
    """The runs of `launch` so far, oldest first."""
    return list(reversed(instance.get_runs(RunsFilter(tags={LAUNCH_TAG: launch.launch_id}))))


class _Materializations:
    """Materializations so far in the runs of a launch, read on from where the last read ended."""

    def __init__(self) -> None:
        self._cursors: dict[str, str | None] = {}
        self._counts: dict[str, int] = {}
        self._complete: set[str] = set()  # finished runs read after they finished

    def count(self, instance: DagsterInstance, runs: list[DagsterRun]) -> int:
        for run in runs:
            if run.run_id in self._complete:
                continue
            records = instance.get_records_for_run(
                run.run_id, cursor=self._cursors.get(run.run_id), of_type=DagsterEventType.ASSET_MATERIALIZATION
            )
            self._counts[run.run_id] = self._counts.get(run.run_id, 0) + len(records.records)
            self._cursors[run.run_id] = records.cursor
            if run.is_finished:
                self._complete.add(run.run_id)
        return sum(self._counts.values())


def _events(instance: DagsterInstance, run_id: str) -> list:
    return [entry.dagster_event for entry in instance.all_logs(run_id) if entry.is_dagster_event]


def _free_slots(instance: DagsterInstance, run_id: str) -> None:
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def _end(worker: subprocess.Popen) -> None:
    """Kill the worker and its process group (a dbt it started) and reap it."""
    with suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()


def _interrupt(worker, instance: DagsterInstance, launch: Launch, signum: int, out: Output) -> DemoStopped:
    """Stop the launch after `signum`: Dagster's interrupt first, then the instance's methods."""
    name = signal.Signals(signum).name
    current = next((run for run in launch_runs(instance, launch) if not run.is_finished), None)
    out(f"{name} received: interrupting " + (f"run {current.run_id}" if current else "the worker before its run"))
    with suppress(ProcessLookupError):
        os.kill(worker.pid, signal.SIGINT)
    deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
    while worker.poll() is None and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        current = next((run for run in launch_runs(instance, launch) if not run.is_finished), None)
        if current is not None and only_waits_for_slots(instance, current.run_id):
            # nothing of the run executes, so nothing is half-written: end the wait here
            _end(worker)
            instance.report_run_failed(current, f"make demo stopped by {name} while the run waited for a pool slot")
    if worker.poll() is None:
        _end(worker)
    runs = launch_runs(instance, launch)
    for run in runs:
        if not run.is_finished:
            instance.report_run_canceled(run, f"make demo stopped by {name}; the run did not end in time")
        _free_slots(instance, run.run_id)
    if runs:
        last = instance.get_run_by_id(runs[-1].run_id)
        out(f"run {last.run_id} ended {last.status.value}; its pool slots are free. Run `make demo` again to go on.")
    return DemoStopped(f"stopped by {name}", 128 + signum)


def _log_tail(log: Path | None) -> list[str]:
    if log is None or not log.exists():
        return []
    return log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]


def execute_runs(
    launch: Launch,
    instance: DagsterInstance,
    out: Output = say,
    on_progress: Callable[[int], None] | None = None,
    log: Path | None = None,
) -> list[RunOutcome]:
    """Execute the runs of `launch` in a worker process; their outcomes, oldest first.

    The worker writes its output (the runs' console, dbt, TensorFlow) to `log`, or to this
    process's output without one. `on_progress` hears the number of materializations so far.
    Raises DemoStopped on a signal, or when the worker ends in error without a failed run to
    show for it (the log's last lines printed first).
    """
    if instance.is_ephemeral:
        raise ValueError(
            "the launcher runs each launch in a worker process, which cannot open an in-memory instance: "
            "pass a persistent one (DagsterInstance.get() with DAGSTER_HOME, or DagsterInstance.local_temp())"
        )
    env = {
        **os.environ,
        "DAGSTER_HOME": instance.root_directory,
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", TF_CPP_MIN_LOG_LEVEL),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", WORKER_MODULE, launch.to_json()]
    materializations = _Materializations()
    with _stop_signals() as received, open(log, "ab") if log is not None else nullcontext() as log_file:
        # the worker leads a process group of its own (the module docstring says why)
        worker = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=log_file, stderr=log_file, env=env, process_group=0
        )
        try:
            started = time.monotonic()
            next_read, next_report = started, started + WAIT_REPORT_AFTER_SECONDS
            while worker.poll() is None:
                if received:
                    raise _interrupt(worker, instance, launch, received[0], out)
                time.sleep(POLL_SECONDS)
                if time.monotonic() < next_read:
                    continue
                next_read = time.monotonic() + READ_EVERY_SECONDS
                runs = launch_runs(instance, launch)
                if on_progress is not None:
                    on_progress(materializations.count(instance, runs))
                current = next((run for run in runs if not run.is_finished), None)
                if current is None or time.monotonic() < next_report:
                    continue
                try:
                    waits = pool_waits(instance, current.run_id)
                except Exception as error:  # a report that fails must not stop the run it reports on
                    out(f"could not read the pool waits of run {current.run_id}: {error}")
                    waits = []
                for line in waits:
                    out(f"waiting ({time.monotonic() - started:.0f} s): {line}")
                next_report = time.monotonic() + (WAIT_REPEAT_SECONDS if waits else READ_EVERY_SECONDS)
        finally:
            if worker.poll() is None:  # this process fails: its worker must not run on unwatched
                _end(worker)
            worker.stdin.close()
    runs = launch_runs(instance, launch)
    outcomes = [RunOutcome(run.run_id, run.status, _events(instance, run.run_id)) for run in runs]
    if on_progress is not None:
        on_progress(materializations.count(instance, runs))
    if worker.returncode != 0 and all(outcome.success for outcome in outcomes):
        for line in _log_tail(log):
            out(f"  {line}")
        where = f"; its output: {log}" if log is not None else ""
        raise DemoStopped(f"the worker process of job {launch.job} ended with exit code {worker.returncode}{where}", 1)
    return outcomes
