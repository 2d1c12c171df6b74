"""The UI from a fresh checkout: no `make`, no dbt on PATH, no manifest yet.

The webserver is started from the venv on a free loopback port in a copy of the repository's
tracked files, and asked over GraphQL for the asset graph, the checks, the sensors, schedules
and automation conditions, and the reanalysis months it would call missing.
"""

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dagster import DagsterInstance

from dagster_project.partitions import REANALYSIS_MONTHS, published_month_keys

REPO = Path(__file__).resolve().parents[2]
GRAPH = """{
  assetNodes {
    assetKey { path }
    groupName
    description
    automationCondition { label }
    assetChecksOrError { ... on AssetChecks { checks { name description blocking } } }
  }
}"""
MONTHS = """{
  assetNodeOrError(assetKey: {path: ["era5_land_monthly"]}) {
    ... on AssetNode { partitionKeys partitionStats { numMaterialized numPartitions numFailed } }
  }
}"""
INSTIGATORS = """{
  workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError {
    ... on RepositoryLocation { repositories {
      sensors { name sensorState { status } }
      schedules { name scheduleState { status } }
      jobs { name description }
    } }
    ... on PythonError { message }
  } } } }
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _restore_default_signals():
    # a webserver started from a background job may inherit ignored SIGINT/SIGTERM
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _fresh_checkout(target: Path) -> Path:
    """The repository's tracked files, as a clone has them: no sql/target, no manifest."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    assert not (target / "sql" / "target").exists()
    return target


def _ask(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload["errors"]
    return payload["data"]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A copy of the tracked files, a DAGSTER_HOME knowing the published months, an environment
    without the venv on PATH."""
    tmp_path = tmp_path_factory.mktemp("fresh_checkout")
    checkout = _fresh_checkout(tmp_path / "checkout")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(checkout / "dagster_project" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PERMAFROST_", "DBT_"))},
        "DAGSTER_HOME": str(home),
        "PERMAFROST_LAKE_ROOT": str(tmp_path / "data"),
        "PERMAFROST_DEMO_LATEST_MONTH": "2001-03",
        # no venv on PATH: dbt is found beside the interpreter, as under a plain `.venv/bin/dagster dev`
        "PATH": "/usr/bin:/bin",
    }
    # the months the source has published, registered as the sensor or `make demo` would
    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(REANALYSIS_MONTHS, published_month_keys(dt.date(2001, 3, 1)))
    return checkout, env, tmp_path


@pytest.mark.slow
def test_the_webserver_serves_the_graph_from_a_fresh_checkout(fresh):
    checkout, env, tmp_path = fresh
    port = _free_port()
    webserver = Path(sys.executable).with_name("dagster-webserver")
    log = tmp_path / "webserver.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [str(webserver), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=checkout,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_restore_default_signals,
        )
    try:
        started, nodes = time.monotonic(), None
        while time.monotonic() - started < 240 and process.poll() is None:
            try:
                nodes = _ask(port, GRAPH)["assetNodes"]
                if nodes:
                    break
            except (OSError, AssertionError):
                pass
            time.sleep(1)
        answered_after = time.monotonic() - started
        assert process.poll() is None, log.read_text()[-3000:]
        assert nodes, f"the UI never answered with asset nodes:\n{log.read_text()[-3000:]}"
        print(f"webserver answered after {answered_after:.0f} s")
        assert (checkout / "sql" / "target" / "manifest.json").exists()  # prepared on load

        groups = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        assert {groups[name]["groupName"] for name in ("era5_land_monthly", "cmip5_monthly")} == {"raw"}
        assert groups["fct_band_month_features"]["groupName"] == "marts"
        assert "select" not in groups["fct_band_month_features"]["description"].lower()
        assert groups["fct_band_month_features"]["automationCondition"]["label"] == "eager"
        assert "retraining cadence" in groups["training_windows"]["automationCondition"]["label"]
        checks = {c["name"]: c for c in groups["fct_band_month_features"]["assetChecksOrError"]["checks"]}
        assert checks["gx_physical_ranges"]["blocking"] and checks["holds_every_landed_month"]["blocking"]
        assert all(c["description"] for c in checks.values())
        raw_checks = {c["name"] for c in groups["era5_land_monthly"]["assetChecksOrError"]["checks"]}
        assert "fresh_against_the_source" in raw_checks

        months = _ask(port, MONTHS)["assetNodeOrError"]
        assert months["partitionKeys"] == ["2001-01-01", "2001-02-01", "2001-03-01"]  # no unpublished month
        assert months["partitionStats"]["numPartitions"] == 3

        [location] = _ask(port, INSTIGATORS)["workspaceOrError"]["locationEntries"]
        [repository] = location["locationOrLoadError"]["repositories"]
        sensors = {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
        assert sensors == {"era5_land_new_month_sensor": "RUNNING", "automation_sensor": "RUNNING"}
        assert {s["name"]: s["scheduleState"]["status"] for s in repository["schedules"]} == {
            "monthly_refresh_schedule": "STOPPED"
        }
        jobs = {j["name"]: j["description"] for j in repository["jobs"]}
        assert {"monthly_refresh", "model_training", "scenario_features"} <= set(jobs)
        assert all(jobs[name] for name in ("monthly_refresh", "model_training"))
        assert "Warning" not in log.read_text()  # start-up prints no warnings of the project's making
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.slow
def test_the_cli_materializes_a_month_from_a_fresh_checkout(fresh):
    checkout, env, tmp_path = fresh
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "asset", "materialize", "-m", "dagster_project.definitions"]
        + ["--select", "era5_land_monthly", "--partition", "2001-02-01"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "data" / "raw" / "era5_land_monthly" / "2001-02.parquet").exists()
    imported = subprocess.run(
        [sys.executable, "-c", "import dagster_project.definitions as d; print(len(d.defs.assets))"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert imported.returncode == 0 and int(imported.stdout.strip()) > 10, imported.stderr[-2000:]
