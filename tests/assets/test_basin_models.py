"""The modelling layer on a small lake of basins end to end: a basin table as the reanalysis (four
basins, one outside the bands, two sharing a series, 2001-01..2023-03), demo static and CMIP5,
dbt, then every model asset through Dagster. The basins lack skin temperature and snowfall: the
core runs from air temperature, snowfall is derived, the networks have no such channels; every
output carries unit and band; the hold-out of whole basins runs; the perfect model skips."""

import datetime as dt
import warnings

import numpy as np
import polars as pl
import pytest
import xarray as xr
from basin_tables import BASINS, basin_rows, write_basin_attributes, write_basin_table
from materializer import materializer
from test_dbt_project_on_basins import build_basin_lake

from dagster_project.lake import LakeLayout

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
]

LATEST = "2023-03"  # April 2023 is partial in the table's layout: not published
RCPS = {"dagster/asset_partition_range_start": "rcp26", "dagster/asset_partition_range_end": "rcp85"}


@pytest.fixture(scope="module")
def basin_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("basin_models")
    table = write_basin_table(root / "monthly_by_basin.csv", basin_rows(last=dt.date(2023, 4, 1)))
    attributes = write_basin_attributes(root / "basin_attributes.csv")
    config, resources, build = build_basin_lake(root, table, attributes, LATEST)
    assert build.returncode == 0, build.stdout[-3000:]
    materialize = materializer(resources)
    metadata = {}

    def run(selection, partition_key=None, tags=None, run_config=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the short overlap of no consequence here
            metadata.update(materialize(selection, partition_key, tags, run_config)[0])

    run(["thermal_core"])
    run(["training_windows"])
    run(["cmip5_bias_corrected"], tags=RCPS)
    # gru's networks 0 and 1 take bias-correction draws 3 and 8
    run(["scenario_windows"], tags=RCPS, run_config={"ops": {"scenario_windows": {"config": {"bias_draws": 9}}}})
    run(["hyperparameter_search"], partition_key="gru")
    run(
        ["trained_models"],
        partition_key="gru",
        run_config={"ops": {"trained_models": {"config": {"seeds": 2, "epochs": 2}}}},
    )
    run(["model_evaluation", "spatial_holdout_evaluation"])
    run(["soil_temperature_projections", "active_layer_thickness", "feature_importance", "perfect_model_validation"])
    return LakeLayout(config.lake_root), metadata


def test_the_core_runs_from_air_temperature_and_the_inputs_are_the_basins(basin_models):
    layout, metadata = basin_models
    core = metadata["thermal_core"]
    assert core["units"].value == "4 basins" and core["structure"].value["upper_boundary"] == "air"
    assert core["skin_temperature"].value == "absent from the sources"
    windows = metadata["training_windows"]
    inputs = windows["model_inputs"].value
    assert inputs["drivers"] == ["t_air", "p_total", "p_snow"] and list(inputs["derived"]) == ["p_snow"]
    assert "t_surface" in inputs["absent"] and "r_thermal" in inputs["absent"]
    # drivers, soil water, the core's four layers and the month: no absent channel
    assert windows["residual_train_shape"].value[1:] == [24, 3 + 4 + 4 + 2]
    summary = pl.read_parquet(layout.windows_summary("training"))
    assert set(summary["units"]) == {len(BASINS)} and summary["drivers"].unique().to_list() == [
        "t_air, p_total, p_snow"
    ]
    assert "r_thermal" not in summary.filter(pl.col("design") == "paper")["channel_names"][0]


def test_every_basin_is_scored_and_the_ones_outside_the_bands_are_a_group(basin_models):
    layout, metadata = basin_models
    table = pl.read_parquet(layout.model_evaluation())
    gru = table.filter(pl.col("model") == "gru", pl.col("member").is_null())
    assert gru.filter(pl.col("scope") == "unit")["unit"].sort().to_list() == sorted(b[0] for b in BASINS)
    assert gru.filter(pl.col("scope") == "band")["band"].sort(nulls_last=True).to_list() == [1, 2, None]
    assert metadata["model_evaluation"]["test_months"].value.startswith("2019-01..2023-03")
    assert metadata["model_evaluation"]["units"].value == "4 basins"
    paper = metadata["model_evaluation"]["paper_table_2"].value
    assert paper["table_2"]["gru"]["paper"] == 1.027 and "4 basins" in paper["how_the_data_differ"]


def test_the_spatial_hold_out_scores_whole_series_groups_it_never_trained_on(basin_models):
    layout, metadata = basin_models
    holdout = metadata["spatial_holdout_evaluation"]
    assert holdout["status"].value == "evaluated"
    split = pl.read_parquet(layout.spatial_holdout().split)
    held = split.filter(pl.col("held_out"))
    # 3 series groups (basin 5 repeats basin 3): one held out, whole
    assert held["series_group"].n_unique() == 1
    group = held["series_group"][0]
    assert set(held["unit"]) == set(split.filter(pl.col("series_group") == group)["unit"])
    scores = pl.read_parquet(layout.spatial_holdout().scores)
    assert set(scores.filter(pl.col("scope") == "unit")["unit"]) == set(held["unit"])
    assert {"gru", "ensemble", "climatology", "thermal_core", "pooled_ridge"} <= set(scores["model"])


def test_projections_and_active_layer_per_basin_and_the_perfect_model_skips(basin_models):
    layout, metadata = basin_models
    projections = pl.read_parquet(layout.projections("parquet"))
    assert sorted(projections["unit"].unique().to_list()) == sorted(b[0] for b in BASINS)
    outside = projections.filter(pl.col("unit") == 308)
    assert outside.height and outside["band"].null_count() == outside.height
    with xr.open_dataset(layout.projections("nc")) as ds:
        assert ds.attrs["featureType"] == "timeSeries" and ds["soil_temperature"].dims[3] == "unit"
        assert sorted(ds["unit"].values.tolist()) == sorted(b[0] for b in BASINS)
    alt = pl.read_parquet(layout.active_layer())
    reanalysis = alt.filter(pl.col("scenario") == "reanalysis")
    assert set(reanalysis["unit"]) == {b[0] for b in BASINS} and np.isin(reanalysis["year"], [2001, 2022]).any()
    assert metadata["perfect_model_validation"]["status"].value == "skipped"
    assert "basin" in metadata["perfect_model_validation"]["reason"].value
    importance = pl.read_parquet(layout.feature_importance())
    assert set(importance["feature"]) == {"t_air", "p_total", "p_snow", "w_0", "w_1", "w_2", "w_3"} | {
        f"core_t_soil_{k}" for k in range(4)
    } | {"month_sin", "month_cos"}
