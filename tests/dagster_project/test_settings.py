import pytest

from dagster_project import settings


def test_defaults_run_offline_on_the_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = settings.from_environment({})
    assert config.source == "demo"
    assert config.lake_root == (tmp_path / "data").resolve()
    assert config.warehouse_path == config.lake_root / "warehouse.duckdb"
    assert config.demo_latest_month == "2023-12"


def test_environment_overrides(tmp_path):
    config = settings.from_environment(
        {
            settings.ENV_LAKE_ROOT: str(tmp_path / "lake"),
            settings.ENV_WAREHOUSE: str(tmp_path / "wh.duckdb"),
            settings.ENV_DEMO_LATEST_MONTH: "2010-06-01",
            settings.ENV_DEMO_SEED: "7",
        }
    )
    assert config.lake_root == tmp_path / "lake"
    assert config.warehouse_path == tmp_path / "wh.duckdb"
    assert config.demo_latest_month == "2010-06"
    assert config.demo_seed == 7


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (settings.ENV_SOURCE, "ftp", "not a known source"),
        (settings.ENV_DEMO_SEED, "seven", "not an integer"),
        (settings.ENV_DEMO_LATEST_MONTH, "July", "not a month"),
        (settings.ENV_DEMO_LATEST_MONTH, "1999-12", "before the history start"),
    ],
)
def test_bad_settings_are_named(key, value, message):
    with pytest.raises(ValueError, match=message) as error:
        settings.from_environment({key: value})
    assert key in str(error.value)
