"""The one place that reads the environment: where the lake is, which source feeds it.

Everything that differs between a laptop and production is an environment variable read
here, once, into a typed `Settings`; resources are built from it in `definitions`.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dagster._utils.schedules import is_valid_cron_string

from dagster_project.lake import DEFAULT_LOCK_WAIT_SECONDS, LakeLayout
from sources import catalog
from sources.config import EARTH_ENGINE_ENVIRONMENT, load_sources

ENV_LAKE_ROOT = "PERMAFROST_LAKE_ROOT"
ENV_WAREHOUSE = "PERMAFROST_WAREHOUSE"
ENV_SOURCE = "PERMAFROST_SOURCE"
ENV_SOURCES_FILE = "PERMAFROST_SOURCES"  # YAML choosing each kind of source (sources.config)
ENV_DEMO_SEED = "PERMAFROST_DEMO_SEED"
ENV_DEMO_LATEST_MONTH = "PERMAFROST_DEMO_LATEST_MONTH"
ENV_TRAINING_EPOCHS = "PERMAFROST_TRAINING_EPOCHS"
ENV_WAREHOUSE_LOCK_WAIT = "PERMAFROST_WAREHOUSE_LOCK_WAIT_SECONDS"
ENV_RETRAIN_CRON = "PERMAFROST_RETRAIN_CRON"
ENV_FRESHNESS_MAX_LAG = "PERMAFROST_FRESHNESS_MAX_LAG_MONTHS"
ENV_NEW_MONTH_POLL = "PERMAFROST_NEW_MONTH_POLL_SECONDS"
ENV_TRAINING_SEEDS = "PERMAFROST_TRAINING_SEEDS"
DEFAULT_TRAINING_EPOCHS = 30
DEFAULT_TRAINING_SEEDS = 5
# Retraining and projections refresh once a year (1 January, 03:00 UTC), not on every month.
DEFAULT_RETRAIN_CRON = "0 3 1 1 *"
# The raw reanalysis is fresh while at most this many published months are not landed yet.
DEFAULT_FRESHNESS_MAX_LAG_MONTHS = 1
DEFAULT_NEW_MONTH_POLL_SECONDS = 6 * 3600

SOURCE_KINDS = ("demo",)
DEFAULT_DEMO_SEED = catalog.DEFAULT_SEED


@dataclass(frozen=True)
class Settings:
    lake_root: Path
    warehouse_path: Path
    source: str
    demo_seed: int
    demo_latest_month: str  # YYYY-MM
    training_epochs: int = DEFAULT_TRAINING_EPOCHS  # epochs `make demo` trains each network for
    training_seeds: int = DEFAULT_TRAINING_SEEDS  # networks (seeds) `make demo` trains per architecture
    sources_file: Path | None = None  # PERMAFROST_SOURCES; none: every kind on the demo
    # Earth Engine credential variables that are set (their names only: the resource reads the
    # values through Dagster's EnvVar, so no credential enters run config, logs or the UI)
    earth_engine_variables: tuple[str, ...] = ()
    # how long a warehouse writer (or reader) waits for another process's lock before failing
    warehouse_lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
    # cron of the retraining cadence (bias correction, windows, models, projections)
    retrain_cron: str = DEFAULT_RETRAIN_CRON
    # published months the raw reanalysis may lag behind the source before its freshness check fails
    freshness_max_lag_months: int = DEFAULT_FRESHNESS_MAX_LAG_MONTHS
    # how often the new-month sensor asks the source
    new_month_poll_seconds: int = DEFAULT_NEW_MONTH_POLL_SECONDS


def from_environment(environ: Mapping[str, str] | None = None, today: dt.date | None = None) -> Settings:
    """Settings from environment variables, with defaults that run offline on the demo.

    `today` (default: the system date) bounds the demo's latest month: a month after the
    current one cannot have been published.
    """
    env = os.environ if environ is None else environ
    lake_root = Path(env.get(ENV_LAKE_ROOT) or "data").expanduser().resolve()
    warehouse = env.get(ENV_WAREHOUSE)
    warehouse_path = Path(warehouse).expanduser().resolve() if warehouse else LakeLayout(lake_root).default_warehouse()
    source = (env.get(ENV_SOURCE) or "demo").strip().lower()
    if source not in SOURCE_KINDS:
        raise ValueError(f"{ENV_SOURCE}={source!r} is not a known source; expected one of {SOURCE_KINDS}")
    seed_text = env.get(ENV_DEMO_SEED) or str(DEFAULT_DEMO_SEED)
    try:
        demo_seed = int(seed_text)
    except ValueError as error:
        raise ValueError(f"{ENV_DEMO_SEED}={seed_text!r} is not an integer") from error
    latest_text = env.get(ENV_DEMO_LATEST_MONTH) or catalog.DEFAULT_LATEST_MONTH.strftime("%Y-%m")
    try:
        latest = catalog.month_start(latest_text)
    except ValueError as error:
        raise ValueError(f"{ENV_DEMO_LATEST_MONTH}={latest_text!r} is not a month (YYYY-MM)") from error
    if latest < catalog.HISTORY_START:
        raise ValueError(f"{ENV_DEMO_LATEST_MONTH}={latest_text!r} is before the history start 2001-01")
    current_month = catalog.month_start(today or dt.date.today())
    if latest > current_month:
        raise ValueError(
            f"{ENV_DEMO_LATEST_MONTH}={latest_text!r} is in the future (current month: {current_month:%Y-%m}): "
            "a month cannot be published before it has happened"
        )
    epochs_text = env.get(ENV_TRAINING_EPOCHS) or str(DEFAULT_TRAINING_EPOCHS)
    if not epochs_text.isdigit() or int(epochs_text) < 1:
        raise ValueError(f"{ENV_TRAINING_EPOCHS}={epochs_text!r} is not a positive integer")
    seeds_text = env.get(ENV_TRAINING_SEEDS) or str(DEFAULT_TRAINING_SEEDS)
    if not seeds_text.isdigit() or int(seeds_text) < 1:
        raise ValueError(f"{ENV_TRAINING_SEEDS}={seeds_text!r} is not a positive integer")
    sources_text = (env.get(ENV_SOURCES_FILE) or "").strip()
    sources_file = Path(sources_text).expanduser().resolve() if sources_text else None
    earth_engine_variables = tuple(name for name in EARTH_ENGINE_ENVIRONMENT if env.get(name))
    # validated once, here, so a wrong setting stops the code location from loading, naming the key
    try:
        load_sources(sources_file, {name: env[name] for name in earth_engine_variables})
    except ValueError as error:
        raise ValueError(f"{ENV_SOURCES_FILE}: {error}") from None
    wait_text = env.get(ENV_WAREHOUSE_LOCK_WAIT) or str(DEFAULT_LOCK_WAIT_SECONDS)
    try:
        lock_wait = float(wait_text)
    except ValueError:
        lock_wait = -1.0
    if not lock_wait >= 0:  # also refuses nan
        raise ValueError(f"{ENV_WAREHOUSE_LOCK_WAIT}={wait_text!r} is not a number of seconds >= 0")
    retrain_cron = (env.get(ENV_RETRAIN_CRON) or DEFAULT_RETRAIN_CRON).strip()
    if not is_valid_cron_string(retrain_cron):
        raise ValueError(f"{ENV_RETRAIN_CRON}={retrain_cron!r} is not a cron expression (e.g. '0 3 1 1 *')")
    freshness_max_lag = _non_negative_int(env, ENV_FRESHNESS_MAX_LAG, DEFAULT_FRESHNESS_MAX_LAG_MONTHS)
    poll_seconds = _non_negative_int(env, ENV_NEW_MONTH_POLL, DEFAULT_NEW_MONTH_POLL_SECONDS)
    if poll_seconds < 30:
        raise ValueError(f"{ENV_NEW_MONTH_POLL}={poll_seconds} is under 30 seconds")
    return Settings(
        lake_root=lake_root,
        warehouse_path=warehouse_path,
        source=source,
        demo_seed=demo_seed,
        demo_latest_month=latest.strftime("%Y-%m"),
        training_epochs=int(epochs_text),
        training_seeds=int(seeds_text),
        sources_file=sources_file,
        earth_engine_variables=earth_engine_variables,
        warehouse_lock_wait_seconds=lock_wait,
        retrain_cron=retrain_cron,
        freshness_max_lag_months=freshness_max_lag,
        new_month_poll_seconds=poll_seconds,
    )


def _non_negative_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = (env.get(name) or str(default)).strip()
    if not text.isdigit():
        raise ValueError(f"{name}={text!r} is not a whole number >= 0")
    return int(text)
