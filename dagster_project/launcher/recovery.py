"""Runs whose process is gone: marked failed, and their slots in the concurrency pools freed.

A run executed in a process of its own (`make demo`, `dagster asset materialize`, a script)
that is killed outright (SIGKILL, out of memory, a closed laptop) stays STARTED in the
instance and keeps its slot of the `duckdb_warehouse` pool, so every later warehouse step
waits ("Step blocked by limit for pool duckdb_warehouse") for ever. Under `dagster dev` the
daemon recovers such runs (dagster.yaml: run monitoring, free slots after run end); `make demo`
runs without it and calls `recover_dead_runs` when it starts. By hand:

    python -m dagster_project.launcher.recovery      # uses $DAGSTER_HOME

A run counts as dead only when every process known to have executed it (from its events, and
the pid `make demo` tags it with) is gone from this host, or now names a process that started
after the run did (a reused pid). A run whose processes cannot be known is left alone.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from dagster_project import processes

# Tags `make demo` puts on its runs: the process executing them and its host.
PID_TAG = "permafrost/pid"
HOST_TAG = "permafrost/host"
# Runs that may hold pool slots while their process works on them.
IN_PROGRESS = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
# Events whose `pid` is a process that executed the run (its worker, a step's subprocess).
PROCESS_EVENTS = {DagsterEventType.RUN_START, DagsterEventType.STEP_START, DagsterEventType.ENGINE_EVENT}


@dataclass(frozen=True)
class RecoveredRun:
    run_id: str
    job_name: str
    status: str  # before recovery
    pids: tuple[int, ...]
    freed_slots: dict[str, int] = field(default_factory=dict)  # pool -> slots and queue places freed

    def describe(self) -> str:
        who = f"process {', '.join(map(str, self.pids))} no longer exists" if self.pids else "it is finished"
        freed = ", ".join(f"{n} of pool {pool}" for pool, n in sorted(self.freed_slots.items())) or "none"
        action = "marked FAILURE, " if self.status in {s.value for s in IN_PROGRESS} else ""
        return f"run {self.run_id} ({self.job_name}, was {self.status}): {who}; {action}freed slots: {freed}"


def owner_tags() -> dict[str, str]:
    """Tags that name the current process as the one executing a run."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def run_processes(instance: DagsterInstance, run) -> dict[int, float | None]:
    """Pids that executed `run`, each with the time of its first event (epoch seconds): the
    process must have started before then, or the pid has been reused since."""
    first_seen: dict[int, float | None] = {}
    if run.tags.get(PID_TAG, "").isdigit():
        record = instance.get_run_record_by_id(run.run_id)
        first_seen[int(run.tags[PID_TAG])] = record.create_timestamp.timestamp() if record else None
    for entry in instance.all_logs(run.run_id, of_type=PROCESS_EVENTS):
        event = entry.dagster_event
        if event is None or not event.pid:
            continue
        pid = int(event.pid)
        seen = first_seen.get(pid)
        first_seen[pid] = entry.timestamp if seen is None else min(seen, entry.timestamp)
    return first_seen


def _slots_by_run(instance: DagsterInstance) -> dict[str, dict[str, int]]:
    """run id -> pool -> steps of the run holding a slot of the pool or waiting for one."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    held: dict[str, dict[str, int]] = {}
    for pool in storage.get_concurrency_keys():
        info = storage.get_concurrency_info(pool)
        # a step holding a slot is listed both as claimed and as an assigned pending step
        steps = {(slot.run_id, slot.step_key) for slot in info.claimed_slots}
        steps |= {(step.run_id, step.step_key) for step in info.pending_steps}
        for run_id, _ in steps:
            held.setdefault(run_id, {}).setdefault(pool, 0)
            held[run_id][pool] += 1
    return held


def is_dead(instance: DagsterInstance, run) -> tuple[bool, tuple[int, ...]]:
    """(whether `run` is in progress with every process that executed it gone, those pids)."""
    if run.status not in IN_PROGRESS:
        return False, ()
    host = run.tags.get(HOST_TAG)
    if host is not None and host != socket.gethostname():
        return False, ()  # another host's process: it cannot be checked from here
    first_seen = run_processes(instance, run)
    if not first_seen:
        return False, ()
    alive = any(processes.is_alive(pid, since=since) for pid, since in first_seen.items())
    return not alive, tuple(sorted(first_seen))


def recover_dead_runs(instance: DagsterInstance, log: Callable[[str], None] = print) -> list[RecoveredRun]:
    """Mark failed every in-progress run whose processes are gone and free the pool slots of
    every run that cannot use them any more (dead, finished, or deleted); log each one."""
    recovered: list[RecoveredRun] = []
    held = _slots_by_run(instance)
    for record in instance.get_run_records(filters=RunsFilter(statuses=IN_PROGRESS)):
        run = record.dagster_run
        dead, pids = is_dead(instance, run)
        if not dead:
            continue
        message = (
            f"The process that executed this run (pid {', '.join(map(str, pids))}) no longer exists: "
            "marked failed and its pool slots freed by dagster_project.launcher.recovery."
        )
        if run.status == DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message)
        else:
            instance.report_run_failed(run, message)
        freed = held.pop(run.run_id, {})
        if freed:
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        recovered.append(RecoveredRun(run.run_id, run.job_name, run.status.value, pids, freed))
    # slots of runs that ended without freeing them (or were deleted): what the daemon does
    # after free_slots_after_run_end_seconds, done now
    for run_id, freed in held.items():
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            continue
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        status = run.status.value if run is not None else "deleted"
        recovered.append(RecoveredRun(run_id, run.job_name if run else "?", status, (), freed))
    for run in recovered:
        log(f"recovered {run.describe()}")
    return recovered


def main() -> int:
    with DagsterInstance.get() as instance:
        recovered = recover_dead_runs(instance, log=lambda line: print(f"[recovery] {line}", flush=True))
    if not recovered:
        print("[recovery] no dead run holds a slot; nothing to do", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
