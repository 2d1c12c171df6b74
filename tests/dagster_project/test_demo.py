"""`make demo` end to end on the demo source: every asset materializes and every check passes."""

import json

import numpy as np
import polars as pl
import pytest
from dagster import DagsterInstance

from dagster_project import settings


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_graph")
    patch = pytest.MonkeyPatch()
    patch.setenv(settings.ENV_LAKE_ROOT, str(root / "data"))
    patch.delenv(settings.ENV_WAREHOUSE, raising=False)
    patch.delenv(settings.ENV_DEMO_LATEST_MONTH, raising=False)
    # a few epochs keep the suite short; `make demo` trains for 50
    patch.setenv(settings.ENV_TRAINING_EPOCHS, "3")
    from dagster_project.demo import run_demo

    instance = DagsterInstance.ephemeral()
    timings = run_demo(instance)
    yield root / "data", instance, timings
    patch.undo()


@pytest.mark.slow
def test_every_asset_materializes_and_every_check_passes(demo_run):
    lake, instance, timings = demo_run
    from dagster_project.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert instance.get_latest_materialization_event(key) is not None, key.to_user_string()
    failed = []
    for check_key in graph.asset_check_keys:
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([check_key]).get(check_key)
        assert record is not None, f"check never ran: {check_key.to_user_string()}"
        evaluation = record.event.asset_check_evaluation if record.event else None
        if evaluation is None or not evaluation.passed:
            failed.append(check_key.to_user_string())
    assert failed == []


@pytest.mark.slow
def test_runs_are_named_and_tagged_by_stage(demo_run):
    _, instance, timings = demo_run
    from dagster_project.demo import LAUNCHED_BY, STAGE

    runs = instance.get_runs()
    assert runs and {run.job_name for run in runs} <= {
        "unpartitioned_assets",
        "reanalysis_month_assets",
        "cmip5_experiment_assets",
        "rcp_assets",
        "architecture_assets",
    }
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
        }.get(name, [None])
        names = (*ARCHITECTURES, *catalog.RCP_EXPERIMENTS)
        for partition in partitions:
            declared.update(layout.outputs(name, partition, names=names))
    found = {p for p in lake.rglob("*") if p.is_file() and p != layout.default_warehouse()}
    undeclared = sorted(str(p) for p in found if not any(p == d or d in p.parents for d in declared))
    assert undeclared == []


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
        assert len(windows) == 6 * (2100 - 2024 + 1) * 12
        assert np.isfinite(windows.x).all()


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
    assert set(overall["model"]) == {
        "tcn",
        "transformer",
        "conv1d_lstm",
        "gru",
        "bilstm",
        "climatology",
        "persistence",
        "ridge",
    }
    assert overall["rmse"].is_finite().all() and (overall["rmse"] > 0).all()
    per_band_layer = table.filter(pl.col("scope") == "band_layer")
    assert per_band_layer.height == 8 * 6 * 4


@pytest.mark.slow
def test_projections_exports_and_active_layer(demo_run):
    import xarray as xr

    lake, _, _ = demo_run
    projections = pl.read_parquet(lake / "projections" / "soil_temperature_projections.parquet")
    assert projections["month"].min().isoformat() == "2024-01-01"
    assert projections["month"].max().isoformat() == "2100-12-01"
    assert "ensemble_mean" in set(projections["model"])
    with xr.open_dataset(lake / "projections" / "soil_temperature_projections.nc") as dataset:
        assert dict(dataset["soil_temperature"].sizes) == {
            "scenario": 4,
            "model": 6,
            "band": 6,
            "depth": 4,
            "time": 924,
        }
        assert dataset["soil_temperature"].attrs["units"] == "degC"
    alt = pl.read_parquet(lake / "projections" / "active_layer_thickness.parquet")
    assert {"reanalysis", "rcp26", "rcp85"} <= set(alt["scenario"])
    importance = pl.read_parquet(lake / "evaluation" / "feature_importance.parquet")
    assert importance.group_by("model").len()["len"].to_list() == [33] * 5
