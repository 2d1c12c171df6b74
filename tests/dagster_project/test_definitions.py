import json
import os
import subprocess
import sys

import dagster as dg

HEAVY_MODULES = (
    "tensorflow",
    "keras",
    "great_expectations",
    "shap",
    "xsdba",
    # the real sources: imported only by the connector that is chosen
    "ee",
    "cfgrib",
    "eccodes",
    "regionmask",
    "geopandas",
    "pyogrio",
    "rasterio",
    # object storage: imported only when the lake root is a URL (dagster_project.lake.object_store)
    "s3fs",
    "botocore",
)


def test_definitions_load_without_heavy_imports(lake_env):
    probe = (
        "import json, sys, time\n"
        "t = time.perf_counter()\n"
        "import dagster_project.definitions\n"
        "print(json.dumps({'seconds': time.perf_counter() - t,"
        f" 'heavy': [m for m in {HEAVY_MODULES!r} if m in sys.modules]}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []


def test_definitions_validate_and_hold_the_raw_group(lake_env):
    from dagster_project.definitions import defs

    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    raw = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).group_name == "raw"}
    assert raw == {"era5_land_monthly", "cmip5_monthly", "band_lithology", "band_soil_properties", "spatial_units"}
    era5 = graph.get(dg.AssetKey("era5_land_monthly"))
    # published months only: a dynamic partition per month the source has published
    assert isinstance(era5.partitions_def, dg.DynamicPartitionsDefinition)
    assert era5.partitions_def.name == "reanalysis_months"
    cmip5 = graph.get(dg.AssetKey("cmip5_monthly"))
    assert cmip5.partitions_def.get_partition_keys() == ["historical", "rcp26", "rcp45", "rcp60", "rcp85"]
    assert sorted(s.name for s in defs.sensors) == ["automation_sensor", "era5_land_new_month_sensor"]
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in defs.sensors)
    assert [s.name for s in defs.schedules] == ["monthly_refresh_schedule"]


def test_expectation_checks_are_attached_to_both_marts_and_block(lake_env):
    from dagster_project.definitions import defs

    graph = defs.resolve_asset_graph()
    gx_checks = {}
    for key in graph.asset_check_keys:
        if key.name.startswith("gx_"):
            gx_checks.setdefault(key.asset_key.to_user_string(), set()).add(key.name)
    expected = {
        "gx_physical_ranges",
        "gx_water_content_fraction",
        "gx_lithology_fractions_sum_to_one",
        "gx_no_missing_month",
        "gx_six_bands_per_month",
    }
    assert gx_checks["fct_band_month_features"] == expected | {"gx_amplitude_damps_with_depth"}
    assert gx_checks["fct_scenario_band_month_features"] == expected
    specs = [spec for checks_def in defs.asset_checks for spec in checks_def.check_specs]
    blocking = {spec.name for spec in specs if spec.blocking}
    assert {spec.name for spec in specs if spec.name.startswith("gx_")} <= blocking
    assert "holds_every_landed_month" in blocking
    assert "fresh_against_the_source" not in blocking  # a freshness lag warns; it does not stop anything


def test_dbt_lineage_runs_from_raw_assets_to_marts(lake_env):
    from dagster_project.definitions import defs

    graph = defs.resolve_asset_graph()
    upstream = graph.get(dg.AssetKey("fct_band_month_features")).parent_keys
    assert dg.AssetKey("stg_era5_land__monthly") in upstream
    stg = graph.get(dg.AssetKey("stg_era5_land__monthly"))
    assert stg.parent_keys == {dg.AssetKey("era5_land_monthly"), dg.AssetKey("spatial_units")}  # units: basins
    assert graph.get(dg.AssetKey("stg_cmip5__monthly")).parent_keys == {dg.AssetKey("cmip5_monthly")}
    assert graph.get(dg.AssetKey("fct_band_month_features")).partitions_def is not None


def test_the_dbt_resource_overrides_hooks_that_still_exist():
    from dagster_dbt import DbtCliResource

    from dagster_project.dbt_resource import ProjectDbtCliResource

    for hook in ("_cli_version", "_initialize_dbt_core_adapter"):
        assert hook in vars(DbtCliResource), (
            f"dagster-dbt no longer has {hook}: revisit dagster_project/dbt_resource.py"
        )
    from dagster_project.dbt import SQL_DIR, dbt_executable

    resource = ProjectDbtCliResource(project_dir=str(SQL_DIR), dbt_executable=dbt_executable())
    assert resource._cli_version.major == 1 and resource._initialize_dbt_core_adapter(["build"]) is None


def test_the_models_check_reports_without_blocking(lake_env):
    from dagster_project.definitions import defs

    graph = defs.resolve_asset_graph()
    [key] = [k for k in graph.asset_check_keys if k.name == "models_beat_best_baseline"]
    assert key.asset_key == dg.AssetKey("model_evaluation")
    assert not graph.get_check_spec(key).blocking


def test_grid_assets_exist_only_in_grid_mode(lake_env):
    from dagster_project.definitions import defs

    grid_assets = {"tile_core", "tile_scenarios", "tile_projections", "grid_maps"}
    grid_assets |= {"tile_training_shards", "cell_network", "tile_network_history", "tile_network_projections"}
    band_graph = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert not band_graph & grid_assets and "grid_tiles" not in {job.name for job in defs.jobs}
    sources = os.path.join(os.path.dirname(__file__), "..", "..", "sources", "demo_grid.yaml")  # what `make grid` runs
    probe = (
        "import json, sys\n"
        "import dagster as dg\n"
        "from dagster_project.definitions import defs\n"
        "dg.Definitions.validate_loadable(defs)\n"
        "graph = defs.resolve_asset_graph()\n"
        "tiles = graph.get(dg.AssetKey('tile_core')).partitions_def.get_partition_keys()\n"
        "job = defs.resolve_job_def('grid_tiles')\n"
        "print(json.dumps({'tiles': tiles, 'job_tiles': job.partitions_def.get_partition_keys(),"
        " 'job_assets': sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys),"
        " 'maps_parents': sorted(k.to_user_string() for k in graph.get(dg.AssetKey('grid_maps')).parent_keys),"
        " 'conditions': {k: graph.get(dg.AssetKey(k)).automation_condition.label"
        " for k in ('tile_scenarios', 'tile_core', 'cell_network', 'tile_projections')},"
        f" 'heavy': [m for m in {(*HEAVY_MODULES, 'xarray', 'distributed', 'matplotlib')!r} if m in sys.modules]}}))\n"
    )
    environ = {**os.environ, "PERMAFROST_SOURCES": str(sources)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=environ)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(report["tiles"]) == 20 and report["tiles"][0] == "r00c00" and report["job_tiles"] == report["tiles"]
    assert report["job_assets"] == [
        "tile_core",
        "tile_network_history",
        "tile_network_projections",
        "tile_projections",
        "tile_scenarios",
        "tile_training_shards",
    ]
    assert report["maps_parents"] == ["tile_projections"]
    conditions = report["conditions"]  # what learns from the whole history waits for the cadence, not each month
    for key in ("tile_scenarios", "tile_core", "cell_network"):
        assert conditions[key].startswith("on the retraining cadence"), key
    assert not conditions["tile_projections"].startswith("on the retraining cadence")
    assert report["heavy"] == []
