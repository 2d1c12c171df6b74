"""The dependency rule of the README, held for every import in the tree (lazy ones included).

sources/                 -> sources                              (plain Python, no Dagster)
ml/                      -> ml, sources.catalog, sources.units   (plain Python + Keras, no Dagster)
data_quality.suites      -> data_quality.suites, sources         (plain Python, no Dagster)
infrastructure           -> infrastructure, sources, data_quality.suites, the Keras-free ml modules
   (dagster_project.* outside assembly/, launcher/ and definitions)
data_quality.checks      -> infrastructure, data_quality, sources
assets/                  -> infrastructure, ml, sources          (never another asset module)
assembly                 -> everything but the launcher
   (dagster_project.definitions, dagster_project.assembly.*)
launcher                 -> everything                           (dagster_project.launcher.*)

No module of the project, tests and benchmarks included, imports a private Dagster module
(`dagster._...`) or ctypes.
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
# What each layer may import of the project (the module docstring).
LAYERS = ("sources", "ml", "suites", "infrastructure", "checks", "assets", "assembly", "launcher")
MAY_IMPORT = {
    "sources": {"sources"},
    "ml": {"ml", "sources"},  # of sources, the contracts only (`allowed`)
    "suites": {"suites", "sources"},
    "infrastructure": {"infrastructure", "suites", "sources", "ml"},  # of ml, the Keras-free list only
    "checks": {"checks", "suites", "infrastructure", "sources"},
    "assets": {"assets", "infrastructure", "ml", "sources"},  # of assets, the package only (`allowed`)
    "assembly": set(LAYERS) - {"launcher"},
    "launcher": set(LAYERS),
}
# The ml modules that load without Keras, which the infrastructure may read (the one list of
# architectures for the partitions, the training configuration for the run config).
KERAS_FREE_ML = ("ml.architecture_catalog", "ml.training_config")
# What ml may read of sources: the contracts of variables and of spatial units, never a reader.
SOURCE_CONTRACTS = ("sources.catalog", "sources.units")


def _modules(packages=PACKAGES) -> dict[str, Path]:
    found = {}
    for package in packages:
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


def layer(name: str) -> str:
    """The layer of a project module, or of a name imported from one."""
    parts = name.split(".")
    if parts[0] == "dagster_project":
        if parts[1:2] == ["definitions"] or parts[1:2] == ["assembly"]:
            return "assembly"
        return "launcher" if parts[1:2] == ["launcher"] else "infrastructure"
    if parts[0] == "data_quality":
        # the package itself is a bare docstring: it counts with the plain suites
        return "checks" if parts[1:2] == ["checks"] else "suites"
    return parts[0]


def allowed(module: str, imported: str) -> bool:
    """Whether `module` of the project may import `imported` (a project module or a library)."""
    importer = layer(module)
    if _top(imported) not in PACKAGES:
        return importer not in ("sources", "ml", "suites") or _top(imported) not in DAGSTER
    target = layer(imported)
    if target not in MAY_IMPORT[importer]:
        return False
    if importer == "infrastructure" and target == "ml":
        # `from ml import architecture_catalog` names the package too: its __init__ is a docstring
        return imported == "ml" or any(imported == name or imported.startswith(name + ".") for name in KERAS_FREE_ML)
    if importer == "ml" and target == "sources":
        return imported == "sources" or any(
            imported == name or imported.startswith(name + ".") for name in SOURCE_CONTRACTS
        )
    if importer == "assets" and target == "assets":
        return imported == "assets"
    return True


def is_private_dagster_or_ctypes(imported: str) -> bool:
    """A private module or name of a Dagster library (`dagster._core...`), or ctypes."""
    parts = imported.split(".")
    if parts[0] in ("ctypes", "_ctypes"):
        return True
    private = [part for part in parts[1:] if part.startswith("_") and not part.endswith("__")]
    return parts[0].startswith("dagster") and bool(private)


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
    assert not allowed("data_quality.suites", "dagster")
    assert not allowed("data_quality.suites", "dagster_project.lake")
    assert allowed("ml.windows", "sources.catalog") and allowed("ml.unit_arrays", "sources.units.UnitFrame")
    assert not allowed("ml.windows", "sources.basin_table") and not allowed("ml.windows", "sources.unitsx")
    # infrastructure: never the assembly, the launcher, the assets, the checks or ml
    assert not allowed("dagster_project.resources", "dagster_project.assembly.jobs")
    assert not allowed("dagster_project.partitions", "dagster_project.definitions")
    assert not allowed("dagster_project.lake", "dagster_project.launcher.recovery")
    assert not allowed("dagster_project.dbt", "assets.staging")
    assert not allowed("dagster_project.resources", "data_quality.checks")
    assert not allowed("dagster_project.metadata", "ml.figures")
    assert allowed("dagster_project.partitions", "ml.architecture_catalog")
    assert allowed("dagster_project.resources", "data_quality.suites")
    assert allowed("dagster_project.settings", "dagster_project.lake")
    # the checks: infrastructure, never the assembly or the assets
    assert not allowed("data_quality.checks", "dagster_project.definitions")
    assert not allowed("data_quality.checks", "assets.raw")
    assert allowed("data_quality.checks", "dagster_project.resources")
    # assets: never another asset module, the assembly, the launcher or the checks
    assert not allowed("assets.models", "assets.features")
    assert not allowed("assets.raw", "dagster_project.assembly.automation")
    assert not allowed("assets.raw", "dagster_project.definitions")
    assert not allowed("assets.raw", "dagster_project.launcher.demo")
    assert not allowed("assets.staging", "data_quality.checks")
    assert allowed("assets.models", "ml.training")
    # the assembly: everything but the launcher
    assert not allowed("dagster_project.definitions", "dagster_project.launcher.demo")
    assert not allowed("dagster_project.assembly.sensors", "dagster_project.launcher.recovery")
    assert allowed("dagster_project.definitions", "assets.raw")
    assert allowed("dagster_project.definitions", "data_quality.checks")
    # the launcher: everything
    assert allowed("dagster_project.launcher.demo", "dagster_project.definitions")
    assert allowed("dagster_project.launcher.demo", "assets.raw")


def test_no_module_imports_a_private_dagster_module_or_ctypes():
    everywhere = {**_modules(), **_modules(("tests", "benchmarks"))}
    found = []
    for module, path in everywhere.items():
        for imported in sorted(_imports(path)):
            if is_private_dagster_or_ctypes(imported):
                found.append(f"{module} imports {imported}")
    assert found == []


def test_the_private_import_rule_can_fail():
    assert is_private_dagster_or_ctypes("dagster._core.errors.DagsterExecutionInterruptedError")
    assert is_private_dagster_or_ctypes("dagster._daemon.monitoring")
    assert is_private_dagster_or_ctypes("dagster_dbt.core._private")
    assert is_private_dagster_or_ctypes("ctypes")
    assert not is_private_dagster_or_ctypes("dagster.RunsFilter")
    assert not is_private_dagster_or_ctypes("dagster.__version__")
    assert not is_private_dagster_or_ctypes("dagster_dbt.DbtCliResource")
    assert not is_private_dagster_or_ctypes("polars._typing")


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
