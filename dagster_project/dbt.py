"""The dbt project in sql/: where it is, which dbt runs it, its manifest and its shared vars.

The one place that knows these facts: the dbt assets, the dbt resource, the expectation
suites (canonical ranges) and the tests all ask here. dagster-dbt is imported only by
`dbt_project()`.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from dagster_project import settings
from dagster_project.settings import ENV_LAKE_ROOT, ENV_WAREHOUSE

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"

PROJECT_FILE = SQL_DIR / "dbt_project.yml"
MANIFEST = SQL_DIR / "target" / "manifest.json"


def dbt_executable() -> str:
    """The dbt installed beside this interpreter (the project's venv), else `dbt` on PATH.

    `uv run` and `make` put the venv first on PATH, a plain `.venv/bin/dagster dev` does not:
    looking beside the interpreter first makes both find the venv's dbt.
    """
    beside = Path(sys.executable).with_name("dbt")
    if beside.exists():
        return str(beside)
    on_path = shutil.which("dbt")
    if on_path is None:
        raise FileNotFoundError(f"no dbt executable beside {sys.executable} nor on PATH: run `uv sync`")
    return on_path


def parse_project(target_path: Path | None = None, environment: Mapping[str, str] | None = None) -> Path:
    """Run `dbt parse` (writes the manifest the Dagster dbt assets are built from)."""
    env = {**os.environ, **(environment or {})}
    if target_path is not None:
        env["DBT_TARGET_PATH"] = str(target_path)
    result = subprocess.run(
        [dbt_executable(), "parse", "--quiet", "--profiles-dir", str(SQL_DIR)],
        cwd=SQL_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"`dbt parse` failed in {SQL_DIR}:\n{result.stdout}\n{result.stderr}")
    return (target_path or SQL_DIR / "target") / "manifest.json"


PARTIAL_PARSE = MANIFEST.with_name("partial_parse.msgpack")
PARSED_WITH = MANIFEST.with_name(".parsed_with.json")


def _manifest_is_stale(environment: Mapping[str, str]) -> bool:
    if not MANIFEST.exists():
        return True
    try:
        if json.loads(PARSED_WITH.read_text()) != dict(environment):
            return True
    except (OSError, ValueError):
        return True
    built = MANIFEST.stat().st_mtime
    sources = [PROJECT_FILE, *SQL_DIR.glob("models/**/*"), *SQL_DIR.glob("macros/**/*"), *SQL_DIR.glob("tests/**/*")]
    return any(path.is_file() and path.stat().st_mtime > built for path in sources)


def ensure_manifest(environment: Mapping[str, str] | None = None) -> Path:
    """The manifest, parsed again when it is missing (a fresh checkout), older than the SQL, or
    parsed for another lake.

    `environment` holds the variables the dbt runs will see (the lake and warehouse paths,
    `run_environment`): parsing with exactly those leaves a `partial_parse.msgpack` that each run
    reuses (dagster-dbt copies it), where a mismatch makes dbt parse the whole project again
    ("profile has changed") before every build. Parsed into a private target folder and renamed
    into place, so processes loading the code location at the same time never read a half-written
    manifest.
    """
    environment = dict(environment or {})
    if _manifest_is_stale(environment):
        MANIFEST.parent.mkdir(parents=True, exist_ok=True)
        private = MANIFEST.parent / f".parse-{os.getpid()}"
        try:
            manifest = parse_project(private, environment)
            if (private / PARTIAL_PARSE.name).exists():
                os.replace(private / PARTIAL_PARSE.name, PARTIAL_PARSE)
            os.replace(manifest, MANIFEST)
            PARSED_WITH.write_text(json.dumps(environment, sort_keys=True))
        finally:
            shutil.rmtree(private, ignore_errors=True)
    return MANIFEST


def run_environment(lake_root: Path | str, warehouse: Path | str) -> dict[str, str]:
    """The variables a dbt run sees: the same ones the Dagster resources point at."""
    return {ENV_LAKE_ROOT: str(lake_root), ENV_WAREHOUSE: str(warehouse)}


@functools.cache
def project_vars() -> dict:
    return yaml.safe_load(PROJECT_FILE.read_text())["vars"]


def canonical_ranges() -> dict[str, tuple[float, float]]:
    """Physical range of every canonical variable: the one definition the dbt tests and the
    expectation suites share (`vars.canonical_ranges` in sql/dbt_project.yml)."""
    return {name: (float(low), float(high)) for name, (low, high) in project_vars()["canonical_ranges"].items()}


@functools.cache
def dbt_project():
    """The `DbtProject` both the dbt assets and the dbt resource use, manifest prepared for the
    lake the environment names."""
    from dagster_dbt import DbtProject

    config = settings.from_environment()
    ensure_manifest(run_environment(config.lake_root, config.warehouse_path))
    return DbtProject(project_dir=SQL_DIR, profiles_dir=SQL_DIR)
