"""The dependency rule of the README, held for every import in the tree (lazy ones included).

sources/          -> sources                              (plain Python, no Dagster)
ml/               -> ml, sources.catalog                  (plain Python + Keras, no Dagster)
data_quality/     -> data_quality, dagster_project, sources (suites.py: plain, sources only)
dagster_project/  -> dagster_project, data_quality, sources; assets only from definitions.py
assets/           -> dagster_project, ml, sources         (never another asset module)
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("sources", "ml", "data_quality", "dagster_project", "assets")
DAGSTER = ("dagster", "dagster_dbt", "dagster_webserver")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _top(name: str) -> str:
    return name.split(".")[0]


def allowed(module: str, imported: str) -> bool:
    """Whether `module` of the project may import `imported` (a project module or a library)."""
    package, target = _top(module), _top(imported)
    if target not in PACKAGES:
        return not (package in ("sources", "ml") or module == "data_quality.suites") or target not in DAGSTER
    if package == "sources":
        return target == "sources"
    if package == "ml":
        return target == "ml" or imported in ("sources", "sources.catalog") or imported.startswith("sources.catalog.")
    if module == "data_quality.suites":
        return target in ("sources", "data_quality")
    if package == "data_quality":
        return target in ("data_quality", "dagster_project", "sources")
    if package == "dagster_project":
        return target != "assets" or module == "dagster_project.definitions"
    if package == "assets":
        return target != "assets" or imported == "assets"
    raise AssertionError(module)


def test_every_import_follows_the_rule():
    broken = []
    for module, path in _modules().items():
        for imported in sorted(_imports(path)):
            if not allowed(module, imported):
                broken.append(f"{module} imports {imported}")
    assert broken == []


def test_the_rule_can_fail():
    assert not allowed("ml.windows", "dagster")
    assert not allowed("ml.figures", "dagster_project.lake")
    assert not allowed("sources.demo", "ml.windows")
    assert not allowed("assets.models", "assets.features")
    assert not allowed("dagster_project.launcher.demo", "assets.raw")
    assert allowed("dagster_project.definitions", "assets.raw")
    assert allowed("ml.windows", "sources.catalog")


@pytest.mark.parametrize("package", ["sources", "ml"])
def test_plain_packages_load_without_dagster(package):
    modules = [m for m in _modules() if _top(m) == package]
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(json.dumps([m for m in {DAGSTER!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
