"""Grid mode's tile-partitioned assets and maps on a 3 x 3 grid of 7 land cells in 3 tiles: one
tile materializes on the serial path, a two-tile backfill is one run on an embedded 2-worker
LocalCluster, and the maps mosaic every tile into a CF netCDF that xarray opens, a view per cell
and a figure per RCP. The history mart and the scenario mart's band scenarios are written here
(synthetic, `synthetic_cells`), so no dbt runs; `tile_scenarios` regrids and bias-corrects them
(xsdba) and `tile_projections` is driven by what it landed."""

import dataclasses
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, materialize
from polars.testing import assert_frame_equal
from synthetic_cells import cell_series

from assets.grid import grid_assets
from dagster_project import lake
from dagster_project.dask_engine import DaskResource
from dagster_project.partitions import partitioning_of
from dagster_project.resources import LakeResource, WarehouseResource
from ml.regrid import BAND_CENTROID_LATITUDES
from ml.tile_projection import SCENARIO_DRIVERS, SUMMARY_COLUMNS
from ml.tile_scenarios import SCENARIO_VARIABLES
from ml.tiles import CORE_VARIABLES
from sources import catalog
from sources.grid import Grid, GridSpec

SPEC = GridSpec(
    south=64.0, north=64.9, west=-150.0, east=-149.1, lat_step=0.3, lon_step=0.3, centred=True, tile_rows=2, tile_cols=2
)
LAND = np.array([[True, True, True], [True, True, True], [True, False, False]])
GRID = Grid(SPEC, LAND)
HISTORY = np.arange(np.datetime64("2015-01"), np.datetime64("2020-12") + 1)
SCENARIO = np.arange(np.datetime64("2016-01"), np.datetime64("2100-12") + 1)
WARMING_K = {"rcp26": 0.5, "rcp45": 1.5, "rcp60": 2.5, "rcp85": 4.5}  # by 2100, linear from 2016
# each band's share of WARMING_K: Arctic amplified, band 2 (whose centroid, 64.29 N, the cells surround) 1
AMPLIFICATION = 1.0 + 0.5 * (np.arange(catalog.N_BANDS) - 2)
RANGE = {"dagster/asset_partition_range_start": "r00c01", "dagster/asset_partition_range_end": "r01c00"}
CONFIG = {"ops": {"tile_core": {"config": {"max_iterations": 2}}}}
TILE_ASSETS = ["tile_core", "tile_scenarios", "tile_projections"]


def _long(months: np.ndarray, values: np.ndarray, names, **columns) -> pl.DataFrame:
    """(T, cell, V) values as rows unit, month, names... over every land cell."""
    n_months, n_cells = values.shape[:2]
    return pl.DataFrame(
        {
            **columns,
            "unit": np.tile(GRID.cells, n_months),
            "month": pl.Series(np.repeat(months.astype("datetime64[D]"), n_cells)).cast(pl.Date),
            **{name: values[..., k].ravel().astype(np.float64) for k, name in enumerate(names)},
        }
    )


def _write_inputs(root: Path, warehouse: Path) -> None:
    """The history mart (cells), the raw CMIP5 calendars and the scenario mart (each RCP per band)."""
    cells = cell_series(GRID.cells, GRID.cell_lat, HISTORY)
    p_total = cells[..., CORE_VARIABLES.index("p_snow")] + 0.01
    history = _long(HISTORY, np.concatenate([cells, p_total[..., None]], -1), (*CORE_VARIABLES, "p_total"))
    bands = cell_series(np.arange(catalog.N_BANDS), BAND_CENTROID_LATITUDES, SCENARIO, seed=1)
    base = {name: bands[..., CORE_VARIABLES.index(name)] for name in SCENARIO_DRIVERS}
    base["p_total"] = base["p_snow"] + 0.01
    ramp = (SCENARIO - SCENARIO[0]).astype(float) / (SCENARIO[-1] - SCENARIO[0]).astype(float)
    scenarios = []
    for scenario, warming in WARMING_K.items():
        values = dict(base)
        for name in ("t_surface", "t_air"):
            values[name] = base[name] + warming * ramp[:, None] * AMPLIFICATION[None]
        scenarios.append(
            pl.DataFrame(
                {
                    "scenario": scenario,
                    "band": np.tile(np.arange(catalog.N_BANDS), len(SCENARIO)),
                    "month": pl.Series(np.repeat(SCENARIO.astype("datetime64[D]"), catalog.N_BANDS)).cast(pl.Date),
                    **{name: values[name].ravel().astype(np.float64) for name in SCENARIO_VARIABLES},
                }
            )
        )
    scenario_mart = pl.concat(scenarios)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema marts")
        con.execute("create schema raw")
        con.register("history", history.to_arrow())
        con.execute("create table marts.fct_band_month_features as select * from history")
        con.register("scenarios", scenario_mart.to_arrow())
        con.execute("create table marts.fct_scenario_band_month_features as select * from scenarios")
        con.execute(
            "create table raw.cmip5_monthly as select * from (values ('historical', 'noleap'), ('rcp26', 'noleap'), "
            "('rcp45', 'noleap'), ('rcp60', 'noleap'), ('rcp85', 'noleap')) as t(experiment, calendar)"
        )


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """The assets run as a user would: one tile (serial), a two-tile backfill (cluster), the maps."""
    root = tmp_path_factory.mktemp("grid") / "data"
    root.mkdir()
    warehouse = root / "warehouse.duckdb"
    _write_inputs(root, warehouse)
    assets = grid_assets(GRID)
    instance = DagsterInstance.ephemeral()
    base = {"lake": LakeResource(root=str(root)), "warehouse": WarehouseResource(path=str(warehouse))}
    layout = lake.LakeLayout(root)

    def run(selection, dask: DaskResource, **options):
        result = materialize(
            assets, selection=selection, resources={**base, "dask": dask}, instance=instance, **options
        )
        assert result.success
        return result

    one = run(TILE_ASSETS, DaskResource(serial=True), partition_key="r00c00", run_config=CONFIG)
    after_one = sorted(p.relative_to(root).as_posix() for p in (root / "grid").rglob("*.parquet"))
    backfill = run(TILE_ASSETS, DaskResource(n_workers=2), tags=RANGE, run_config=CONFIG)
    maps = run(["grid_maps"], DaskResource(serial=True))
    return {
        "root": root,
        "layout": layout,
        "warehouse": warehouse,
        "assets": assets,
        "instance": instance,
        "one": one,
        "after_one": after_one,
        "backfill": backfill,
        "maps": maps,
    }


def _materialized(result) -> list[tuple[str, str | None]]:
    return sorted(
        (e.materialization.asset_key.to_user_string(), e.materialization.partition)
        for e in result.get_asset_materialization_events()
    )


def test_the_assets_are_partitioned_by_the_grids_tiles_in_single_runs(flow):
    core, scenarios, projections, maps = flow["assets"]
    assert core.partitions_def.get_partition_keys() == ["r00c00", "r00c01", "r01c00"] == [t.key for t in GRID.tiles]
    assert projections.partitions_def == scenarios.partitions_def == core.partitions_def
    assert maps.partitions_def is None
    assert partitioning_of(core.partitions_def) == "tile"
    for assets_def in (core, scenarios, projections):
        assert assets_def.backfill_policy.max_partitions_per_run is None  # single run
    # projections are driven by the regridded scenarios, no longer by the nearest band's rows
    assert AssetKey("tile_scenarios") in projections.dependency_keys
    assert AssetKey("cmip5_bias_corrected") not in projections.dependency_keys
    assert AssetKey("fct_scenario_band_month_features") in scenarios.dependency_keys


def test_one_tile_materializes_alone(flow):
    assert _materialized(flow["one"]) == [
        ("tile_core", "r00c00"),
        ("tile_projections", "r00c00"),
        ("tile_scenarios", "r00c00"),
    ]
    assert flow["after_one"] == sorted(
        f"grid/{kind}/r00c00.parquet"
        for kind in ("core/parameters", "core/history", "projections/soil_temperature", "projections/active_layer")
        + ("projections/summary", "scenarios/drivers", "scenarios/diagnostics")
    )
    tile = GRID.tile("r00c00")
    parameters = pl.read_parquet(flow["layout"].tile_core("r00c00").parameters)
    assert parameters["cell"].to_list() == tile.cells.tolist() and set(parameters["iterations"]) == {2}
    history = pl.read_parquet(flow["layout"].tile_core("r00c00").history)
    assert history.height == len(HISTORY) * tile.cells.size
    soil = pl.read_parquet(flow["layout"].tile_projections("r00c00").soil_temperature)
    months = 12 * (2100 - 2024 + 1)
    assert soil.height == len(WARMING_K) * months * tile.cells.size
    assert soil["month"].min().isoformat() == "2024-01-01" and soil["month"].max().isoformat() == "2100-12-01"
    alt = pl.read_parquet(flow["layout"].tile_projections("r00c00").active_layer)
    assert alt.height == len(WARMING_K) * (2100 - 2024 + 1) * tile.cells.size
    assert set(alt["flag"]) <= {"ok", "none_thawed", "all_thawed", "multiple_crossings"}
    metadata = flow["one"].asset_materializations_for_node("tile_projections")[0].metadata
    assert metadata["engine"].value.startswith("serial") and metadata["cells"].value == tile.cells.size


def test_a_two_tile_backfill_is_one_run_on_the_cluster(flow):
    result = flow["backfill"]
    assert _materialized(result) == [
        ("tile_core", "r00c01"),
        ("tile_core", "r01c00"),
        ("tile_projections", "r00c01"),
        ("tile_projections", "r01c00"),
        ("tile_scenarios", "r00c01"),
        ("tile_scenarios", "r01c00"),
    ]
    runs = flow["instance"].get_runs()
    assert len(runs) == 3  # one per materialize: the backfill's tiles ran in one run
    backfill = flow["instance"].get_run_by_id(result.run_id)
    assert {k: backfill.tags[k] for k in RANGE} == RANGE
    metadata = result.asset_materializations_for_node("tile_core")[0].metadata
    assert metadata["tiles"].value == 2 and metadata["engine"].value == "embedded LocalCluster"
    assert metadata["cells"].value == GRID.tile("r00c01").cells.size + GRID.tile("r01c00").cells.size
    scenarios = result.asset_materializations_for_node("tile_scenarios")[0].metadata
    assert scenarios["engine"].value == "embedded LocalCluster" and scenarios["cells"].value == metadata["cells"].value
    assert scenarios["seconds"].value > 0 and scenarios["regridding"].value.startswith("linear in latitude")
    assert not [p for p in flow["root"].rglob("*") if lake.is_temporary(p)]


def test_the_projections_are_driven_by_the_tiles_regridded_scenarios(flow):
    from assets.grid import read_tile_parameters, read_tile_reanalysis, read_tile_scenarios
    from ml.tile_projection import TileProjectionTask, project_tile

    layout, key = flow["layout"], "r00c00"
    lake_resource = LakeResource(root=str(flow["root"]))
    calendars = dict.fromkeys(catalog.RCP_EXPERIMENTS, "noleap")
    drivers = read_tile_scenarios(lake_resource, GRID, [key], calendars)[key]
    history = read_tile_reanalysis(WarehouseResource(path=str(flow["warehouse"])), GRID, [key], CORE_VARIABLES)[key]
    projected = project_tile(TileProjectionTask(history, read_tile_parameters(lake_resource, GRID.tile(key)), drivers))
    soil = pl.read_parquet(layout.tile_projections(key).soil_temperature)
    for scenario, (_, values) in projected.items():
        stored = soil.filter(pl.col("scenario") == scenario).sort("cell", "month")
        expected = np.transpose(values, (1, 0, 2)).reshape(-1, len(catalog.TARGETS))
        np.testing.assert_array_equal(stored.select(catalog.TARGETS).to_numpy(), expected, err_msg=scenario)
    # regridded, not the nearest band's: all 7 cells lie in band 2, yet the cells north of its
    # centroid warm more than those south of it, as the amplified bands around them do
    frame = pl.concat(pl.read_parquet(layout.tile_scenarios(t.key).drivers) for t in GRID.tiles)
    year = pl.col("month").dt.year()
    late = (
        frame.filter(pl.col("scenario") == "rcp85")
        .group_by("cell")
        .agg(pl.col("t_air").filter(year >= 2081).mean() - pl.col("t_air").filter(year.is_between(2024, 2043)).mean())
        .sort("cell")
    )
    lat = GRID.cell_lat[GRID.positions(late["cell"].to_numpy())]
    warming = late["t_air"].to_numpy()
    assert warming[lat > 64.6].mean() > warming[lat < 64.2].mean() + 0.2


def test_warming_follows_the_scenarios(flow):
    summary = pl.concat(pl.read_parquet(flow["layout"].tile_projections(t.key).summary) for t in GRID.tiles)
    assert summary.height == len(WARMING_K) * GRID.cells.size
    mean = summary.group_by("scenario").agg(pl.col("warming_0").mean()).sort("scenario")
    warming = dict(zip(mean["scenario"], mean["warming_0"], strict=True))
    # the drivers warm by (late - early) x the scenario's rate: about 0.68 x WARMING_K at the surface; the
    # quantile mapping over the short (5-year) overlap blurs the weakest signal (rcp26: 0.5 K by 2100)
    assert warming["rcp26"] < warming["rcp45"] < warming["rcp60"] < warming["rcp85"]
    for scenario, value in warming.items():
        assert 0.15 * WARMING_K[scenario] < value < 1.2 * WARMING_K[scenario], scenario


def test_the_maps_netcdf_opens_in_xarray_and_equals_the_tiles(flow):
    import xarray as xr

    path = flow["layout"].grid_maps().netcdf
    summary = pl.concat(pl.read_parquet(flow["layout"].tile_projections(t.key).summary) for t in GRID.tiles)
    with xr.open_dataset(path) as ds:
        assert ds.attrs["Conventions"] == "CF-1.8"
        assert dict(ds.sizes) == {"scenario": 4, "time": 2, "depth": 4, "lat": 3, "lon": 3, "bnds": 2}
        assert ds["soil_warming"].dims == ("scenario", "depth", "lat", "lon")
        assert ds["active_layer_thickness"].dims == ("scenario", "time", "lat", "lon")
        assert ds["lat"].dims == ("lat",) and np.allclose(ds["lat"], SPEC.lat) and np.allclose(ds["lon"], SPEC.lon)
        assert ds["lat"].attrs["standard_name"] == "latitude" and ds["lon"].attrs["units"] == "degrees_east"
        assert ds["soil_temperature"].attrs["standard_name"] == "soil_temperature"
        assert ds["active_layer_thickness"].attrs["standard_name"] == "permafrost_active_layer_thickness"
        assert ds["active_layer_thickness"].attrs["units"] == "m" and ds["soil_warming"].attrs["units"] == "K"
        assert list(ds["scenario"].values) == list(catalog.RCP_EXPERIMENTS)
        # one step per period, a mean over it: bounds from the first January 1 to the one after the last year
        bounds = ds["time_bnds"].values.astype("datetime64[Y]").astype(int) + 1970
        assert bounds.tolist() == [[2024, 2044], [2081, 2101]] and ds["time"].attrs["bounds"] == "time_bnds"
        assert (ds["time_bnds"][:, 0] < ds["time"]).all() and (ds["time"] < ds["time_bnds"][:, 1]).all()
        # every land cell's values are its tile's; the grid point and the cell id agree
        for row in summary.iter_rows(named=True):
            r, c = divmod(row["cell"], SPEC.shape[1])
            at = {"scenario": row["scenario"], "lat": r, "lon": c}
            point = ds.isel(lat=r, lon=c).sel(scenario=row["scenario"])
            assert int(ds["cell"].isel(lat=r, lon=c)) == row["cell"], at
            for k in range(4):
                assert np.isclose(point["soil_warming"][k], row[f"warming_{k}"], atol=1e-5), at
                assert np.isclose(point["soil_temperature"][1, k], row[f"t_soil_{k}_late"], atol=1e-5), at
            assert np.isclose(point["active_layer_thickness"][0], row["alt_early_m"], atol=1e-5), at
            assert np.isclose(point["talik_share"][1], row["talik_late_share"], atol=1e-6), at
            assert int(point["becomes_talik"]) == int(row["becomes_talik"]), at
        # sea: NaN once decoded
        assert np.isnan(ds["soil_warming"].values[:, :, ~LAND]).all()
        assert np.isfinite(ds["soil_warming"].values[:, :, LAND]).all()
    with xr.open_dataset(path, mask_and_scale=False) as raw:  # the stored values: sea cells are the fill value
        warming = raw["soil_warming"]
        assert warming.attrs["_FillValue"] == np.float32(1e20) and warming.dtype == np.float32
        assert (warming.values[:, :, ~LAND] == np.float32(1e20)).all()
        assert (warming.values[:, :, LAND] != np.float32(1e20)).all()
        talik = raw["becomes_talik"]
        assert talik.attrs["_FillValue"] == -1 and (talik.values[:, ~LAND] == -1).all()
        assert set(np.unique(talik.values[:, LAND])) <= {0, 1}
        assert (raw["cell"].values[~LAND] == -1).all()
        assert "_FillValue" not in raw["lat"].attrs


def test_the_maps_are_views_per_cell_and_figures_in_the_ui(flow):
    metadata = flow["maps"].asset_materializations_for_node("grid_maps")[0].metadata
    for scenario in catalog.RCP_EXPERIMENTS:
        assert metadata[f"figure_{scenario}"].value.startswith(f"![{scenario} maps](data:image/png;base64,")
        assert flow["layout"].figure(f"grid_map_{scenario}").stat().st_size > 10_000
    assert metadata["cells"].value == GRID.cells.size == 7
    assert set(metadata["warehouse_views"].value.split(", ")) == {str(v) for v in lake.GRID_OUTPUT_VIEWS}
    with duckdb.connect(str(flow["warehouse"]), read_only=True) as con:
        cells = con.execute("select scenario, cell, tile, lat, lon from maps.cell_maps order by all").fetchall()
        assert len(cells) == 4 * 7 and {c[1] for c in cells} == set(GRID.cells.tolist())
        columns = [row[0] for row in con.execute("describe maps.cell_maps").fetchall()]
        assert columns == ["scenario", "cell", "tile", "lat", "lon", *SUMMARY_COLUMNS]
        years = con.execute("select count(*), count(distinct cell) from maps.cell_active_layer").fetchone()
        assert years == (4 * 77 * 7, 7)
        months = con.execute(
            "select count(*) from maps.cell_soil_temperature where scenario = 'rcp85' and cell = ?",
            [int(GRID.cells[0])],
        ).fetchone()
        assert months == (12 * 77,)


def test_the_maps_refuse_a_grid_with_a_tile_not_projected(flow, tmp_path):
    partial = Grid(dataclasses.replace(SPEC, tile_rows=1), LAND)  # other tiles: none projected
    maps = grid_assets(partial)[3]
    with pytest.raises(Exception, match=r"tile\(s\) have no projections yet \(r00c00"):
        materialize(
            [maps],
            resources={
                "lake": LakeResource(root=str(tmp_path)),
                "warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb")),
                "dask": DaskResource(serial=True),
            },
        )


def test_the_grid_runs_on_a_lake_on_an_object_store(flow, s3_root, s3_endpoint, tmp_path, monkeypatch):
    """The tile assets and the maps with the lake root in a bucket (moto's S3 server): the workers of
    a 2-worker LocalCluster upload their tiles to the run's staging prefix, the run commits them by a
    manifest, and everything lands equal to the local lake's, read back through fsspec."""
    import xarray as xr

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # for s3fs here and in the workers it starts
    root = str(s3_root)
    warehouse = tmp_path / "warehouse.duckdb"  # the warehouse stays a local DuckDB file
    _write_inputs(tmp_path, warehouse)
    resources = {
        "lake": LakeResource(root=root),
        "warehouse": WarehouseResource(path=str(warehouse), lake_root=root),
    }
    every_tile = {"dagster/asset_partition_range_start": "r00c00", "dagster/asset_partition_range_end": "r01c00"}
    assets = grid_assets(GRID)
    instance = DagsterInstance.ephemeral()
    tiles = materialize(
        assets,
        selection=TILE_ASSETS,
        resources={**resources, "dask": DaskResource(n_workers=2)},
        instance=instance,
        tags=every_tile,
        run_config=CONFIG,
    )
    assert tiles.success
    maps = materialize(
        assets, selection=["grid_maps"], resources={**resources, "dask": DaskResource(serial=True)}, instance=instance
    )
    assert maps.success
    objects = sorted(key[len(s3_root.path) + 1 :] for key in s3_root.fs.find(s3_root.path))
    assert not [key for key in objects if key.startswith(".batches/") or key.endswith(".tmp")]  # all published
    local = flow["layout"]
    on_s3 = lake.LakeLayout(s3_root)
    for tile in GRID.tiles:
        for files in ("tile_core", "tile_scenarios", "tile_projections"):
            expected = dataclasses.asdict(getattr(local, files)(tile.key))
            for output, target in dataclasses.asdict(getattr(on_s3, files)(tile.key)).items():
                assert target.path[len(s3_root.path) + 1 :] in objects
                # exact, and on a difference it names the column and the values
                assert_frame_equal(lake.read_parquet(target), pl.read_parquet(expected[output]), check_exact=True)
    netcdf = on_s3.grid_maps().netcdf
    with (
        lake.local_copy(netcdf) as path,
        xr.open_dataset(path) as ds,
        xr.open_dataset(local.grid_maps().netcdf) as expected,
    ):
        xr.testing.assert_equal(ds.load(), expected.load())  # all but the attributes (history: when written)
        assert ds.attrs.keys() == expected.attrs.keys()
    metadata = maps.asset_materializations_for_node("grid_maps")[0].metadata
    assert metadata["figure_rcp85"].value.startswith("![rcp85 maps](data:image/png;base64,")
    with resources["warehouse"].read_only() as con:  # the views read the bucket through fsspec
        assert con.execute("select count(*), count(distinct cell) from maps.cell_maps").fetchone() == (4 * 7, 7)
