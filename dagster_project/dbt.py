"""The dbt project in sql/: where it is, which dbt runs it, its manifest and its shared vars.

The one place that knows these facts: the dbt assets, the dbt resource, the expectation
suites (canonical ranges) and the tests all ask here. dagster-dbt is imported only by
`dbt_project()`, so the plain helpers stay cheap to import.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

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


def parse_project(target_path: Path | None = None) -> Path:
    """Run `dbt parse` (writes the manifest the Dagster dbt assets are built from)."""
    env = dict(os.environ)
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


def _manifest_is_stale() -> bool:
    if not MANIFEST.exists():
        return True
    built = MANIFEST.stat().st_mtime
    sources = [PROJECT_FILE, *SQL_DIR.glob("models/**/*"), *SQL_DIR.glob("macros/**/*"), *SQL_DIR.glob("tests/**/*")]
    return any(path.is_file() and path.stat().st_mtime > built for path in sources)


def ensure_manifest() -> Path:
    """The manifest, parsed again when it is missing (a fresh checkout) or older than the SQL.

    Parsed into a private target folder and renamed into place, so processes loading the
    code location at the same time never read a half-written manifest.
    """
    if _manifest_is_stale():
        MANIFEST.parent.mkdir(parents=True, exist_ok=True)
        private = MANIFEST.parent / f".parse-{os.getpid()}"
        try:
            os.replace(parse_project(private), MANIFEST)
        finally:
            shutil.rmtree(private, ignore_errors=True)
    return MANIFEST


@functools.cache
def project_vars() -> dict:
    return yaml.safe_load(PROJECT_FILE.read_text())["vars"]


def canonical_ranges() -> dict[str, tuple[float, float]]:
    """Physical range of every canonical variable: the one definition the dbt tests and the
    expectation suites share (`vars.canonical_ranges` in sql/dbt_project.yml)."""
    return {name: (float(low), float(high)) for name, (low, high) in project_vars()["canonical_ranges"].items()}


@functools.cache
def dbt_project():
    """The `DbtProject` both the dbt assets and the dbt resource use, manifest prepared."""
    from dagster_dbt import DbtProject

    ensure_manifest()
    return DbtProject(project_dir=SQL_DIR, profiles_dir=SQL_DIR)
