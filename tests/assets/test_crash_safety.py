"""Crash safety as a property: `make demo`'s runner killed outright (SIGKILL) mid-write, during a
multi-partition backfill of the reanalysis and during the dbt build of the history mart; the
same command run again succeeds with no manual step, the lake holds exactly six rows per
band-month, and nothing is left over (temporaries, dead runs holding pool slots, dbt relations).
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from dagster import AssetSelection, DagsterInstance, materialize
from instances import instance_knowing_months

from dagster_project import lake, settings
from dagster_project.dbt import SQL_DIR, dbt_executable
from dagster_project.definitions import defs
from dagster_project.resources import build_resources

REPO = Path(__file__).resolve().parents[2]


def _environment(root: Path, latest: str) -> dict[str, str]:
    home = root / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(REPO / "dagster_project" / "dagster.yaml", home / "dagster.yaml")  # as the Makefile installs it
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    env.update({settings.ENV_LAKE_ROOT: str(root / "data"), settings.ENV_DEMO_LATEST_MONTH: latest})
    env.pop(settings.ENV_WAREHOUSE, None)
    return env


def _demo(select: str) -> list[str]:
    return [sys.executable, "-m", "dagster_project.launcher.demo", "--select", select]


def _kill_session(session: int) -> None:
    """SIGKILL every live process of `session` (the launcher's workers lead process groups of
    their own inside it), as a closed terminal or laptop would, until none is left running
    (the killed ones stay zombies until their parents reap them)."""
    while True:
        alive = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                state = (Path("/proc") / entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if os.getsid(int(entry)) == session and state != "Z":
                    alive.append(int(entry))
            except (OSError, IndexError):  # gone meanwhile
                pass
        if not alive:
            return
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _kill_when(command, env, ready, timeout=300) -> str:
    """Start `command` in its own session, SIGKILL the whole session as soon as `ready()`
    returns a description of what it saw, and return that description."""
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    seen = None
    try:
        while process.poll() is None and time.monotonic() < deadline:
            seen = ready()
            if seen:
                _kill_session(process.pid)
                break
            time.sleep(0.001)
    finally:
        if process.poll() is None and not seen:
            _kill_session(process.pid)
        process.wait()
    assert seen, f"the command ended (rc {process.returncode}) before the moment to kill it came"
    assert process.returncode == -signal.SIGKILL
    return seen


def _rerun(command, env) -> str:
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def _rows_per_band_month(sql_from: str) -> dict:
    with duckdb.connect() as con:
        counts = con.execute(f"select band, month, count(*) from {sql_from} group by all").fetchall()
    return {(band, month): n for band, month, n in counts}


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if lake.is_temporary(p) or p.suffix == ".wal")


def _instance_state(env) -> tuple[list[str], list[str]]:
    """Statuses of the instance's runs, and the pools in which some run still holds a slot."""
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        storage = instance.event_log_storage
        held = [key for key in storage.get_concurrency_keys() if storage.get_concurrency_info(key).claimed_slots]
        return sorted(run.status.value for run in instance.get_runs()), held


def test_a_reanalysis_backfill_killed_mid_write_is_finished_by_a_plain_rerun(tmp_path):
    env = _environment(tmp_path, latest="2002-12")
    command = _demo("key:era5_land_monthly")  # one single-run backfill of 24 months
    folder = tmp_path / "data" / "raw" / "era5_land_monthly"

    def temporaries_appear():
        try:
            staged = [p.name for p in folder.iterdir() if lake.is_temporary(p)]
        except FileNotFoundError:
            return None
        return f"{len(staged)} temporaries" if staged else None

    _kill_when(command, env, temporaries_appear)
    # killed with its writes in flight (the temporary seen may have been renamed since)
    assert _instance_state(env)[0] == ["STARTED"]

    out = _rerun(command, env)
    assert "recovered run" in out  # the killed run, marked failed by the rerun's start
    counts = _rows_per_band_month(f"read_parquet('{folder}/*.parquet')")
    assert len(counts) == 24 * 6 and set(counts.values()) == {1}  # six rows per month, each once
    assert _leftovers(tmp_path / "data") == []
    assert _instance_state(env) == (["FAILURE", "SUCCESS"], [])


@pytest.fixture
def history_built(tmp_path):
    """Raw static extracts, 24 months of ERA5-Land and the history mart, built by dbt."""
    config = settings.from_environment(
        {settings.ENV_LAKE_ROOT: str(tmp_path / "data"), settings.ENV_DEMO_LATEST_MONTH: "2002-12"}
    )
    resources = build_resources(config)
    everything = [*defs.assets, *defs.asset_checks]
    months = instance_knowing_months("2002-12")
    tags = {"dagster/asset_partition_range_start": "2001-01-01", "dagster/asset_partition_range_end": "2002-12-01"}
    for selection, run_tags in (
        (AssetSelection.assets("band_lithology", "band_soil_properties"), {}),
        (AssetSelection.assets("era5_land_monthly"), tags),
    ):
        assert materialize(everything, selection=selection, resources=resources, instance=months, tags=run_tags).success
    dbt_env = {
        **os.environ,
        settings.ENV_LAKE_ROOT: str(config.lake_root),
        settings.ENV_WAREHOUSE: str(config.warehouse_path),
        "DBT_TARGET_PATH": str(tmp_path / "dbt_target"),
        "DBT_LOG_PATH": str(tmp_path / "dbt_logs"),
    }
    built = subprocess.run(
        [dbt_executable(), "build", "--select", "+fct_band_month_features", "--profiles-dir", str(SQL_DIR)],
        cwd=SQL_DIR,
        env=dbt_env,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-3000:]
    return config


@pytest.mark.slow
def test_a_dbt_build_of_the_history_mart_killed_mid_write_is_finished_by_a_plain_rerun(tmp_path, history_built):
    config = history_built
    env = _environment(tmp_path, latest="2002-12")
    # dagster-dbt writes each invocation's log into a folder of its own under $DBT_TARGET_PATH:
    # this test's own folder, where tests running beside it in sql/target cannot be mistaken for it
    runs_target = tmp_path / "dbt_runs"
    env["DBT_TARGET_PATH"] = str(runs_target)
    command = _demo("key:fct_band_month_features")  # replaces the window 2001-01..2002-12

    def mart_build_starts():
        for log in runs_target.glob("dbt_monthly_models-*/dbt.log"):
            text = log.read_text(errors="replace")
            if "START sql incremental model marts.fct_band_month_features" in text:
                return text
        return None

    log = _kill_when(command, env, mart_build_starts)
    assert "OK created sql incremental model marts.fct_band_month_features" not in log  # killed mid-build
    assert _instance_state(env)[0] == ["STARTED"]

    out = _rerun(command, env)
    assert "recovered run" in out and "duckdb_warehouse" in out  # the dead run's pool slot was freed
    counts = _rows_per_band_month(f"read_parquet('{config.lake_root}/raw/era5_land_monthly/*.parquet')")
    with duckdb.connect(str(config.warehouse_path), read_only=True) as con:
        mart = con.execute("select band, month, count(*) from marts.fct_band_month_features group by all").fetchall()
        tables = {name for (name,) in con.execute("select table_name from information_schema.tables").fetchall()}
    assert len(mart) == 24 * 6 and {n for _, _, n in mart} == {1}
    assert len(counts) == 24 * 6
    assert not [t for t in tables if "__dbt_tmp" in t or "__dbt_backup" in t]
    assert _leftovers(tmp_path / "data") == []
    assert _instance_state(env) == (["FAILURE", "SUCCESS"], [])
