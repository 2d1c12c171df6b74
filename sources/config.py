"""Which source feeds each kind of data, typed and validated once.

The three kinds (reanalysis, climate model, static) are chosen independently in one YAML file
(named by the environment variable PERMAFROST_SOURCES, read in `dagster_project.settings`);
a kind the file leaves out is the offline demo. A wrong setting fails when the file is loaded,
with a message naming the key (`reanalysis.collection: ...`). Paths are relative to the file.

Plain pydantic models, no Dagster: the connectors and their tests build them directly.
"""

from __future__ import annotations

import glob
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sources import catalog

# Earth Engine credentials come from the environment (never from a file in the repo):
# `dagster_project.settings` checks the sources file with them, and the resource reads them
# at run time (as Dagster EnvVars) into `EarthEngineAuth`.
ENV_EE_PROJECT = "PERMAFROST_EE_PROJECT"
ENV_EE_SERVICE_ACCOUNT = "PERMAFROST_EE_SERVICE_ACCOUNT"
ENV_EE_KEY_FILE = "PERMAFROST_EE_KEY_FILE"
EARTH_ENGINE_ENVIRONMENT = (ENV_EE_PROJECT, ENV_EE_SERVICE_ACCOUNT, ENV_EE_KEY_FILE)

ERA5_LAND_MONTHLY = "ECMWF/ERA5_LAND/MONTHLY_AGGR"
ERA5_LAND_DAILY = "ECMWF/ERA5_LAND/DAILY_AGGR"
ERA5_LAND_NATIVE_SCALE_M = 11132.0

# Documented Earth Engine limits on one computeFeatures request.
EE_MAX_ELEMENTS = 5000
EE_MAX_PAYLOAD_BYTES = 10 * 1024 * 1024

CalendarName = Literal["standard", "gregorian", "proleptic_gregorian", "noleap", "365_day", "360_day"]


class SourcesConfigError(ValueError):
    """A setting of the sources file is wrong; the message names the key."""


MISSING_CREDENTIALS = (
    "Earth Engine credentials are not set: set earth_engine.project (or the environment variable "
    f"{ENV_EE_PROJECT}) and run `earthengine authenticate` once, or set earth_engine.service_account and "
    f"earth_engine.key_file (or {ENV_EE_SERVICE_ACCOUNT} and {ENV_EE_KEY_FILE}) for a service account"
)


class _Strict(BaseModel):
    # an unknown key is a typo far more often than a wish: refuse it, naming it
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- Earth Engine --------------------------------------------------------------------------


class EarthEngineAuth(_Strict):
    """How to authenticate: a Cloud project with the user's stored credentials
    (`earthengine authenticate`), or a service account and its JSON key file."""

    project: str | None = None
    service_account: str | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> EarthEngineAuth:
        if (self.service_account is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "service_account"
            raise ValueError(
                f"a service account needs both service_account and key_file; {missing} is not set "
                f"(environment {ENV_EE_SERVICE_ACCOUNT} / {ENV_EE_KEY_FILE})"
            )
        return self

    @property
    def configured(self) -> bool:
        return bool(self.project or self.service_account)

    def __repr__(self) -> str:  # never print the key file's path
        return f"EarthEngineAuth(project={self.project!r}, service_account={'set' if self.service_account else None})"

    __str__ = __repr__


class EarthEngineRequests(_Strict):
    """Chunking and retries of `ee.data.computeFeatures` calls."""

    max_elements: int = Field(EE_MAX_ELEMENTS, gt=0, le=EE_MAX_ELEMENTS)
    max_payload_bytes: int = Field(EE_MAX_PAYLOAD_BYTES, gt=0, le=EE_MAX_PAYLOAD_BYTES)
    max_attempts: int = Field(6, ge=1, le=20)
    backoff_seconds: float = Field(2.0, ge=0.0)
    max_backoff_seconds: float = Field(120.0, ge=0.0)


# --- reanalysis ----------------------------------------------------------------------------


class DemoConfig(_Strict):
    kind: Literal["demo"] = "demo"


class DemoReanalysisConfig(DemoConfig):
    """The simulated reanalysis: per band (the default) or per cell of the synthetic grid
    (`units: cell`, grid mode; the CMIP twin and the static tables stay per band)."""

    units: Literal["band", "cell"] = "band"


class EarthEngineReanalysisConfig(_Strict):
    """ERA5-Land from Earth Engine, reduced server-side to area-weighted band means."""

    kind: Literal["earth_engine"]
    collection: Literal["ECMWF/ERA5_LAND/MONTHLY_AGGR", "ECMWF/ERA5_LAND/DAILY_AGGR"] = ERA5_LAND_MONTHLY
    scale_m: float = Field(ERA5_LAND_NATIVE_SCALE_M, gt=0)
    requests: EarthEngineRequests = EarthEngineRequests()


def _existing_paths(patterns: list[str], key: str) -> list[str]:
    for pattern in patterns:
        if not glob.glob(pattern):
            raise ValueError(f"no file matches {pattern!r}")
    return patterns


class CdsReanalysisConfig(_Strict):
    """ERA5-Land monthly means downloaded from the Copernicus CDS (netCDF, GRIB or the ZIP of
    one file per step type), 0.1 degree, over (at least) Alaska."""

    kind: Literal["cds"]
    paths: list[str] = Field(min_length=1)  # files or glob patterns

    @field_validator("paths")
    @classmethod
    def _exist(cls, value: list[str]) -> list[str]:
        return _existing_paths(value, "paths")


UnitsMapping = dict[str, str]


class BandTableReanalysisConfig(_Strict):
    """ERA5-Land already reduced to the six bands: one CSV or Parquet, one row per band and month."""

    kind: Literal["band_table"]
    path: Path
    columns: dict[str, str] = {}  # table column -> ERA5-Land band name, beyond the built-in aliases
    units: UnitsMapping = {}  # ERA5-Land band name -> unit of the table's column

    @field_validator("path")
    @classmethod
    def _exists(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value


class BasinTableReanalysisConfig(_Strict):
    """ERA5-Land averaged over river basins (`monthly_by_basin.csv`: one row per basin and month,
    degC, mm per month, W m-2 means, kPa; CSV or Parquet): a reanalysis whose spatial units are
    basins (sources/basin_table.py)."""

    kind: Literal["basin_table"]
    path: Path
    attributes: Path | None = None  # basin_attributes.csv: the basins' names (waterbody_name)
    basins: list[int] = []  # station ids to read; empty: every basin of the table
    absent: list[str] = []  # ERA5-Land bands the table lacks beyond those the format never has

    @field_validator("path", "attributes")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("basins")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        repeated = sorted({basin for basin in value if value.count(basin) > 1})
        if repeated:
            raise ValueError(f"basin(s) {repeated} listed more than once")
        return value

    @field_validator("absent")
    @classmethod
    def _known_bands(cls, value: list[str]) -> list[str]:
        known = (*catalog.ERA5_LAND_BANDS, *catalog.ERA5_LAND_OPTIONAL_BANDS)
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown ERA5-Land band(s) {unknown}; expected some of {known}")
        return value


ReanalysisConfig = Annotated[
    DemoReanalysisConfig
    | EarthEngineReanalysisConfig
    | CdsReanalysisConfig
    | BandTableReanalysisConfig
    | BasinTableReanalysisConfig,
    Field(discriminator="kind"),
]


# --- climate model -------------------------------------------------------------------------


class EsgfClimateModelConfig(_Strict):
    """CMIP5 CF-netCDF as published on ESGF: `<var>_<table>_<model>_<experiment>_<ensemble>_<range>.nc`."""

    kind: Literal["esgf"]
    paths: list[str] = Field(min_length=1)  # files or glob patterns
    model: str | None = None  # required when the files hold more than one model
    ensemble: str | None = None  # e.g. r1i1p1; required when the files hold more than one
    land_fraction: Path | None = None  # sftlf_fx file (percent); else the land cells of mrsos/mrso

    @field_validator("paths")
    @classmethod
    def _exist(cls, value: list[str]) -> list[str]:
        return _existing_paths(value, "paths")


class BandTableClimateModelConfig(_Strict):
    """CMIP5 already reduced to the six bands, one table per experiment (CSV or Parquet)."""

    kind: Literal["band_table"]
    model: str
    files: dict[str, Path] = Field(min_length=1)  # experiment -> table
    calendar: CalendarName | None = None  # detected from mid-month time stamps when left out
    columns: dict[str, str] = {}  # table column -> CMIP variable, beyond the built-in aliases
    units: UnitsMapping = {}  # CMIP variable -> unit of the table's column
    absent: list[str] = []  # CMIP variables the tables do not have (e.g. mrso)

    @field_validator("files")
    @classmethod
    def _experiments(cls, value: dict[str, Path]) -> dict[str, Path]:
        for experiment, path in value.items():
            if experiment not in catalog.CMIP5_EXPERIMENTS:
                raise ValueError(f"unknown experiment {experiment!r}; expected one of {catalog.CMIP5_EXPERIMENTS}")
            if not Path(path).is_file():
                raise ValueError(f"{experiment}: no such file: {path}")
        return value

    @field_validator("absent")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(catalog.CMIP5_VARIABLES))
        if unknown:
            raise ValueError(f"unknown CMIP5 variable(s) {unknown}; expected some of {catalog.CMIP5_VARIABLES}")
        return value


ClimateModelConfig = Annotated[
    DemoConfig | EsgfClimateModelConfig | BandTableClimateModelConfig, Field(discriminator="kind")
]


# --- static --------------------------------------------------------------------------------


def _repo_seed(name: str) -> Path:
    return Path(__file__).resolve().parents[1] / "sql" / "seeds" / name


class UsgsGeologyConfig(_Strict):
    """USGS Geologic Map of Alaska (SIM 3340): unit polygons, their class field, and the
    map's lithology table, mapped to the nine classes by `lithology_map` (a dbt seed)."""

    path: Path  # the .gdb folder, a shapefile or a GeoPackage
    layer: str = "AKStategeol_poly"
    class_field: str = "NSACLASS"  # unit polygons -> lithology table key
    lithology_table: str = "nsalith"  # layer of the same file with one row per class and lithology
    lithology_fields: tuple[str, str] = ("LITH1", "LITH2")  # broad and finer lithology terms
    rank_field: str = "RANK"
    major_ranks: tuple[str, ...] = ("Major", "Indeterminate, major", "Indeterminate")
    lithology_map: Path = _repo_seed("usgs_lithology_classes.csv")

    @field_validator("path", "lithology_map")
    @classmethod
    def _exists(cls, value: Path) -> Path:
        if not value.exists():
            raise ValueError(f"no such file: {value}")
        return value


DEPTH_KEYS = catalog.OPENLANDMAP_DEPTH_COLUMNS


class OpenLandMapEarthEngineConfig(_Strict):
    kind: Literal["earth_engine"]
    scale_m: float = Field(1000.0, gt=0)
    requests: EarthEngineRequests = EarthEngineRequests()


class OpenLandMapGeoTiffConfig(_Strict):
    """OpenLandMap GeoTIFFs (EPSG:4326, stored units): per property either one file with six
    bands b0..b200 in depth order, or one file per depth."""

    kind: Literal["geotiff"]
    bulk_density: Path | dict[str, Path]
    organic_carbon: Path | dict[str, Path]
    max_pixels: int = Field(4_000_000, gt=0)  # read decimated (averaged) above this per depth

    @field_validator("bulk_density", "organic_carbon")
    @classmethod
    def _files(cls, value: Path | dict[str, Path]) -> Path | dict[str, Path]:
        paths = {"": value} if isinstance(value, Path) else value
        if isinstance(value, dict) and set(value) != set(DEPTH_KEYS):
            raise ValueError(f"depths {sorted(value)} given; expected exactly {list(DEPTH_KEYS)}")
        for depth, path in paths.items():
            if not Path(path).is_file():
                raise ValueError(f"{depth + ': ' if depth else ''}no such file: {path}")
        return value


OpenLandMapConfig = Annotated[OpenLandMapEarthEngineConfig | OpenLandMapGeoTiffConfig, Field(discriminator="kind")]


class FilesStaticConfig(_Strict):
    """Real static extracts: USGS lithology (vector files) and OpenLandMap soil (Earth Engine or GeoTIFF)."""

    kind: Literal["files"]
    geology: UsgsGeologyConfig
    soil: OpenLandMapConfig


StaticConfig = Annotated[DemoConfig | FilesStaticConfig, Field(discriminator="kind")]


# --- the whole file ------------------------------------------------------------------------


class SourcesConfig(_Strict):
    reanalysis: ReanalysisConfig = DemoReanalysisConfig()
    climate_model: ClimateModelConfig = DemoConfig()
    static: StaticConfig = DemoConfig()
    earth_engine: EarthEngineAuth = EarthEngineAuth()
    # where the per-grid band weights (regionmask fractions) are kept between runs; none: in memory only
    weights_cache: Path | None = None

    def uses_earth_engine(self) -> bool:
        return isinstance(self.reanalysis, EarthEngineReanalysisConfig) or (
            isinstance(self.static, FilesStaticConfig) and isinstance(self.static.soil, OpenLandMapEarthEngineConfig)
        )

    def kinds(self) -> dict[str, str]:
        return {
            "reanalysis": self.reanalysis.kind,
            "climate_model": self.climate_model.kind,
            "static": self.static.kind,
        }


def _resolve_paths(node: object, base: Path, key: str = "") -> object:
    """Relative paths in the file are relative to the file's folder (globs too)."""
    path_keys = {"path", "paths", "files", "key_file", "land_fraction", "lithology_map", "weights_cache", "attributes"}
    path_keys |= {"bulk_density", "organic_carbon"}
    if isinstance(node, dict):
        return {
            k: _resolve_paths(v, base, k if k in path_keys else (key if key in path_keys else ""))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_resolve_paths(v, base, key) for v in node]
    if isinstance(node, str) and key:
        path = Path(node).expanduser()
        return str(path if path.is_absolute() else base / path)
    return node


_UNION_FIELDS = {"reanalysis", "climate_model", "static", "soil"}


def _format_errors(error: ValidationError, where: str) -> str:
    lines = []
    for item in error.errors():
        # pydantic puts the chosen `kind` of a union after the field's name: drop it
        loc = [str(p) for p in item["loc"]]
        parts = [p for i, p in enumerate(loc) if i == 0 or loc[i - 1] not in _UNION_FIELDS]
        key = ".".join(parts) or "(file)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{key}: {message}")
    return f"{where}: " + "; ".join(lines)


def parse_sources(data: Mapping | None, where: str, auth_environment: Mapping[str, str] | None = None) -> SourcesConfig:
    """Validate a mapping (the YAML's content); credentials not in it come from `auth_environment`."""
    data = dict(data or {})
    env = auth_environment or {}
    auth = dict(data.get("earth_engine") or {})
    for key, variable in (
        ("project", ENV_EE_PROJECT),
        ("service_account", ENV_EE_SERVICE_ACCOUNT),
        ("key_file", ENV_EE_KEY_FILE),
    ):
        if not auth.get(key) and env.get(variable):
            auth[key] = env[variable]
    if auth:
        data["earth_engine"] = auth
    try:
        config = SourcesConfig.model_validate(data)
    except ValidationError as error:
        raise SourcesConfigError(_format_errors(error, where)) from None
    if config.uses_earth_engine() and not config.earth_engine.configured:
        raise SourcesConfigError(f"{where}: earth_engine: {MISSING_CREDENTIALS}")
    return config


def load_sources(path: Path | str | None, auth_environment: Mapping[str, str] | None = None) -> SourcesConfig:
    """The sources file at `path` (YAML), or every kind on the demo when `path` is empty."""
    if not path:
        return parse_sources({}, "sources", auth_environment)
    import yaml

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise SourcesConfigError(f"sources file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SourcesConfigError(f"sources file {path} is not valid YAML: {error}") from None
    if data is not None and not isinstance(data, dict):
        raise SourcesConfigError(f"sources file {path}: expected a mapping with reanalysis/climate_model/static")
    resolved = _resolve_paths(data or {}, path.parent)
    return parse_sources(resolved, f"sources file {path}", auth_environment)
