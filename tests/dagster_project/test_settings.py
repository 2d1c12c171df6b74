import datetime as dt

import pytest

from dagster_project import settings
from dagster_project.resources import build_resources


def test_defaults_run_offline_on_the_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = settings.from_environment({})
    assert config.source == "demo"
    assert config.lake_root == (tmp_path / "data").resolve()
    assert config.warehouse_path == config.lake_root / "warehouse.duckdb"
    assert config.demo_latest_month == "2023-12"
    assert (config.training_epochs, config.training_seeds) == (30, 5)


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
        (settings.ENV_SOURCE, "ftp", "not a known source"),
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
