"""The lake: where everything lands (`LakeLayout`), all-or-nothing writes, DuckDB views and readers.

Plain functions and classes (no Dagster), so sources, assets and tests share one code path.
Every path of the lake is built by `LakeLayout`; nothing else joins lake paths.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import duckdb
import polars as pl

from dagster_project import processes

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- where things land --------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A table or view in the DuckDB warehouse."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


# Warehouse tables the Python assets read or create (dbt owns the rest of the marts' schema).
HISTORY_MART = Table("marts", "fct_band_month_features")
SCENARIO_MART = Table("marts", "fct_scenario_band_month_features")
SOIL_WATER_SHARES = Table("intermediate", "int_era5_land_soil_water_shares")


# Views over the lake's outputs, for users (README "Querying the outputs"): the view, the assets
# whose files it reads (space-separated), what it holds, and which files (`LakeLayout.view_source`).
# A view reads its files when queried, so it is defined once and stays valid when the files are
# replaced; the asset (re)defines it after its files landed.
class OutputView(NamedTuple):
    owners: str
    description: str
    files: Callable[[LakeLayout], Path | str]


OUTPUT_VIEWS: dict[Table, OutputView] = {
    Table("features", "windows"): OutputView(
        "training_windows scenario_windows",
        "one row per set of windows (training, test, each RCP): size, months, channels, inputs outside "
        "the training range",
        lambda layout: layout.windows_summary("*"),
    ),
    Table("evaluation", "model_evaluation"): OutputView(
        "model_evaluation", "test-year scores of every model and baseline", lambda layout: layout.model_evaluation()
    ),
    Table("evaluation", "feature_importance"): OutputView(
        "feature_importance", "SHAP importance per model and input", lambda layout: layout.feature_importance()
    ),
    Table("projections", "soil_temperature_projections"): OutputView(
        "soil_temperature_projections",
        "monthly soil temperature per scenario, band, layer: members, ensemble mean, 5-95% range",
        lambda layout: layout.projections("parquet"),
    ),
    Table("projections", "active_layer_thickness"): OutputView(
        "active_layer_thickness",
        "active-layer thickness per scenario, model, member, band and year, with its flag",
        lambda layout: layout.active_layer(),
    ),
    Table("validation", "perfect_model_validation"): OutputView(
        "perfect_model_validation",
        "perfect-model scores per model, member and the ensemble (demo only)",
        lambda layout: layout.validation().scores,
    ),
    Table("validation", "perfect_model_cells"): OutputView(
        "perfect_model_validation",
        "truth and ensemble per scenario, band and layer (demo only)",
        lambda layout: layout.validation().cells,
    ),
}

# Raw assets whose Parquet files the warehouse exposes as views `raw.<asset>`.
RAW_SCHEMA = "raw"
ERA5_LAND = "era5_land_monthly"
CMIP5 = "cmip5_monthly"
LITHOLOGY = "band_lithology"
SOIL_PROPERTIES = "band_soil_properties"
SPATIAL_UNITS = "spatial_units"


@dataclass(frozen=True)
class TrainingWindowFiles:
    """The paper's windows (train, test, stats) and the residual design's (ml.residual)."""

    folder: Path
    train: Path
    test: Path
    stats: Path
    residual_train: Path
    residual_test: Path
    residual_scaler: Path

    @property
    def files(self) -> list[Path]:
        return [self.train, self.test, self.stats, self.residual_train, self.residual_test, self.residual_scaler]


@dataclass(frozen=True)
class ThermalCoreFiles:
    folder: Path
    parameters: Path
    history: Path


@dataclass(frozen=True)
class ValidationFiles:
    scores: Path
    cells: Path


@dataclass(frozen=True)
class LakeLayout:
    """Every path of the lake below `root`, one method per thing that lands.

    `outputs(asset, partition)` says what each asset writes, so a test can check that no two
    assets write the same path (and the README's tables can be checked against it).
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    # raw: each product as its source delivers it
    def raw_folder(self, asset: str) -> Path:
        return self.root / RAW_SCHEMA / asset

    def era5_land_month(self, month: dt.date) -> Path:
        return self.raw_folder(ERA5_LAND) / f"{month:%Y-%m}.parquet"

    def cmip5_experiment(self, experiment: str) -> Path:
        return self.raw_folder(CMIP5) / f"{experiment}.parquet"

    def raw_table(self, asset: str) -> Path:
        """One-file raw extracts (lithology, soil properties, the reanalysis' spatial units)."""
        return self.root / RAW_SCHEMA / f"{asset}.parquet"

    def raw_glob(self, asset: str) -> str:
        """What the raw view `raw.<asset>` (and the dbt source) reads."""
        if asset in (ERA5_LAND, CMIP5):
            return str(self.raw_folder(asset) / "*.parquet")
        return str(self.raw_table(asset))

    # features
    def bias_corrected(self, scenario: str) -> Path:
        return self.root / "features" / "cmip5_bias_corrected" / f"{scenario}.parquet"

    def training_windows(self) -> TrainingWindowFiles:
        folder = self.root / "features" / "training_windows"
        return TrainingWindowFiles(
            folder,
            folder / "train.npz",
            folder / "test.npz",
            folder / "normalization.json",
            folder / "residual_train.npz",
            folder / "residual_test.npz",
            folder / "residual_scaler.json",
        )

    def scenario_windows(self, scenario: str) -> Path:
        return self.root / "features" / "scenario_windows" / f"{scenario}.npz"

    def windows_summary(self, name: str) -> Path:
        """What one set of windows holds (`training` for the training and test windows, or an RCP),
        one Parquet each: the view `features.windows` reads them all."""
        return self.root / "features" / "windows_summary" / f"{name}.parquet"

    def scenario_members(self, scenario: str) -> Path:
        """Per ensemble member: the scenario's drivers under its bias-correction draw and the core's run."""
        return self.root / "features" / "scenario_windows" / f"{scenario}_members.npz"

    # models, evaluation, projections, validation
    def thermal_core(self) -> ThermalCoreFiles:
        folder = self.root / "models" / "thermal_core"
        return ThermalCoreFiles(folder, folder / "core.json", folder / "history.parquet")

    def model_folder(self, architecture: str) -> Path:
        return self.root / "models" / architecture

    def model_evaluation(self) -> Path:
        return self.root / "evaluation" / "model_evaluation.parquet"

    def feature_importance(self) -> Path:
        return self.root / "evaluation" / "feature_importance.parquet"

    def projections(self, suffix: str = "parquet") -> Path:
        return self.root / "projections" / f"soil_temperature_projections.{suffix}"

    def active_layer(self) -> Path:
        return self.root / "projections" / "active_layer_thickness.parquet"

    def validation(self) -> ValidationFiles:
        folder = self.root / "validation"
        return ValidationFiles(folder / "perfect_model_validation.parquet", folder / "perfect_model_cells.parquet")

    def figure(self, name: str) -> Path:
        return self.root / "figures" / f"{name}.png"

    def view_source(self, view: Table) -> str:
        """What the output view `view` reads (a file, or a glob over a folder)."""
        if view not in OUTPUT_VIEWS:
            raise KeyError(f"{view} is not an output view of the lake")
        return str(OUTPUT_VIEWS[view].files(self))

    def default_warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    def outputs(self, asset: str, partition: str | None = None, names: tuple[str, ...] = ()) -> list[Path]:
        """The files (or folders) `asset` writes for `partition`.

        `names` lists per-run names where the asset writes one file per item of a set that
        is not its partition (the models evaluated, the scenarios projected).
        """
        windows = self.training_windows()
        by_asset: dict[str, Callable[[], list[Path]]] = {
            ERA5_LAND: lambda: [self.era5_land_month(dt.date.fromisoformat(partition))],
            CMIP5: lambda: [self.cmip5_experiment(partition)],
            LITHOLOGY: lambda: [self.raw_table(LITHOLOGY)],
            SOIL_PROPERTIES: lambda: [self.raw_table(SOIL_PROPERTIES)],
            SPATIAL_UNITS: lambda: [self.raw_table(SPATIAL_UNITS)],
            "cmip5_bias_corrected": lambda: [
                self.bias_corrected(partition),
                self.figure(f"bias_correction_{partition}"),
            ],
            "training_windows": lambda: [*windows.files, self.windows_summary("training")],
            "scenario_windows": lambda: [
                self.scenario_windows(partition),
                self.scenario_members(partition),
                self.windows_summary(partition),
            ],
            "thermal_core": lambda: [self.thermal_core().parameters, self.thermal_core().history],
            "trained_models": lambda: [self.model_folder(partition)],
            "model_evaluation": lambda: [self.model_evaluation(), self.figure("observed_vs_predicted")],
            "soil_temperature_projections": lambda: [
                self.projections("parquet"),
                self.projections("nc"),
                *(self.figure(f"projections_{name}") for name in names),
            ],
            "active_layer_thickness": lambda: [self.active_layer(), self.figure("active_layer_thickness")],
            "feature_importance": lambda: [
                self.feature_importance(),
                *(self.figure(f"feature_importance_{name}") for name in names),
            ],
            "perfect_model_validation": lambda: [
                self.validation().scores,
                self.validation().cells,
                self.figure("perfect_model_validation"),
            ],
        }
        if asset not in by_asset:
            raise KeyError(f"the lake layout does not know asset {asset!r}")
        return by_asset[asset]()

    @classmethod
    def assets(cls) -> tuple[str, ...]:
        """Assets that write into the lake (the dbt assets write only to the warehouse)."""
        return (
            ERA5_LAND,
            CMIP5,
            LITHOLOGY,
            SOIL_PROPERTIES,
            SPATIAL_UNITS,
            "cmip5_bias_corrected",
            "training_windows",
            "scenario_windows",
            "thermal_core",
            "trained_models",
            "model_evaluation",
            "soil_temperature_projections",
            "active_layer_thickness",
            "feature_importance",
            "perfect_model_validation",
        )


# --- all-or-nothing writes ----------------------------------------------------------------

# A temporary is `.<target name>.<host>-<pid>.<uuid>.tmp`: hidden, ending in `.tmp` so no
# reader's `*.parquet` glob (DuckDB's globs match hidden files) nor any other suffix pattern
# sees it, and naming the process that writes it so the next run can tell a crashed writer's
# leftover from a live writer's work in progress.
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.[0-9a-f]{32}\.tmp$")
# Leftovers of earlier versions, which named no owner: `.<name>.<uuid>.tmp`, and
# `.<stem>.<uuid>.tmp.parquet`, which every `*.parquet` glob reads as data (no version writes
# it any more, so it is always stale).
_OWNERLESS_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")
_READ_AS_DATA_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp\.parquet$")
# A temporary whose owner cannot be checked (no owner in its name, or written from another
# host sharing the lake) is stale only when it is older than this: no write takes that long.
STALE_TEMPORARY_AGE_SECONDS = 6 * 3600

log = logging.getLogger(__name__)


def temporary_sibling(path: Path) -> Path:
    """A hidden temporary name beside `path`, ending in `.tmp` and naming this process."""
    return path.with_name(f".{path.name}.{processes.host_tag()}-{os.getpid()}.{uuid.uuid4().hex}.tmp")


def is_temporary(path: Path) -> bool:
    return any(pattern.match(path.name) for pattern in (_TEMPORARY, _OWNERLESS_TEMPORARY, _READ_AS_DATA_TEMPORARY))


def is_stale_temporary(path: Path, now: float | None = None) -> bool:
    """A temporary left by a writer that is gone: its process died (or its pid now names a
    process started after the temporary), or, when the owner cannot be checked, it is older
    than `STALE_TEMPORARY_AGE_SECONDS`. A live writer's temporaries are never stale (so two
    runs writing into one folder leave each other alone); a `.tmp.parquet` leftover of an
    earlier version always is."""
    try:
        modified = path.lstat().st_mtime
    except FileNotFoundError:
        return False
    now = time.time() if now is None else now
    if _READ_AS_DATA_TEMPORARY.match(path.name):
        return True
    owned = _TEMPORARY.match(path.name)
    if owned and owned["host"] == processes.host_tag():
        return not processes.is_alive(int(owned["pid"]), since=modified)
    if owned or _OWNERLESS_TEMPORARY.match(path.name):
        return now - modified > STALE_TEMPORARY_AGE_SECONDS
    return False


def clean_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the stale temporaries (files or folders) directly inside `folder`; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if not is_temporary(path) or not is_stale_temporary(path):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue  # another run cleaned it first
        log.warning("removed %s, a temporary left by a writer that no longer runs", path)
        removed.append(path)
    return removed


class AtomicBatch:
    """Files and folders written to temporaries, renamed into place together on `commit`.

    Each writer gets a temporary sibling of its target (a rename within one folder is atomic).
    Nothing is renamed until every writer has succeeded, so a failure in any of them leaves
    every target as it was; `discard` removes whatever was staged.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path, bool]] = []  # (temporary, target, is_folder)
        self._targets: set[Path] = set()
        self._cleaned_folders: set[Path] = set()
        self.cleaned: list[Path] = []  # stale temporaries of crashed runs removed by this batch

    def _stage(self, target: Path, is_folder: bool) -> Path:
        target = Path(target)
        if target in self._targets:
            raise ValueError(f"{target} is written twice in one batch")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.parent not in self._cleaned_folders:
            # the leftovers of a killed run go with the next run that writes beside them
            self.cleaned += clean_stale_temporaries(target.parent)
            self._cleaned_folders.add(target.parent)
        tmp = temporary_sibling(target)
        self._staged.append((tmp, target, is_folder))
        self._targets.add(target)
        return tmp

    def file(self, target: Path, write: Callable[[Path], object]) -> Path:
        """`write(tmp)` writes the whole file at the temporary path it is given."""
        write(self._stage(target, is_folder=False))
        return Path(target)

    def parquet(self, target: Path, frame: pl.DataFrame) -> Path:
        return self.file(target, lambda tmp: frame.write_parquet(tmp, compression="zstd", statistics=True))

    def folder(self, target: Path, write: Callable[[Path], object]) -> Path:
        """`write(tmp)` fills an empty temporary folder that replaces `target` as a whole."""
        tmp = self._stage(target, is_folder=True)
        tmp.mkdir()
        write(tmp)
        return Path(target)

    @property
    def targets(self) -> list[Path]:
        return [target for _, target, _ in self._staged]

    def commit(self) -> list[Path]:
        """Rename every staged temporary onto its target.

        A folder cannot be replaced in one step: the old one is renamed aside first and
        removed only after the new one is in place.
        """
        retired: list[Path] = []
        try:
            for tmp, target, is_folder in self._staged:
                if is_folder and target.exists():
                    aside = temporary_sibling(target)
                    os.replace(target, aside)
                    retired.append(aside)
                os.replace(tmp, target)
        finally:
            for folder in retired:
                shutil.rmtree(folder, ignore_errors=True)
        return self.targets

    def discard(self) -> None:
        for tmp, _, _ in self._staged:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            elif tmp.exists():
                tmp.unlink()


@contextmanager
def atomic_batch() -> Iterator[AtomicBatch]:
    """Stage writes in the block; commit them together when it ends, discard them if it raises."""
    batch = AtomicBatch()
    try:
        yield batch
        batch.commit()
    finally:
        batch.discard()


def write_partitions_atomic(frames: dict[Path, pl.DataFrame]) -> list[Path]:
    """Write partition files so that a failed write changes none of them.

    Writing a partition again replaces its file: idempotent, never appends.
    """
    with atomic_batch() as batch:
        for path, frame in frames.items():
            batch.parquet(path, frame)
    return batch.targets


def write_file_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` for a temporary sibling of `path`, then rename it into place."""
    with atomic_batch() as batch:
        batch.file(path, write)
    return Path(path)


# --- the DuckDB warehouse -----------------------------------------------------------------


def _quote_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# How long a connection waits for another process's lock on the warehouse file by default
# (settings: PERMAFROST_WAREHOUSE_LOCK_WAIT_SECONDS).
DEFAULT_LOCK_WAIT_SECONDS = 60.0
_PID = re.compile(r"\(PID (\d+)\)")


class WarehouseLockedError(RuntimeError):
    """Another process held the warehouse file for longer than this process would wait."""


def lock_holder(error_text: str) -> str | None:
    """'PID n (command line)' of the process DuckDB names in a lock error, when it names one."""
    found = _PID.search(error_text)
    if not found:
        return None
    pid = int(found.group(1))
    command = processes.command_line(pid)
    if pid == os.getpid():
        return f"PID {pid} (this process)"
    return f"PID {pid} ({command})" if command else f"PID {pid} (no longer running, or not visible from here)"


def is_lock_error(error: BaseException) -> bool:
    return isinstance(error, duckdb.IOException) and "Could not set lock on file" in str(error)


def lock_error_message(warehouse_path: Path, error_text: str, waited_seconds: float) -> str:
    holder = lock_holder(error_text) or "another process"
    return (
        f"warehouse {warehouse_path} is locked by {holder}; waited {waited_seconds:.0f} s "
        f"(PERMAFROST_WAREHOUSE_LOCK_WAIT_SECONDS). Close that connection (a notebook or a shell "
        f"holding the warehouse open), or query the lake's Parquet files instead (README, Fault guide). "
        f"DuckDB said: {error_text}"
    )


@contextmanager
def connect(
    warehouse_path: Path, read_only: bool = False, wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection to the warehouse, waiting up to `wait_seconds` for another process's
    lock (DuckDB allows one writer, or any number of readers, per file), then failing with
    `WarehouseLockedError` naming the process that holds it."""
    warehouse_path = Path(warehouse_path)
    if not read_only:
        warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    pause = 0.05
    while True:
        try:
            con = duckdb.connect(str(warehouse_path), read_only=read_only)
            break
        except duckdb.IOException as error:
            if not is_lock_error(error):
                raise
            waited = time.monotonic() - started
            if waited >= wait_seconds:
                raise WarehouseLockedError(lock_error_message(warehouse_path, str(error), waited)) from error
            time.sleep(min(pause, wait_seconds - waited))
            pause = min(pause * 2, 1.0)
    try:
        yield con
    finally:
        con.close()


def wait_until_writable(warehouse_path: Path, wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS) -> None:
    """Return once no other process holds the warehouse (a write connection opens and closes),
    or raise `WarehouseLockedError` after `wait_seconds`. For writers that open the file
    themselves (dbt): narrows, not closes, the window in which a reader can take it first."""
    with connect(warehouse_path, read_only=False, wait_seconds=wait_seconds):
        pass


def refresh_parquet_views(
    warehouse_path: Path, views: Mapping[Table, str], wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
) -> None:
    """(Re)create each view over the Parquet files its glob (absolute) matches, in one connection."""
    with connect(warehouse_path, read_only=False, wait_seconds=wait_seconds) as con:
        for table, parquet_glob in views.items():
            con.execute(f"create schema if not exists {_quote_identifier(table.schema)}")
            con.execute(
                f"create or replace view {_quote_identifier(table.schema)}.{_quote_identifier(table.name)} as "
                f"select * from read_parquet({_quote_literal(parquet_glob)}, union_by_name = true)"
            )


@contextmanager
def read_only(
    warehouse_path: Path, wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only DuckDB connection; fails clearly if the warehouse was never built."""
    warehouse_path = Path(warehouse_path)
    if not warehouse_path.exists():
        raise FileNotFoundError(
            f"warehouse {warehouse_path} does not exist yet: materialize the dbt models (or run `make demo`) first"
        )
    with connect(warehouse_path, read_only=True, wait_seconds=wait_seconds) as con:
        yield con
