import shutil

import pytest
from pool_slots import REPO


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A file-based DAGSTER_HOME with the repository's dagster.yaml, as the Makefile installs it."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_project" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home
