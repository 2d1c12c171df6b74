import json
import subprocess
import sys

import dagster as dg

HEAVY_MODULES = ("tensorflow", "keras", "great_expectations", "shap", "xsdba")


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
    assert raw == {"era5_land_monthly", "cmip5_monthly", "band_lithology", "band_soil_properties"}
    era5 = graph.get(dg.AssetKey("era5_land_monthly"))
    assert era5.partitions_def.get_first_partition_key() == "2001-01-01"
    cmip5 = graph.get(dg.AssetKey("cmip5_monthly"))
    assert cmip5.partitions_def.get_partition_keys() == ["historical", "rcp26", "rcp45", "rcp60", "rcp85"]
    assert [s.name for s in defs.sensors] == ["era5_land_new_month_sensor"]
