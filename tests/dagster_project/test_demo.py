"""`make demo` end to end on the demo source: every asset materializes and every check passes."""

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from dagster import DagsterInstance, DagsterRunStatus
from instances import instance_in
from pool_slots import REPO, hold_a_slot

from dagster_project import lake, settings
from dagster_project.dbt import canonical_ranges
from dagster_project.launcher.findings import describe_failure
from dagster_project.launcher.runs import DemoStopped, Launch, execute_runs
from dagster_project.resources import WAREHOUSE_POOL

# the module's fixture runs the whole demo graph (about 6 min alone on 2 cores, more beside the
# suite's other worker): past the suite's 600 s per test
pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_graph")
    patch = pytest.MonkeyPatch()
    patch.setenv(settings.ENV_LAKE_ROOT, str(root / "data"))
    patch.delenv(settings.ENV_WAREHOUSE, raising=False)
    patch.delenv(settings.ENV_DEMO_LATEST_MONTH, raising=False)
    # two seeds of a few epochs keep the suite short; `make demo` trains 5 seeds for 30
    patch.setenv(settings.ENV_TRAINING_EPOCHS, "3")
    patch.setenv(settings.ENV_TRAINING_SEEDS, "2")
    from dagster_project.launcher.demo import run_demo

    instance = instance_in(root / "dagster_home")
    timings = run_demo(instance)
    yield root / "data", instance, timings
    patch.undo()


@pytest.mark.slow
def test_every_asset_materializes_and_every_blocking_check_passes(demo_run):
    lake, instance, timings = demo_run
    from dagster_project.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert instance.get_latest_materialization_event(key) is not None, key.to_user_string()
    failed, warned = [], []
    for check_key in graph.asset_check_keys:
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([check_key]).get(check_key)
        assert record is not None, f"check never ran: {check_key.to_user_string()}"
        evaluation = record.event.asset_check_evaluation if record.event else None
        assert evaluation is not None, check_key.to_user_string()
        if not evaluation.passed:
            (failed if graph.get_check_spec(check_key).blocking else warned).append(check_key.to_user_string())
    assert failed == []
    # the non-blocking check of the models is a report: with 3 epochs it may warn, but it ran
    assert set(warned) <= {"model_evaluation:models_beat_best_baseline"}


@pytest.mark.slow
def test_runs_are_named_and_tagged_by_stage(demo_run):
    _, instance, timings = demo_run
    from dagster_project.launcher.demo import LAUNCHED_BY, STAGE

    runs = instance.get_runs()
    from dagster_project.partitions import PARTITIONINGS

    assert runs and {run.job_name for run in runs} <= {partitioning.job for partitioning in PARTITIONINGS.values()}
    assert all(run.tags.get(LAUNCHED_BY) == "make demo" for run in runs)
    stages = {run.tags[STAGE] for run in runs}
    assert len(stages) == len(timings) and all(stage.endswith(f"/{len(timings)}") for stage in stages)


@pytest.mark.slow
def test_every_file_in_the_lake_is_an_output_the_layout_declares(demo_run):
    lake, _, _ = demo_run
    from dagster_project.lake import LakeLayout
    from ml.architectures import ARCHITECTURES
    from sources import catalog

    layout = LakeLayout(lake)
    declared = set()
    for name in LakeLayout.assets():
        partitions = {
            "era5_land_monthly": [
                m.isoformat() for m in catalog.month_range(catalog.HISTORY_START, catalog.DEFAULT_LATEST_MONTH)
            ],
            "cmip5_monthly": catalog.CMIP5_EXPERIMENTS,
            "cmip5_bias_corrected": catalog.RCP_EXPERIMENTS,
            "scenario_windows": catalog.RCP_EXPERIMENTS,
            "trained_models": list(ARCHITECTURES),
            "hyperparameter_search": list(ARCHITECTURES),
        }.get(name, [None])
        names = (*ARCHITECTURES, *catalog.RCP_EXPERIMENTS)
        for partition in partitions:
            declared.update(layout.outputs(name, partition, names=names))
    found = {p for p in lake.rglob("*") if p.is_file() and p != layout.default_warehouse()}
    undeclared = sorted(str(p) for p in found if not any(p == d or d in p.parents for d in declared))
    assert undeclared == []


README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_queries() -> list[str]:
    """The SQL examples of the README's section on querying the outputs."""
    text = README.read_text()
    section = text.split("### Querying the outputs", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0].strip() for block in section.split("```sql\n")[1:]]


@pytest.mark.slow
def test_every_output_is_a_view_and_every_readme_query_answers(demo_run):
    lake_root, _, _ = demo_run
    from dagster_project.lake import OUTPUT_VIEWS, LakeLayout

    with lake.read_only(LakeLayout(lake_root).default_warehouse()) as con:
        views = {
            f"{schema}.{name}"
            for schema, name in con.execute(
                "select schema_name, view_name from duckdb_views() where not internal "
                "and schema_name in ('features', 'evaluation', 'projections', 'validation')"
            ).fetchall()
        }
        assert views == {str(view) for view in OUTPUT_VIEWS}
        queries = _readme_queries()
        assert {str(view) for view in OUTPUT_VIEWS} <= {v for v in views if any(v in q for q in queries)}
        for query in queries:
            rows = con.execute(query).fetchall()
            assert rows, query
        windows = con.execute(
            "select windows, split, design, n_windows, members from features.windows order by all"
        ).fetchall()
    sets = {(name, split, design) for name, split, design, *_ in windows}
    assert {("training", "train", "residual"), ("training", "test", "paper")} <= sets
    assert {(rcp, "scenario", "paper") for rcp in ("rcp26", "rcp45", "rcp60", "rcp85")} <= sets
    assert all(n > 0 for *_, n, _ in windows)


@pytest.mark.slow
def test_each_partition_and_each_pathway_and_model_shows_its_own_figure(demo_run):
    _, instance, _ = demo_run
    from ml.architectures import ARCHITECTURES
    from sources import catalog

    def metadata(asset, partition=None):
        records_filter = dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(asset), asset_partitions=None if partition is None else [partition]
        )
        [record] = instance.fetch_materializations(records_filter, limit=1).records
        return record.asset_materialization.metadata

    for scenario in catalog.RCP_EXPERIMENTS:
        own = metadata("cmip5_bias_corrected", scenario)
        assert f"corrected {scenario}" in own["figure"].value and own["path"].value.endswith(f"{scenario}.parquet")
        assert scenario in metadata("scenario_windows", scenario)["path"].value
    projections = metadata("soil_temperature_projections")
    assert {f"figure_{s}" for s in catalog.RCP_EXPERIMENTS} <= set(projections)
    assert len({projections[f"figure_{s}"].value for s in catalog.RCP_EXPERIMENTS}) == len(catalog.RCP_EXPERIMENTS)
    importance = metadata("feature_importance")
    assert {f"figure_{name}" for name in ARCHITECTURES} <= set(importance)


@pytest.mark.slow
def test_windows_land_with_their_statistics(demo_run):
    lake, _, _ = demo_run
    from ml.windows import NormalizationStats, WindowSet

    folder = lake / "features" / "training_windows"
    train, test = WindowSet.load(folder / "train.npz"), WindowSet.load(folder / "test.npz")
    stats = NormalizationStats.from_dict(json.loads((folder / "normalization.json").read_text()))
    assert train.x.shape[1:] == test.x.shape[1:] == (24, len(stats.feature_names))
    assert str(train.target_month.max()) == "2018-12" and str(test.target_month.min()) == "2019-01"
    assert len(test) == 6 * 60
    for scenario in ("rcp26", "rcp45", "rcp60", "rcp85"):
        windows = WindowSet.load(lake / "features" / "scenario_windows" / f"{scenario}.npz")
        assert len(windows) == 6 * (2100 - 2001 + 1) * 12  # the hindcast from 2001, then 2024-2100
        assert np.isfinite(windows.x).all()
        with np.load(lake / "features" / "scenario_windows" / f"{scenario}_members.npz") as members:
            assert members["drivers"].shape[0] == 10 and np.isfinite(members["core"]).all()


@pytest.mark.slow
def test_bias_corrected_scenarios_keep_their_order(demo_run):
    lake, _, _ = demo_run
    late = {}
    for scenario in ("rcp26", "rcp45", "rcp60", "rcp85"):
        frame = pl.read_parquet(lake / "features" / "cmip5_bias_corrected" / f"{scenario}.parquet")
        late[scenario] = (
            frame.filter(pl.col("year") >= 2081).group_by("band").agg(pl.col("t_air").mean()).sort("band")["t_air"]
        )
        assert (frame["p_total"] >= 0).all()
    for band in range(6):
        values = [late[s][band] for s in ("rcp26", "rcp45", "rcp60", "rcp85")]
        assert values == sorted(values), (band, values)
    assert (lake / "figures" / "bias_correction_rcp26.png").stat().st_size > 10_000


@pytest.mark.slow
def test_evaluation_lists_every_model_and_baseline(demo_run):
    lake, _, _ = demo_run
    table = pl.read_parquet(lake / "evaluation" / "model_evaluation.parquet")
    overall = table.filter(pl.col("scope") == "overall")
    networks = {"tcn", "transformer", "conv1d_lstm", "gru", "bilstm"}
    baselines = {"climatology", "persistence", "damped_persistence", "ridge", "dl_ridge", "thermal_core"}
    assert set(overall["model"]) == networks | baselines | {"ensemble"}
    assert overall["rmse"].is_finite().all() and (overall["rmse"] > 0).all()
    # two seeds and their mean per network, one row per ensemble and baseline
    assert overall.height == 5 * 3 + 1 + len(baselines)
    per_band_layer = table.filter(pl.col("scope") == "band_layer")
    assert per_band_layer.height == overall.height * 6 * 4


@pytest.mark.slow
def test_projections_exports_and_active_layer(demo_run):
    import xarray as xr

    lake, _, _ = demo_run
    projections = pl.read_parquet(lake / "projections" / "soil_temperature_projections.parquet")
    assert projections["month"].min().isoformat() == "2001-01-01"  # the hindcast, then 2024-2100
    assert projections["month"].max().isoformat() == "2100-12-01"
    assert "ensemble_mean" in set(projections["model"])
    with xr.open_dataset(lake / "projections" / "soil_temperature_projections.nc") as dataset:
        assert dict(dataset["soil_temperature"].sizes) == {
            "scenario": 4,
            "model": 7,  # five architectures, the core and the distributed-lag ridge
            "member": 2,
            "band": 6,
            "depth": 4,
            "time": 1200,
        }
        assert dataset["soil_temperature"].attrs["units"] == "degC"
        assert dict(dataset["soil_temperature_q95"].sizes) == {"scenario": 4, "band": 6, "depth": 4, "time": 1200}
    alt = pl.read_parquet(lake / "projections" / "active_layer_thickness.parquet")
    assert {"reanalysis", "rcp26", "rcp85"} <= set(alt["scenario"])
    importance = pl.read_parquet(lake / "evaluation" / "feature_importance.parquet")
    assert importance.group_by("model").len()["len"].to_list() == [18] * 5


@pytest.mark.slow
def test_perfect_model_validation_reports_its_targets(demo_run):
    lake, instance, _ = demo_run
    from dagster import AssetKey

    event = instance.get_latest_materialization_event(AssetKey("perfect_model_validation"))
    metadata = event.asset_materialization.metadata
    assert metadata["status"].value == "validated"
    targets = metadata["targets"].value
    for name in ("ensemble_change_rmse", "ensemble_level_rmse", "coverage_change", "ensemble_ordered_cells"):
        assert name in targets
    scores = pl.read_parquet(lake / "validation" / "perfect_model_validation.parquet")
    assert scores.filter(pl.col("kind") == "member").height == 10
    assert (lake / "figures" / "perfect_model_validation.png").stat().st_size > 10_000


# --- faults, as an operator meets them ----------------------------------------------------------


def _queued(instance, count: int, timeout: float = 120) -> None:
    """Wait until `count` steps wait in (or hold) the warehouse pool."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).pending_steps) >= count:
            return
        time.sleep(0.2)
    raise AssertionError("the holder never queued for the pool")


def test_make_demo_recovers_dead_runs_says_why_it_waits_and_stops_on_ctrl_c(home, tmp_path):
    """A killed run's slot is freed at start (with a line saying so); a step waiting for a slot
    held by a live run says who holds it; Ctrl-C stops the demo, its run ends failed with its
    slot freed, and the live run keeps its own."""
    env = {**os.environ, settings.ENV_LAKE_ROOT: str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    dead = hold_a_slot(env)
    dead.kill()
    dead.wait()
    # a live run queues behind the dead one's slot; it gets the slot once the demo frees it
    alive = hold_a_slot(env, wait=False)
    with DagsterInstance.get() as instance:
        _queued(instance, count=2)
    demo = subprocess.Popen(
        [sys.executable, "-m", "dagster_project.launcher.demo", "--select", "key:stg_usgs__lithology"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    lines = []
    try:
        for line in demo.stdout:
            lines.append(line.rstrip())
            if line.startswith("[demo] waiting"):
                break
        assert alive.stdout.readline().strip() == "holding"
        demo.send_signal(signal.SIGINT)
        lines += demo.communicate(timeout=120)[0].splitlines()
        with DagsterInstance.get() as instance:
            runs = {run.run_id: run for run in instance.get_runs()}
            storage = instance.event_log_storage
            holders = {slot.run_id for slot in storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots}
            waiting = storage.get_concurrency_info(WAREHOUSE_POOL).pending_steps
    finally:
        alive.kill()
        alive.wait()
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    text = "\n".join(lines)
    assert demo.returncode == 130, text
    [recovered] = [line for line in lines if line.startswith("[demo] recovered run")]
    assert f"process {dead.pid} no longer exists" in recovered and f"1 of pool {WAREHOUSE_POOL}" in recovered
    [wait] = [line for line in lines if line.startswith("[demo] waiting")]
    assert f"step dbt_models is blocked by limit for pool {WAREHOUSE_POOL} (limit 1)" in wait
    assert f"pid {alive.pid} alive" in wait
    assert "[demo] SIGINT received: interrupting run" in text and "its pool slots are free" in text
    by_status = sorted((run.tags.get("permafrost/launched_by", "holder"), run.status.value) for run in runs.values())
    assert by_status == [("holder", "FAILURE"), ("holder", "STARTED"), ("make demo", "FAILURE")]
    live_run = next(run_id for run_id, run in runs.items() if run.status == DagsterRunStatus.STARTED)
    assert holders == {live_run} and [step.run_id for step in waiting] == [live_run]


def test_make_demo_prints_its_stages_and_what_it_made_and_logs_the_runs(home, tmp_path):
    """Off a terminal `make demo` prints plain lines, its own only: each stage, then what it made
    and where; the runs' output (Dagster's console, dbt) goes to the log file it names."""
    env = {**os.environ, settings.ENV_LAKE_ROOT: str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-m", "dagster_project.launcher.demo", "--select", "+key:stg_usgs__lithology"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert result.stderr == "" and all(line.startswith("[demo] ") for line in lines), result.stdout
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", result.stdout)  # no control characters
    stage = "[demo] stage 1/1 unpartitioned: band_lithology, stg_usgs__lithology"
    assert f"{stage}: started" in lines and any(re.fullmatch(rf"{re.escape(stage)}: \d+\.\d s", x) for x in lines)
    [log] = (tmp_path / "data" / "logs").glob("demo-*.log")
    assert f"[demo] the runs' output goes to {log}" in lines
    assert any(str(log) in line for line in lines[-4:]) and any("make dev" in line for line in lines[-4:])
    assert lines[-1].startswith("[demo] done in ")
    logged = log.read_text()
    assert "Running with dbt=" in logged and "Finished dbt command" in logged  # dbt, and Dagster on dbt
    assert "Running with dbt=" not in result.stdout and "Finished dbt command" not in result.stdout


@pytest.fixture
def launcher_jobs(monkeypatch):
    """The worker process imports the test jobs of `launcher_jobs.py`, beside this file."""
    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    return "launcher_jobs:defs"


def test_ctrl_c_in_a_running_step_discards_its_writes_and_frees_its_slot(home, tmp_path, monkeypatch, launcher_jobs):
    target = tmp_path / "data" / "features" / "windows.npz"
    monkeypatch.setenv("LAUNCHER_TEST_TARGET", str(target))

    def interrupt_once_staged():
        # the worker stages the write, then computes for a minute
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if target.parent.is_dir() and any(lake.is_temporary(p) for p in target.parent.iterdir()):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    threading.Thread(target=interrupt_once_staged, daemon=True).start()
    lines = []
    started = time.monotonic()
    with DagsterInstance.get() as instance, pytest.raises(DemoStopped) as stopped:
        execute_runs(Launch("writes_windows_job", definitions=launcher_jobs), instance, lines.append)
    assert stopped.value.exit_code == 130 and time.monotonic() - started < 50
    assert not target.exists() and list(target.parent.iterdir()) == []  # the batch was discarded
    with DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        assert run.status == DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots == []
    assert any("SIGINT received" in line for line in lines)


def test_a_wait_report_that_fails_does_not_stop_the_run(home, monkeypatch, launcher_jobs):
    """The wait report reads the instance while the run works in the worker; if reading fails
    (it once did, on a half-imported SQLAlchemy module), the run goes on."""
    from dagster_project.launcher import runs

    def broken(instance, run_id):
        raise AttributeError("partially initialized module 'sqlalchemy.orm.exc'")

    monkeypatch.setattr(runs, "pool_waits", broken)
    lines, progress = [], []
    with DagsterInstance.get() as instance:
        launch = Launch("slow_job", definitions=launcher_jobs)
        [result] = execute_runs(launch, instance, lines.append, on_progress=progress.append)
    assert result.success
    assert any("could not read the pool waits" in line and "sqlalchemy" in line for line in lines)
    assert progress[-1] == 1 and progress == sorted(progress)  # the one materialization, counted once


def test_a_failed_check_is_printed_with_its_findings():
    """The demo's terminal names the band, month and value a failed check found (from the
    check's metadata), as the great-expectations checks report them."""
    from data_quality.checks import _results
    from data_quality.suites import history_suite

    months = [dt.date(2002, 4, 1), dt.date(2002, 5, 1)]
    frame = pl.DataFrame(
        [{"band": band, "month": month} for month in months for band in range(6) if (band, month) != (3, months[1])]
    )
    [six_bands] = [check for check in history_suite(canonical_ranges()) if check.name == "six_bands_per_month"]
    mart = dg.AssetKey("mart")

    @dg.asset(key=mart)
    def build_mart():
        return None

    @dg.multi_asset_check(specs=[dg.AssetCheckSpec("gx_six_bands_per_month", asset=mart, blocking=True)])
    def mart_expectations():
        yield from _results(mart, frame, [six_bands])

    result = dg.materialize([build_mart, mart_expectations], raise_on_error=False)
    lines = describe_failure(result)
    assert lines[0].startswith("check mart:gx_six_bands_per_month FAILED")
    assert lines[1] == "  expect_column_values_to_be_between on n_bands (expected 6.0..6.0): 1 row(s), first:"
    assert lines[2] == "    month 2002-05, n_bands 5"
