"""Shared fixtures: every test gets its own lake and warehouse under tmp_path."""

import subprocess
import sys
from pathlib import Path

import pytest

from dagster_project import settings
from dagster_project.resources import build_resources

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


def pytest_configure(config):
    """Prepare the dbt manifest when tests run without `make` (which parses it already)."""
    if not (SQL_DIR / "target" / "manifest.json").exists():
        dbt = Path(sys.executable).with_name("dbt")
        subprocess.run([str(dbt), "parse", "--quiet", "--profiles-dir", str(SQL_DIR)], cwd=SQL_DIR, check=True)


# Short history keeps the raw-asset tests fast; the demo's realism is tested on the full span.
TEST_LATEST_MONTH = "2003-12"


@pytest.fixture
def lake_env(tmp_path, monkeypatch):
    """Environment that points the lake and warehouse at tmp_path, demo source."""
    env = {
        settings.ENV_LAKE_ROOT: str(tmp_path / "data"),
        settings.ENV_SOURCE: "demo",
        settings.ENV_DEMO_LATEST_MONTH: TEST_LATEST_MONTH,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(settings.ENV_WAREHOUSE, raising=False)
    return env


@pytest.fixture
def lake_settings(lake_env) -> settings.Settings:
    return settings.from_environment()


@pytest.fixture
def resources(lake_settings):
    return build_resources(lake_settings)
