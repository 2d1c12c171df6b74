import datetime as dt
import re
from pathlib import Path

import pytest

from dagster_project import settings
from dagster_project.resources import build_resources
from sources.config import EARTH_ENGINE_ENVIRONMENT


def test_defaults_run_offline_on_the_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = settings.from_environment({})
    assert config.sources_file is None
    assert config.sources.kinds() == {"reanalysis": "demo", "climate_model": "demo", "static": "demo"}
    assert config.lake_root == (tmp_path / "data").resolve()
    assert config.warehouse_path == config.lake_root / "warehouse.duckdb"
    assert config.demo_latest_month == "2023-12"
    assert (config.training_epochs, config.training_seeds) == (30, 5)


def test_an_object_store_lake_needs_a_local_warehouse(tmp_path):
    """PERMAFROST_LAKE_ROOT may be an object-store URL (kept as a URL, never made a local path);
    the DuckDB warehouse is a local file, so it must then be named."""
    config = settings.from_environment(
        {settings.ENV_LAKE_ROOT: "s3://lake-bucket/alaska", settings.ENV_WAREHOUSE: str(tmp_path / "wh.duckdb")}
    )
    assert str(config.lake_root) == "s3://lake-bucket/alaska" and not isinstance(config.lake_root, Path)
    assert config.warehouse_path == tmp_path / "wh.duckdb"
    with pytest.raises(settings.SettingsError, match="PERMAFROST_WAREHOUSE"):
        settings.from_environment({settings.ENV_LAKE_ROOT: "s3://lake-bucket/alaska"})
    assert settings.from_environment({settings.ENV_LAKE_ROOT: f"file://{tmp_path}/lake"}).lake_root == tmp_path / "lake"


def test_environment_overrides(tmp_path):
    config = settings.from_environment(
        {
            settings.ENV_LAKE_ROOT: str(tmp_path / "lake"),
            settings.ENV_WAREHOUSE: str(tmp_path / "wh.duckdb"),
            settings.ENV_DEMO_LATEST_MONTH: "2010-06-01",
            settings.ENV_DEMO_SEED: "7",
            settings.ENV_TRAINING_EPOCHS: "3",
            settings.ENV_TRAINING_SEEDS: "2",
        }
    )
    assert config.lake_root == tmp_path / "lake"
    assert config.warehouse_path == tmp_path / "wh.duckdb"
    assert config.demo_latest_month == "2010-06"
    assert config.demo_seed == 7
    assert (config.training_epochs, config.training_seeds) == (3, 2)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (settings.ENV_DEMO_SEED, "seven", "not an integer"),
        (settings.ENV_DEMO_LATEST_MONTH, "July", "not a month"),
        (settings.ENV_DEMO_LATEST_MONTH, "1999-12", "before the history start"),
        (settings.ENV_TRAINING_SEEDS, "0", "not a positive integer"),
        (settings.ENV_TRAINING_EPOCHS, "many", "not a positive integer"),
    ],
)
def test_bad_settings_are_named(key, value, message):
    with pytest.raises(ValueError, match=message) as error:
        settings.from_environment({key: value})
    assert key in str(error.value)


def test_a_month_after_the_current_one_is_refused():
    today = dt.date(2026, 3, 15)
    assert settings.from_environment({settings.ENV_DEMO_LATEST_MONTH: "2026-03"}, today=today).demo_latest_month == (
        "2026-03"
    )
    with pytest.raises(ValueError) as error:
        settings.from_environment({settings.ENV_DEMO_LATEST_MONTH: "2026-04"}, today=today)
    message = str(error.value)
    assert settings.ENV_DEMO_LATEST_MONTH in message and "in the future" in message and "2026-03" in message


def test_the_future_is_judged_against_the_real_date_by_default():
    next_year = f"{dt.date.today().year + 1}-01"
    with pytest.raises(ValueError, match=f"{settings.ENV_DEMO_LATEST_MONTH}='{next_year}' is in the future"):
        settings.from_environment({settings.ENV_DEMO_LATEST_MONTH: next_year})


def test_the_warehouse_lock_wait_is_configurable():
    assert settings.from_environment({}).warehouse_lock_wait_seconds == 60.0
    config = settings.from_environment({settings.ENV_WAREHOUSE_LOCK_WAIT: "2.5"})
    assert config.warehouse_lock_wait_seconds == 2.5
    assert build_resources(config)["warehouse"].lock_wait_seconds == 2.5
    for bad in ("soon", "-1", "nan"):
        with pytest.raises(ValueError, match=settings.ENV_WAREHOUSE_LOCK_WAIT):
            settings.from_environment({settings.ENV_WAREHOUSE_LOCK_WAIT: bad})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (settings.ENV_RETRAIN_CRON, "every January", "'every January' is not a cron expression"),
        (settings.ENV_RETRAIN_CRON, "0 3 31 2 *", "'0 3 31 2 \\*' is not a cron expression"),  # 31 February
        (settings.ENV_RETRAIN_CRON, "0 0 3 1 1 *", "is not a cron expression"),  # seconds: six fields
        (settings.ENV_FRESHNESS_MAX_LAG, "-1", "'-1' is not a whole number >= 0"),
        (settings.ENV_NEW_MONTH_POLL, "10", "'10' is not a whole number of seconds >= 30"),
        (settings.ENV_NEW_MONTH_POLL, "hourly", "'hourly' is not a whole number of seconds >= 30"),
    ],
)
def test_bad_cadences_are_named(key, value, message):
    with pytest.raises(settings.SettingsError, match=message) as error:
        settings.from_environment({key: value})
    assert str(error.value).startswith(f"{key}=")


def test_cadences_are_read():
    config = settings.from_environment(
        {
            settings.ENV_RETRAIN_CRON: " 0 4 1 */3 * ",
            settings.ENV_FRESHNESS_MAX_LAG: "0",
            settings.ENV_NEW_MONTH_POLL: "30",
        }
    )
    assert (config.retrain_cron, config.freshness_max_lag_months, config.new_month_poll_seconds) == (
        "0 4 1 */3 *",
        0,
        30,
    )
    defaults = settings.from_environment({})
    assert (defaults.retrain_cron, defaults.freshness_max_lag_months, defaults.new_month_poll_seconds) == (
        "0 3 1 1 *",
        1,
        6 * 3600,
    )


def test_every_wrong_variable_is_named_at_once():
    with pytest.raises(settings.SettingsError) as error:
        settings.from_environment({settings.ENV_DEMO_SEED: "seven", settings.ENV_TRAINING_EPOCHS: "0"})
    assert str(error.value) == (
        "PERMAFROST_DEMO_SEED='seven' is not an integer; PERMAFROST_TRAINING_EPOCHS='0' is not a positive integer"
    )


def test_the_removed_source_variable_says_what_to_do_instead():
    for value in ("demo", "ftp"):
        with pytest.raises(settings.SettingsError) as error:
            settings.from_environment({settings.ENV_SOURCE_REMOVED: value})
        message = str(error.value)
        assert message.startswith(f"PERMAFROST_SOURCE={value!r} is no longer read: unset it")
        assert "PERMAFROST_SOURCES" in message
    # set but empty is unset, as for every variable
    assert settings.from_environment({settings.ENV_SOURCE_REMOVED: ""}).sources_file is None


def test_only_the_given_mapping_is_read(monkeypatch):
    monkeypatch.setenv(settings.ENV_DEMO_SEED, "11")
    monkeypatch.setenv(settings.ENV_SOURCE_REMOVED, "demo")
    assert settings.from_environment({}).demo_seed == settings.DEFAULT_DEMO_SEED
    monkeypatch.delenv(settings.ENV_SOURCE_REMOVED)
    assert settings.from_environment().demo_seed == 11  # no mapping: the process environment


def test_earth_engine_credentials_are_known_by_name_only(tmp_path):
    key_file = str(tmp_path / "secret-key.json")
    config = settings.from_environment(
        {"PERMAFROST_EE_SERVICE_ACCOUNT": "lake@p.iam.gserviceaccount.com", "PERMAFROST_EE_KEY_FILE": key_file}
    )
    assert (config.ee_project, config.ee_service_account, config.ee_key_file) == (False, True, True)
    dumped = repr(config) + str(config.model_dump())
    assert "lake@p.iam" not in dumped and key_file not in dumped


def test_each_variable_is_a_field_and_the_readme_lists_them():
    variables = {settings.Settings.variable(name) for name in settings.Settings.model_fields}
    constants = {value for name, value in vars(settings).items() if name.startswith("ENV_") and name != "ENV_PREFIX"}
    assert variables == constants - {settings.ENV_SOURCE_REMOVED} | set(EARTH_ENGINE_ENVIRONMENT)
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    documented = set(re.findall(r"`(PERMAFROST_[A-Z_]+)`", "".join(rows)))
    assert documented == variables


def test_the_demo_world_is_read_and_checked():
    assert settings.from_environment({}).demo_world == "default"
    chosen = settings.from_environment({settings.ENV_DEMO_WORLD: "peat"})
    assert chosen.demo_world == "peat"
    assert build_resources(chosen)["sources"]._demo_settings().world == "peat"
    with pytest.raises(ValueError, match="PERMAFROST_DEMO_WORLD='tundra' is not a demo world"):
        settings.from_environment({settings.ENV_DEMO_WORLD: "tundra"})
