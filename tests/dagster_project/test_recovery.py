"""A killed run cannot hold the duckdb_warehouse pool for ever: the instance configuration turns
on Dagster's own slot release, and `recover_dead_runs` (what `make demo` does when it starts)
marks runs whose process is gone as failed and frees their slots, leaving live runs alone."""

import datetime as dt
import os
import subprocess
from types import SimpleNamespace

from dagster import DagsterInstance, DagsterRunStatus
from pool_slots import REPO, hold_a_slot

from dagster_project.launcher.recovery import recover_dead_runs
from dagster_project.resources import WAREHOUSE_POOL


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


def test_the_instance_turns_on_dagsters_own_slot_release(home, monkeypatch):
    """dagster.yaml enables run monitoring and slot release after run end: the daemon (`make dev`)
    frees the slot a crashed run kept once the configured time has passed."""
    from dagster._daemon.monitoring import concurrency

    holder = hold_a_slot()
    holder.kill()
    holder.wait()
    with DagsterInstance.get() as instance:
        assert instance.run_monitoring_enabled
        settings = instance.run_monitoring_settings
        delay = settings["free_slots_after_run_end_seconds"]
        assert 0 < delay <= 300 and settings["cancel_timeout_seconds"] > 0
        [run] = instance.get_runs()
        instance.report_run_failed(run, "its worker died")  # what a code server does under `dagster dev`
        assert _slots(instance) == [run.run_id]
        context = SimpleNamespace(instance=instance)
        list(concurrency.execute_concurrency_slots_iteration(context, logger=_Quiet()))
        assert _slots(instance) == [run.run_id]  # not yet: the run ended less than `delay` ago

        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay + 5)
        monkeypatch.setattr(concurrency, "get_current_datetime", lambda: later)
        list(concurrency.execute_concurrency_slots_iteration(context, logger=_Quiet()))
        assert _slots(instance) == []


class _Quiet:
    def info(self, *args, **kwargs):
        pass


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
