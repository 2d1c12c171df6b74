"""A killed run cannot hold the duckdb_warehouse pool for ever: the instance configuration turns
on Dagster's own slot release, and `recover_dead_runs` (what `make demo` does when it starts)
marks runs whose process is gone as failed and frees their slots, leaving live runs alone."""

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from dagster import DagsterInstance, DagsterRunStatus
from pool_slots import REPO, hold_a_slot

from dagster_project.launcher.recovery import recover_dead_runs
from dagster_project.resources import WAREHOUSE_POOL

# The daemon test's delay before a finished run's slots are freed (the repository's is 30 s).
SHORT_DELAY = 8


def _slots(instance) -> list[str]:
    return [slot.run_id for slot in instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots]


def test_a_killed_run_is_marked_failed_and_its_slot_freed_a_live_one_is_left_alone(home):
    killed, alive = hold_a_slot(), None
    killed.kill()
    killed.wait()
    try:
        with DagsterInstance.get() as instance:
            [dead_run] = instance.get_runs()
            assert dead_run.status == DagsterRunStatus.STARTED and _slots(instance) == [dead_run.run_id]
            lines = []
            recovered = recover_dead_runs(instance, log=lines.append)

            assert [r.run_id for r in recovered] == [dead_run.run_id]
            assert instance.get_run_by_id(dead_run.run_id).status == DagsterRunStatus.FAILURE
            assert _slots(instance) == []
            assert len(lines) == 1 and dead_run.run_id in lines[0]
            assert f"process {killed.pid} no longer exists" in lines[0] and f"of pool {WAREHOUSE_POOL}" in lines[0]

            # a run whose process is alive keeps its slot, even when someone recovers meanwhile
            alive = hold_a_slot()
            live_run = next(run for run in instance.get_runs() if run.run_id != dead_run.run_id)
            assert recover_dead_runs(instance, log=lines.append) == []
            assert instance.get_run_by_id(live_run.run_id).status == DagsterRunStatus.STARTED
            assert _slots(instance) == [live_run.run_id]
    finally:
        if alive is not None:
            alive.kill()
            alive.wait()


def test_the_instance_turns_on_dagsters_own_slot_release(home):
    """dagster.yaml enables run monitoring and slot release after run end: the daemon (`make dev`)
    frees the slot a crashed run kept once the configured time has passed, not before."""
    holder = hold_a_slot()
    holder.kill()
    holder.wait()
    with DagsterInstance.get() as instance:
        assert instance.run_monitoring_enabled
        settings = instance.run_monitoring_settings
        delay = settings["free_slots_after_run_end_seconds"]
        assert 0 < delay <= 300 and settings["cancel_timeout_seconds"] > 0
    # Dagster's own daemon on these settings, its delays shortened so the test does not wait minutes
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    config["run_monitoring"].update(free_slots_after_run_end_seconds=SHORT_DELAY, poll_interval_seconds=1)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    started = time.time()
    daemon = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "--empty-workspace"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with DagsterInstance.get() as instance:
            _wait_for(lambda: _beat(instance, "MONITORING") > started, timeout=120)  # the daemon is up
            [run] = instance.get_runs()
            instance.report_run_failed(run, "its worker died")  # what a code server does under `dagster dev`
            ended = instance.get_run_record_by_id(run.run_id).end_time
            time.sleep(SHORT_DELAY / 2)  # several iterations of the daemon
            assert _slots(instance) == [run.run_id]  # not yet: the run ended less than the delay ago
            _wait_for(lambda: not _slots(instance), timeout=SHORT_DELAY + 90)
            freed = time.time()
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    assert freed - ended >= SHORT_DELAY


def _beat(instance, daemon: str) -> float:
    """When the daemon of that type last reported (epoch seconds), 0 if never."""
    heartbeat = instance.get_daemon_heartbeats().get(daemon)
    return heartbeat.timestamp if heartbeat else 0.0


def _wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_the_makefile_installs_a_newer_dagster_yaml(tmp_path):
    """`make` refreshes $DAGSTER_HOME/dagster.yaml when the repository's is newer (an old home
    would otherwise keep running without slot release), keeping the replaced one."""
    home = tmp_path / "home"
    home.mkdir()
    installed = home / "dagster.yaml"
    installed.write_text("telemetry:\n  enabled: false\n")
    # older than the repository's copy, however long ago this checkout was made
    old = (REPO / "dagster_project" / "dagster.yaml").stat().st_mtime - 3600
    os.utime(installed, (old, old))
    result = subprocess.run(
        ["make", "--no-print-directory", "install-dagster-yaml", f"DAGSTER_HOME={home}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert installed.read_text() == (REPO / "dagster_project" / "dagster.yaml").read_text()
    assert [p.read_text() for p in home.glob("dagster.yaml.~*~")] == ["telemetry:\n  enabled: false\n"]
    # an up-to-date copy is left as it is
    again = subprocess.run(
        ["make", "--no-print-directory", "install-dagster-yaml", f"DAGSTER_HOME={home}"], cwd=REPO, capture_output=True
    )
    assert again.returncode == 0 and len(list(home.glob("dagster.yaml.~*~"))) == 1
