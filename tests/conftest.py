"""Shared fixtures: every test gets its own lake and warehouse under tmp_path."""

import pytest
from dagster import DagsterInstance
from instances import instance_knowing_months

from dagster_project import settings
from dagster_project.dbt import dbt_project
from dagster_project.resources import build_resources


def pytest_configure(config):
    """Prepare the dbt manifest once, before test modules import the dbt assets."""
    dbt_project()


# Short history keeps the raw-asset tests fast; the demo's realism is tested on the full span.
TEST_LATEST_MONTH = "2003-12"


@pytest.fixture
def lake_env(tmp_path, monkeypatch):
    """Environment that points the lake and warehouse at tmp_path, demo source."""
    env = {
        settings.ENV_LAKE_ROOT: str(tmp_path / "data"),
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


@pytest.fixture(scope="session")
def months_instance():
    """Factory of instances that know the reanalysis months up to a given month (YYYY-MM)."""
    return instance_knowing_months


@pytest.fixture
def instance(lake_settings) -> DagsterInstance:
    """An instance that knows the lake's published months (up to its PERMAFROST_DEMO_LATEST_MONTH)."""
    return instance_knowing_months(lake_settings.demo_latest_month)
