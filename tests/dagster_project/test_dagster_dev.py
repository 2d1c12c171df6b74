"""`make dev` serves the UI: start `dagster dev` on a free port and ask its GraphQL for the assets."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QUERY = "{ assetNodes { assetKey { path } groupName } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _restore_default_signals():
    # `dagster dev` started from a background job may inherit ignored SIGINT/SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.slow
def test_dagster_dev_serves_the_asset_graph(tmp_path, lake_env):
    port = _free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    dagster = Path(sys.executable).with_name("dagster")
    # as under `uv run`: the venv's executables (dbt among them) come first on PATH
    env = {**os.environ, "DAGSTER_HOME": str(home), "PATH": f"{dagster.parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_restore_default_signals,
    )
    try:
        nodes = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql",
                    data=json.dumps({"query": QUERY}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    payload = json.loads(response.read())
                nodes = payload.get("data", {}).get("assetNodes")
                if nodes:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert process.poll() is None, "dagster dev exited early"
        assert nodes, "the UI never answered with asset nodes"
        groups = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in nodes}
        for name in ("era5_land_monthly", "cmip5_monthly", "band_lithology", "band_soil_properties"):
            assert groups[name] == "raw"
        assert groups["stg_era5_land__monthly"] == "staging"
        assert groups["fct_band_month_features"] == "marts"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
