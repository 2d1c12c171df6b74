"""The one place that reads the environment: where the lake is, which sources feed it.

Everything that differs between a laptop and production is a `PERMAFROST_*` environment
variable, read once into the validated `Settings` (pydantic-settings); resources are built
from it in `definitions`. A wrong value stops the code location, naming the variable.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from dagster import DagsterInvalidDefinitionError, ScheduleDefinition
from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from dagster_project.lake import DEFAULT_LOCK_WAIT_SECONDS, LakeLayout
from dagster_project.lake import lake_root as resolve_lake_root
from sources import catalog
from sources.config import EARTH_ENGINE_ENVIRONMENT, EarthEngineAuth, SourcesConfig, load_sources
from sources.simulator.worlds import DEFAULT_WORLD, WORLDS

ENV_PREFIX = "PERMAFROST_"
ENV_LAKE_ROOT = "PERMAFROST_LAKE_ROOT"
ENV_WAREHOUSE = "PERMAFROST_WAREHOUSE"
ENV_SOURCES_FILE = "PERMAFROST_SOURCES"  # YAML choosing each kind of source (sources.config)
ENV_DEMO_SEED = "PERMAFROST_DEMO_SEED"
ENV_DEMO_LATEST_MONTH = "PERMAFROST_DEMO_LATEST_MONTH"
ENV_DEMO_WORLD = "PERMAFROST_DEMO_WORLD"
ENV_DASK_ADDRESS = "PERMAFROST_DASK_ADDRESS"
ENV_TRAINING_EPOCHS = "PERMAFROST_TRAINING_EPOCHS"
ENV_TRAINING_SEEDS = "PERMAFROST_TRAINING_SEEDS"
ENV_WAREHOUSE_LOCK_WAIT = "PERMAFROST_WAREHOUSE_LOCK_WAIT_SECONDS"
ENV_RETRAIN_CRON = "PERMAFROST_RETRAIN_CRON"
ENV_FRESHNESS_MAX_LAG = "PERMAFROST_FRESHNESS_MAX_LAG_MONTHS"
ENV_NEW_MONTH_POLL = "PERMAFROST_NEW_MONTH_POLL_SECONDS"
# Removed: it only ever accepted `demo`; the sources file chooses every kind of source.
ENV_SOURCE_REMOVED = "PERMAFROST_SOURCE"

DEFAULT_DEMO_SEED = catalog.DEFAULT_SEED
DEFAULT_TRAINING_EPOCHS = 30
DEFAULT_TRAINING_SEEDS = 5
# Retraining and projections refresh once a year (1 January, 03:00 UTC), not on every month.
DEFAULT_RETRAIN_CRON = "0 3 1 1 *"
# The raw reanalysis is fresh while at most this many published months are not landed yet.
DEFAULT_FRESHNESS_MAX_LAG_MONTHS = 1
DEFAULT_NEW_MONTH_POLL_SECONDS = 6 * 3600


class SettingsError(ValueError):
    """A PERMAFROST_ variable is wrong; the message names it, its value and what was expected."""


@dataclass(frozen=True)
class Expected:
    """What a variable's value must be: the end of its error message (`... is not a positive integer`)."""

    text: str


@dataclass(frozen=True)
class _Reading:
    """What the settings are read from: the variables, and the date that bounds the demo's months."""

    environ: Mapping[str, str]
    today: dt.date


# `from_environment` reads a given mapping and date; pydantic-settings builds the model without
# arguments, so the reading reaches the sources and validators through this context variable.
_READING: ContextVar[_Reading | None] = ContextVar("permafrost_settings_reading", default=None)


def _reading() -> _Reading:
    return _READING.get() or _Reading(os.environ, dt.date.today())


class _Environment(EnvSettingsSource):
    """The variables of the mapping being read (os.environ unless `from_environment` is given one)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # the hook the library's own .env-file source overrides to read another mapping
        return parse_env_vars(_reading().environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


def _absolute(path: Path) -> Path:
    return path.expanduser().resolve()


# the fields of the Earth Engine credential variables (sources.config.EARTH_ENGINE_ENVIRONMENT)
EARTH_ENGINE_FIELDS = ("ee_project", "ee_service_account", "ee_key_file")
Count = Annotated[int, Field(ge=1), Expected("a positive integer")]
# set or not: the value is read at run time through Dagster's EnvVar, never kept here
IsSet = Annotated[bool, BeforeValidator(bool)]


class Settings(BaseSettings):
    """Every setting, typed and validated; each field is read from PERMAFROST_<FIELD NAME> unless
    it names its variable (`validation_alias`). Build it with `from_environment`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore", frozen=True, validate_default=True
    )

    # a local folder (a Path), or an object-store URL (a UPath: `s3://bucket/prefix`)
    lake_root: Annotated[Any, BeforeValidator(resolve_lake_root)] = Path("data")
    # default: warehouse.duckdb in the lake root
    warehouse_path: Path = Field(None, validation_alias=ENV_WAREHOUSE)
    demo_seed: Annotated[int, Expected("an integer")] = DEFAULT_DEMO_SEED
    demo_latest_month: str = catalog.DEFAULT_LATEST_MONTH.strftime("%Y-%m")  # YYYY-MM
    # the demo's soil physics (sources.simulator.worlds.WORLDS): the same weather, other soils
    demo_world: str = DEFAULT_WORLD
    training_epochs: Count = DEFAULT_TRAINING_EPOCHS  # epochs `make demo` trains each network for
    training_seeds: Count = DEFAULT_TRAINING_SEEDS  # networks (seeds) `make demo` trains per architecture
    # how long a warehouse writer (or reader) waits for another process's lock before failing
    warehouse_lock_wait_seconds: Annotated[float, Field(ge=0), Expected("a number of seconds >= 0")] = (
        DEFAULT_LOCK_WAIT_SECONDS
    )
    # cron of the retraining cadence (bias correction, windows, models, projections)
    retrain_cron: str = DEFAULT_RETRAIN_CRON
    # published months the raw reanalysis may lag behind the source before its freshness check fails
    freshness_max_lag_months: Annotated[int, Field(ge=0), Expected("a whole number >= 0")] = (
        DEFAULT_FRESHNESS_MAX_LAG_MONTHS
    )
    # how often the new-month sensor asks the source
    new_month_poll_seconds: Annotated[int, Field(ge=30), Expected("a whole number of seconds >= 30")] = (
        DEFAULT_NEW_MONTH_POLL_SECONDS
    )
    # grid mode's dask scheduler (tcp://host:port); empty: dask's own scheduler-address, else embedded
    dask_address: str = ""
    # Earth Engine credentials (PERMAFROST_EE_PROJECT, _SERVICE_ACCOUNT, _KEY_FILE): whether each is set
    ee_project: IsSet = False
    ee_service_account: IsSet = False
    ee_key_file: IsSet = False
    # PERMAFROST_SOURCES read twice: its path (the resource re-reads the file at run time) and
    # what the file says, validated with the credentials but kept without them
    sources_file: Path | None = Field(None, validation_alias=ENV_SOURCES_FILE)
    sources: Annotated[SourcesConfig, NoDecode] = SourcesConfig()

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        # the environment only: no .env file, no secrets directory
        return init_settings, _Environment(settings_cls)

    @classmethod
    def variable(cls, field_name: str) -> str:
        """The environment variable a field is read from."""
        return cls.model_fields[field_name].validation_alias or ENV_PREFIX + field_name.upper()

    @model_validator(mode="before")
    @classmethod
    def _no_removed_variable(cls, data: object) -> object:
        value = _reading().environ.get(ENV_SOURCE_REMOVED)
        if value:
            raise ValueError(
                f"{ENV_SOURCE_REMOVED}={value!r} is no longer read: unset it and choose the sources with "
                f"{ENV_SOURCES_FILE} (a YAML file, see sources/config.py; unset: every kind on the demo)"
            )
        return data

    @field_validator("sources_file")
    @classmethod
    def _absolute_path(cls, value: Path | None) -> Path | None:
        return None if value is None else _absolute(value)

    @field_validator("warehouse_path", mode="before")
    @classmethod
    def _warehouse_in_the_lake(cls, value: str | Path | None, info: ValidationInfo) -> Path:
        if value:
            return _absolute(Path(value))
        return LakeLayout(info.data["lake_root"]).default_warehouse()

    @field_validator("demo_latest_month", mode="before")
    @classmethod
    def _published_month(cls, value: str | dt.date) -> str:
        try:
            month = catalog.month_start(value)
        except (TypeError, ValueError):
            raise ValueError(f"{ENV_DEMO_LATEST_MONTH}={value!r} is not a month (YYYY-MM)") from None
        if month < catalog.HISTORY_START:
            raise ValueError(
                f"{ENV_DEMO_LATEST_MONTH}={value!r} is before the history start {catalog.HISTORY_START:%Y-%m}"
            )
        current_month = catalog.month_start(_reading().today)
        if month > current_month:
            raise ValueError(
                f"{ENV_DEMO_LATEST_MONTH}={value!r} is in the future (current month: {current_month:%Y-%m}): "
                "a month cannot be published before it has happened"
            )
        return f"{month:%Y-%m}"

    @field_validator("demo_world")
    @classmethod
    def _known_world(cls, value: str) -> str:
        world = value.strip()
        if world not in WORLDS:
            raise ValueError(f"{ENV_DEMO_WORLD}={value!r} is not a demo world; expected one of {sorted(WORLDS)}")
        return world

    @field_validator("retrain_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        cron = value.strip()
        try:  # Dagster's own (public) check, the one its schedules and automation conditions apply
            ScheduleDefinition(name="retrain_cadence", cron_schedule=cron, job_name="retrain")
        except DagsterInvalidDefinitionError:
            raise ValueError(f"{ENV_RETRAIN_CRON}={cron!r} is not a cron expression (e.g. '0 3 1 1 *')") from None
        return cron

    @field_validator("sources", mode="before")
    @classmethod
    def _load_sources_file(cls, value: SourcesConfig | str | Path) -> SourcesConfig:
        if isinstance(value, SourcesConfig):
            return value
        environ = _reading().environ
        credentials = {name: environ[name] for name in EARTH_ENGINE_ENVIRONMENT if environ.get(name)}
        try:
            config = load_sources(value, credentials)
        except ValueError as error:
            raise ValueError(f"{ENV_SOURCES_FILE}: {error}") from None
        return config.model_copy(update={"earth_engine": EarthEngineAuth()})


def from_environment(environ: Mapping[str, str] | None = None, today: dt.date | None = None) -> Settings:
    """Settings from environment variables (`environ`, default os.environ), with defaults that run
    offline on the demo.

    `today` (default: the system date) bounds the demo's latest month: a month after the
    current one cannot have been published.
    """
    reading = _Reading(os.environ if environ is None else environ, today or dt.date.today())
    token = _READING.set(reading)
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(_messages(error)) from None
    finally:
        _READING.reset(token)


def _messages(error: ValidationError) -> str:
    """One line per wrong variable: `PERMAFROST_X='value' is not <what was expected>`."""
    fields = {name: name for name in Settings.model_fields} | {
        field.validation_alias: name for name, field in Settings.model_fields.items() if field.validation_alias
    }
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["loc"] and not message.startswith(ENV_PREFIX):  # a type or bound pydantic checked
            field_name = fields[str(item["loc"][0])]
            expected = [m.text for m in Settings.model_fields[field_name].metadata if isinstance(m, Expected)]
            told = f"is not {expected[0]}" if expected else f"is wrong: {message}"
            message = f"{Settings.variable(field_name)}={item['input']!r} {told}"
        lines.append(message)
    return "; ".join(lines)
