"""Where everything lands in the lake: `LakeLayout` builds every path; nothing else joins lake paths."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeAlias
from urllib.parse import urlsplit
from urllib.request import url2pathname

if TYPE_CHECKING:
    from upath import UPath

# A local lake's paths are `pathlib.Path`s; a lake on an object store (`s3://bucket/prefix`) has
# `UPath`s (universal_pathlib, over fsspec), which join, name and parent the same way.
LakePath: TypeAlias = "Path | UPath"


def lake_root(root: str | os.PathLike | UPath) -> LakePath:
    """The lake root `root` names: a local folder (a path, or a `file://` URL) as an absolute
    `Path`; any other URL (`s3://bucket/prefix`) as a `UPath` (a `UPath` given keeps its
    storage options, e.g. an endpoint). s3fs is imported only when such a root is used."""
    if isinstance(root, Path):
        return root.expanduser().resolve()
    text = str(root)
    if "://" not in text:
        return Path(text).expanduser().resolve()
    url = urlsplit(text)
    if url.scheme == "file":
        return Path(url2pathname(url.path)).resolve()
    from upath import UPath

    return root if isinstance(root, UPath) else UPath(text)


def is_object_root(root: LakePath) -> bool:
    """Whether a lake root (as `lake_root` returns it) is on an object store."""
    return not isinstance(root, Path)


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
UNITS_DIMENSION = Table("marts", "dim_spatial_units")


# Views over the lake's outputs, for users (README "Querying the outputs"): the view, the assets
# whose files it reads (space-separated), what it holds, and which files (`LakeLayout.view_source`).
# A view reads its files when queried, so it is defined once and stays valid when the files are
# replaced; the asset (re)defines it after its files landed.
class OutputView(NamedTuple):
    owners: str
    description: str
    files: Callable[[LakeLayout], LakePath | str]


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
    Table("evaluation", "spatial_holdout_evaluation"): OutputView(
        "spatial_holdout_evaluation",
        "scores on held-out whole units (basins) of models trained on the others",
        lambda layout: layout.spatial_holdout().scores,
    ),
    Table("evaluation", "hyperparameter_search"): OutputView(
        # the search holds no warehouse slot for its (long) run: the evaluation, which follows it, (re)defines the view
        "hyperparameter_search model_evaluation",
        "hyperparameter search per architecture: every trial, the default and the best",
        lambda layout: layout.search_trials("*"),
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

# Grid mode's views (schema `maps`), defined only where its assets exist (the band demo has none of
# them): one row per cell, as OUTPUT_VIEWS; the maps asset (re)defines them all.
GRID_OUTPUT_VIEWS: dict[Table, OutputView] = {
    Table("maps", "cell_maps"): OutputView(
        "grid_maps",
        "per scenario and grid cell: tile, latitude, longitude, soil temperature 2024-2043 and 2081-2100 and "
        "their difference per layer, active-layer thickness per period, talik shares, becomes_talik",
        lambda layout: layout.grid_maps().cells,
    ),
    Table("maps", "cell_active_layer"): OutputView(
        "tile_projections grid_maps",
        "active-layer thickness per scenario, grid cell and year, with its flag and whether the deepest layer "
        "refroze (talik)",
        lambda layout: layout.tile_projections("*").active_layer,
    ),
    Table("maps", "cell_soil_temperature"): OutputView(
        "tile_projections grid_maps",
        "monthly soil temperature 2024-2100 per scenario, grid cell and layer (the conduction core)",
        lambda layout: layout.tile_projections("*").soil_temperature,
    ),
}

# Grid mode's network views (schema `maps`), defined by the network's inference per tile.
GRID_NETWORK_VIEWS: dict[Table, OutputView] = {
    Table("maps", "cell_network_history"): OutputView(
        "tile_network_history",
        "the shared cell network's soil temperature per grid cell and month of the history (every window), "
        "with the split (train, test) and the observed values",
        lambda layout: layout.tile_network_history("*"),
    ),
    Table("maps", "cell_network_projections"): OutputView(
        "tile_network_projections",
        "per scenario and grid cell: the shared cell network's soil temperature 2024-2043 and 2081-2100 and their "
        "difference per layer, active-layer thickness, talik shares, and how often its 2081-2100 inputs left the "
        "cell's training range",
        lambda layout: layout.tile_network_projections("*").summary,
    ),
    Table("maps", "cell_network_soil_temperature"): OutputView(
        "tile_network_projections",
        "monthly soil temperature 2024-2100 per scenario, grid cell and layer (the shared cell network)",
        lambda layout: layout.tile_network_projections("*").soil_temperature,
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

    folder: LakePath
    train: LakePath
    test: LakePath
    stats: LakePath
    residual_train: LakePath
    residual_test: LakePath
    residual_scaler: LakePath

    @property
    def files(self) -> list[LakePath]:
        return [self.train, self.test, self.stats, self.residual_train, self.residual_test, self.residual_scaler]


@dataclass(frozen=True)
class ThermalCoreFiles:
    folder: LakePath
    parameters: LakePath
    history: LakePath


@dataclass(frozen=True)
class SpatialHoldoutFiles:
    scores: LakePath
    split: LakePath


@dataclass(frozen=True)
class ValidationFiles:
    scores: LakePath
    cells: LakePath


@dataclass(frozen=True)
class TileCoreFiles:
    """One tile's core fit (`ml.tiles`): parameters per cell, history run per cell and month."""

    parameters: LakePath
    history: LakePath


@dataclass(frozen=True)
class TileScenarioFiles:
    """One tile's scenarios (`ml.tile_scenarios`): every RCP's drivers regridded onto its cells and
    bias-corrected per cell, and the correction's diagnostics."""

    drivers: LakePath
    diagnostics: LakePath

    def targets(self) -> dict[str, LakePath]:
        """The kernel's output name -> where it lands (`tile_engine.map_tiles`'s targets)."""
        return {"drivers": self.drivers, "diagnostics": self.diagnostics}


@dataclass(frozen=True)
class TileProjectionFiles:
    """One tile's projections (`ml.tile_projection`): soil temperature, active layer, map summary."""

    soil_temperature: LakePath
    active_layer: LakePath
    summary: LakePath

    def targets(self) -> dict[str, LakePath]:
        """The kernel's output name -> where it lands (`tile_engine.map_tiles`'s targets)."""
        return {"soil_temperature": self.soil_temperature, "active_layer": self.active_layer, "summary": self.summary}


@dataclass(frozen=True)
class TileShardFiles:
    """One tile's training shard (`ml.cell_training`): rows per cell and month, training moments."""

    rows: LakePath
    moments: LakePath

    def targets(self) -> dict[str, LakePath]:
        """The kernel's output name -> where it lands (`tile_engine.map_tiles`'s targets)."""
        return {"rows": self.rows, "moments": self.moments}


@dataclass(frozen=True)
class TileNetworkProjectionFiles:
    """One tile's network projections (`ml.cell_projection`): soil temperature, per-cell summary."""

    soil_temperature: LakePath
    summary: LakePath

    def targets(self) -> dict[str, LakePath]:
        """The kernel's output name -> where it lands (`tile_engine.map_tiles`'s targets)."""
        return {"soil_temperature": self.soil_temperature, "summary": self.summary}


@dataclass(frozen=True)
class GridMapFiles:
    netcdf: LakePath
    cells: LakePath


@dataclass(frozen=True)
class LakeLayout:
    """Every path of the lake below `root` (a local folder, or an object-store URL: `lake_root`),
    one method per thing that lands.

    `outputs(asset, partition)` says what each asset writes, so a test can check that no two
    assets write the same path (and the README's tables can be checked against it).
    """

    root: LakePath

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", lake_root(self.root))

    # raw: each product as its source delivers it
    def raw_folder(self, asset: str) -> LakePath:
        return self.root / RAW_SCHEMA / asset

    def era5_land_month(self, month: dt.date) -> LakePath:
        return self.raw_folder(ERA5_LAND) / f"{month:%Y-%m}.parquet"

    def cmip5_experiment(self, experiment: str) -> LakePath:
        return self.raw_folder(CMIP5) / f"{experiment}.parquet"

    def raw_table(self, asset: str) -> LakePath:
        """One-file raw extracts (lithology, soil properties, the reanalysis' spatial units)."""
        return self.root / RAW_SCHEMA / f"{asset}.parquet"

    def raw_glob(self, asset: str) -> str:
        """What the raw view `raw.<asset>` (and the dbt source) reads."""
        if asset in (ERA5_LAND, CMIP5):
            return str(self.raw_folder(asset) / "*.parquet")
        return str(self.raw_table(asset))

    # features
    def bias_corrected(self, scenario: str) -> LakePath:
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

    def scenario_windows(self, scenario: str) -> LakePath:
        return self.root / "features" / "scenario_windows" / f"{scenario}.npz"

    def windows_summary(self, name: str) -> LakePath:
        """What one set of windows holds (`training` for the training and test windows, or an RCP),
        one Parquet each: the view `features.windows` reads them all."""
        return self.root / "features" / "windows_summary" / f"{name}.parquet"

    def scenario_members(self, scenario: str) -> LakePath:
        """Per ensemble member: the scenario's drivers under its bias-correction draw and the core's run."""
        return self.root / "features" / "scenario_windows" / f"{scenario}_members.npz"

    # models, evaluation, projections, validation
    def thermal_core(self) -> ThermalCoreFiles:
        folder = self.root / "models" / "thermal_core"
        return ThermalCoreFiles(folder, folder / "core.json", folder / "history.parquet")

    def model_folder(self, architecture: str) -> LakePath:
        return self.root / "models" / architecture

    def model_evaluation(self) -> LakePath:
        return self.root / "evaluation" / "model_evaluation.parquet"

    def spatial_holdout(self) -> SpatialHoldoutFiles:
        folder = self.root / "evaluation"
        return SpatialHoldoutFiles(
            folder / "spatial_holdout_evaluation.parquet", folder / "spatial_holdout_split.parquet"
        )

    def hyperparameter_search(self, architecture: str) -> LakePath:
        """The search's record of one architecture (best hyperparameters), which trained_models reads."""
        return self.root / "models" / "hyperparameter_search" / f"{architecture}.json"

    def search_trials(self, architecture: str) -> LakePath:
        """The search's trials of one architecture (`*`: every architecture's, for the view)."""
        return self.root / "evaluation" / "hyperparameter_search" / f"{architecture}.parquet"

    def feature_importance(self) -> LakePath:
        return self.root / "evaluation" / "feature_importance.parquet"

    def projections(self, suffix: str = "parquet") -> LakePath:
        return self.root / "projections" / f"soil_temperature_projections.{suffix}"

    def active_layer(self) -> LakePath:
        return self.root / "projections" / "active_layer_thickness.parquet"

    def validation(self) -> ValidationFiles:
        folder = self.root / "validation"
        return ValidationFiles(folder / "perfect_model_validation.parquet", folder / "perfect_model_cells.parquet")

    # grid mode: one file per tile and output (`tile` "*": every tile's, for a view), then the maps
    def tile_core(self, tile: str) -> TileCoreFiles:
        folder = self.root / "grid" / "core"
        return TileCoreFiles(folder / "parameters" / f"{tile}.parquet", folder / "history" / f"{tile}.parquet")

    def tile_scenarios(self, tile: str) -> TileScenarioFiles:
        folder = self.root / "grid" / "scenarios"
        return TileScenarioFiles(folder / "drivers" / f"{tile}.parquet", folder / "diagnostics" / f"{tile}.parquet")

    def tile_projections(self, tile: str) -> TileProjectionFiles:
        folder = self.root / "grid" / "projections"
        return TileProjectionFiles(
            folder / "soil_temperature" / f"{tile}.parquet",
            folder / "active_layer" / f"{tile}.parquet",
            folder / "summary" / f"{tile}.parquet",
        )

    def tile_training_shards(self, tile: str) -> TileShardFiles:
        folder = self.root / "grid" / "networks" / "shards"
        return TileShardFiles(folder / "rows" / f"{tile}.parquet", folder / "moments" / f"{tile}.parquet")

    def cell_network(self) -> LakePath:
        """The shared network over the cells (`ml.cell_training.save_cell_network`'s folder)."""
        return self.root / "grid" / "networks" / "model"

    def tile_network_history(self, tile: str) -> LakePath:
        return self.root / "grid" / "networks" / "history" / f"{tile}.parquet"

    def tile_network_projections(self, tile: str) -> TileNetworkProjectionFiles:
        folder = self.root / "grid" / "networks" / "projections"
        return TileNetworkProjectionFiles(
            folder / "soil_temperature" / f"{tile}.parquet", folder / "summary" / f"{tile}.parquet"
        )

    def grid_maps(self) -> GridMapFiles:
        folder = self.root / "maps"
        return GridMapFiles(folder / "grid_maps.nc", folder / "cell_maps.parquet")

    def figure(self, name: str) -> LakePath:
        return self.root / "figures" / f"{name}.png"

    def logs(self) -> LakePath:
        """Logs of the runs a launcher started (`make demo`): not an asset's output."""
        return self.root / "logs"

    def view_source(self, view: Table) -> str:
        """What the output view `view` reads (a file, or a glob over a folder)."""
        views = {**OUTPUT_VIEWS, **GRID_OUTPUT_VIEWS, **GRID_NETWORK_VIEWS}
        if view not in views:
            raise KeyError(f"{view} is not an output view of the lake")
        return str(views[view].files(self))

    def default_warehouse(self) -> Path:
        if is_object_root(self.root):
            raise ValueError(
                f"the lake root {self.root} is on an object store, and the DuckDB warehouse is a local file: "
                "set PERMAFROST_WAREHOUSE to a local path"
            )
        return self.root / "warehouse.duckdb"

    def outputs(self, asset: str, partition: str | None = None, names: tuple[str, ...] = ()) -> list[LakePath]:
        """The files (or folders) `asset` writes for `partition`.

        `names` lists per-run names where the asset writes one file per item of a set that
        is not its partition (the models evaluated, the scenarios projected).
        """
        windows = self.training_windows()
        by_asset: dict[str, Callable[[], list[LakePath]]] = {
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
            "spatial_holdout_evaluation": lambda: [self.spatial_holdout().scores, self.spatial_holdout().split],
            "hyperparameter_search": lambda: [self.hyperparameter_search(partition), self.search_trials(partition)],
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
            "tile_core": lambda: [self.tile_core(partition).parameters, self.tile_core(partition).history],
            "tile_scenarios": lambda: list(self.tile_scenarios(partition).targets().values()),
            "tile_projections": lambda: list(self.tile_projections(partition).targets().values()),
            "tile_training_shards": lambda: list(self.tile_training_shards(partition).targets().values()),
            "cell_network": lambda: [self.cell_network()],
            "tile_network_history": lambda: [self.tile_network_history(partition)],
            "tile_network_projections": lambda: list(self.tile_network_projections(partition).targets().values()),
            "grid_maps": lambda: [
                self.grid_maps().netcdf,
                self.grid_maps().cells,
                *(self.figure(f"grid_map_{name}") for name in names),
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
            "hyperparameter_search",
            "trained_models",
            "model_evaluation",
            "spatial_holdout_evaluation",
            "soil_temperature_projections",
            "active_layer_thickness",
            "feature_importance",
            "perfect_model_validation",
        )

    @classmethod
    def grid_assets(cls) -> tuple[str, ...]:
        """Grid mode's assets that write into the lake (present only in grid mode)."""
        return ("tile_core", "tile_scenarios", "tile_projections", "grid_maps", *cls.grid_network_assets())

    @classmethod
    def grid_network_assets(cls) -> tuple[str, ...]:
        """Grid mode's network assets (`assets.grid_networks`), a part of `grid_assets`."""
        return ("tile_training_shards", "cell_network", "tile_network_history", "tile_network_projections")
