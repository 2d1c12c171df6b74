"""Shared fixtures: every test gets its own lake and warehouse under tmp_path."""

import logging
import socket
import uuid

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


# A real local S3 for the object-store lake's tests (tests/dagster_project/test_object_store.py,
# tests/sql/test_cell_mart.py)
@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 (a free port) for the session; dummy credentials in this
    process's environment (and its children's) only while it runs, no AWS configuration read."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    no_file = tmp_path_factory.mktemp("aws") / "none"
    try:
        with pytest.MonkeyPatch.context() as env:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
                env.delenv(name, raising=False)
            env.setenv("AWS_ACCESS_KEY_ID", "testing")
            env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            env.setenv("AWS_DEFAULT_REGION", "us-east-1")
            env.setenv("AWS_EC2_METADATA_DISABLED", "true")
            env.setenv("AWS_CONFIG_FILE", str(no_file))
            env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(no_file))
            yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_root(s3_endpoint):
    """A lake root in a bucket of its own."""
    from upath import UPath

    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    root = UPath(f"s3://{bucket}/lake", client_kwargs={"endpoint_url": s3_endpoint})
    root.fs.mkdir(bucket)
    return root
