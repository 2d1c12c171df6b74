"""The sources file: typed, validated once, errors name the key; credentials never in run config."""

import pytest

from dagster_project import settings
from dagster_project.resources import build_resources
from sources.config import SourcesConfigError, load_sources


def test_no_file_means_every_kind_on_the_demo():
    assert load_sources(None).kinds() == {"reanalysis": "demo", "climate_model": "demo", "static": "demo"}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("reanalysis:\n  kind: earth_engine\n  collection: ECMWF/ERA5_LAND/HOURLY\n", "reanalysis.collection"),
        ("reanalysis:\n  kind: ftp\n", "reanalysis: Input tag 'ftp'"),
        (
            "climate_model:\n  kind: band_table\n  model: X\n  files: {rcp99: a.csv}\n",
            "climate_model.files: unknown experiment 'rcp99'",
        ),
        ("climate_model:\n  kind: esgf\n  paths: ['nowhere/*.nc']\n", "climate_model.paths: no file matches"),
        (
            "static:\n  kind: files\n  geology: {path: none.gpkg}\n"
            "  soil: {kind: geotiff, bulk_density: a.tif, organic_carbon: b.tif}\n",
            "static.geology.path: no such file",
        ),
        ("reanalysis:\n  kind: demo\n  colour: blue\n", "reanalysis.colour: Extra inputs are not permitted"),
        ("reanalysis:\n  kind: earth_engine\n", "earth_engine: Earth Engine credentials are not set"),
        (
            "earth_engine:\n  service_account: a@b.iam.gserviceaccount.com\n",
            "earth_engine: Value error, a service account needs both",
        ),
    ],
)
def test_a_wrong_setting_fails_at_load_naming_the_key(tmp_path, text, key):
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    with pytest.raises(SourcesConfigError) as error:
        load_sources(path)
    assert key.replace("Value error, ", "") in str(error.value) and str(path) in str(error.value)


def test_the_environment_variable_is_validated_when_the_definitions_load(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text("reanalysis:\n  kind: cds\n  paths: [missing.nc]\n")
    with pytest.raises(ValueError, match="PERMAFROST_SOURCES: sources file .*reanalysis.paths"):
        settings.from_environment({settings.ENV_SOURCES_FILE: str(path)})


def test_paths_are_relative_to_the_file_and_credentials_come_as_env_vars(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "rcp45.csv").write_text("time,band\n")
    path = tmp_path / "sources.yaml"
    path.write_text("climate_model:\n  kind: band_table\n  model: M\n  files: {rcp45: tables/rcp45.csv}\n")
    config = load_sources(path)
    assert config.climate_model.files["rcp45"] == tmp_path / "tables" / "rcp45.csv"
    env = {
        settings.ENV_LAKE_ROOT: str(tmp_path / "data"),
        settings.ENV_SOURCES_FILE: str(path),
        "PERMAFROST_EE_PROJECT": "my-project",
        "PERMAFROST_EE_KEY_FILE": str(tmp_path / "key.json"),
        "PERMAFROST_EE_SERVICE_ACCOUNT": "lake@p.iam.gserviceaccount.com",
    }
    sources = build_resources(settings.from_environment(env))["sources"]
    # the resource holds EnvVar references, never the values: nothing secret in run config or the UI
    for field in ("ee_project", "ee_service_account", "ee_key_file"):
        assert type(getattr(sources, field)).__name__ == "EnvVar"
    assert str(tmp_path / "key.json") not in repr(sources.__dict__)


def test_the_settings_hold_the_validated_file_without_the_credentials(tmp_path):
    path = tmp_path / "sources.yaml"
    path.write_text("reanalysis:\n  kind: earth_engine\n  collection: ECMWF/ERA5_LAND/DAILY_AGGR\n")
    with pytest.raises(ValueError, match="PERMAFROST_SOURCES: .*earth_engine: Earth Engine credentials are not set"):
        settings.from_environment({settings.ENV_SOURCES_FILE: str(path)})
    config = settings.from_environment({settings.ENV_SOURCES_FILE: str(path), "PERMAFROST_EE_PROJECT": "my-project"})
    assert config.sources_file == path
    assert config.sources.kinds()["reanalysis"] == "earth_engine"
    assert config.sources.reanalysis.collection == "ECMWF/ERA5_LAND/DAILY_AGGR"
    assert config.ee_project and not config.sources.earth_engine.configured  # checked with it, not kept
    assert "my-project" not in repr(config)
