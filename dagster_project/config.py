"""Typed run configuration of the assets: Dagster `Config` classes whose validators refuse a bad
value before an asset runs, naming the field and the value. `TrainingRunConfig` is generated from
the plain dataclass of ml/, so each training setting is declared once (with its default and
description) and the Dagster launchpad shows it."""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

from dagster import Config
from pydantic import Field, field_validator, model_validator

from ml import architecture_catalog
from ml.training_config import BIAS_METHODS, CORE_STRUCTURES, HELD_OUT_SHARE, TrainingConfig
from sources import catalog


def config_class(source: type, name: str, description: str) -> type[Config]:
    """A Dagster `Config` with the fields, types, defaults and descriptions of dataclass `source`,
    validated by the dataclass itself when the run config is read.

    `to_source(config)` turns a filled config back into the dataclass.
    """
    hints = typing.get_type_hints(source)
    namespace: dict[str, typing.Any] = {"__annotations__": {}, "__doc__": description, "__module__": __name__}
    for spec in dataclasses.fields(source):
        namespace["__annotations__"][spec.name] = hints[spec.name]
        namespace[spec.name] = Field(default=spec.default, description=spec.metadata.get("description"))

    def checked_by_the_dataclass(config):
        to_source(config, source)  # the dataclass's own checks raise, naming the field and value
        return config

    namespace["checked_by_the_dataclass"] = model_validator(mode="after")(checked_by_the_dataclass)
    return type(name, (Config,), namespace)


def to_source(config: Config, source: type):
    """The dataclass `source` filled from a config made by `config_class`."""
    return source(**{spec.name: getattr(config, spec.name) for spec in dataclasses.fields(source)})


TrainingRunConfig = config_class(
    TrainingConfig, "TrainingRunConfig", "How each architecture is trained (ml.training_config.TrainingConfig)."
)


class QuantileMappingConfig(Config):
    """The quantile mapping of a climate model onto the reanalysis (`ml.bias_correction`)."""

    # "qdm": quantile delta mapping (keeps the change signal) | "eqm": empirical, as the paper
    method: Literal["qdm", "eqm"] = "qdm"
    n_quantiles: int = 50

    @field_validator("n_quantiles")
    @classmethod
    def _at_least_one_quantile(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"n_quantiles must be a positive number of quantiles, got {value}")
        return value


class BiasCorrectionConfig(QuantileMappingConfig):
    """How CMIP5 is mapped onto the reanalysis (per band, basin or cell: `cmip5_bias_corrected`)."""

    # "lagged": each layer's climatology plus its filtered response to the column's anomaly |
    # "dirichlet": shares sampled per month, as the paper
    soil_water_split: Literal["lagged", "dirichlet"] = "lagged"
    soil_water_seed: int = catalog.DEFAULT_SEED  # the Dirichlet split's draws


class ScenarioWindowsConfig(Config):
    """How the ensemble members' scenario drivers and core runs are prepared."""

    # one per network: architectures x seeds (member s of architecture a uses draw
    # s * architectures + a, ml.ensemble.bias_draw)
    bias_draws: int = len(architecture_catalog.ARCHITECTURES) * TrainingConfig().seeds
    bootstrap_seed: int = catalog.DEFAULT_SEED
    # years the bootstrap resamples together (ml.forcing_bootstrap): 1 single years (the year
    # bootstrap), n >= 2 blocks of n consecutive years (circular), 0 the block length of the
    # overlap's measured persistence across years (benchmarks/README.md, bias_correction_seeds.py)
    bias_block_years: int = 1
    # bias-correction methods the members take in turn (draw k: method k mod the number of
    # methods; draw 0 the first, unperturbed): "qdm" the pipeline's cmip5_bias_corrected,
    # "mean_delta" the raw scenario shifted (scaled) by the mean difference per band and month
    # between the reanalysis and all the model's runs over the overlap (ml.scenario_members)
    bias_methods: list[str] = ["qdm", "mean_delta"]
    # core structures the members take in turn (draw k: structure k mod their number; the first
    # must be "default", the structure the networks are trained on; ["default"] alone: no
    # structural members); each is fitted by thermal_core (ml.scenario_members.ENSEMBLE_STRUCTURES)
    core_structures: list[str] = list(CORE_STRUCTURES)

    @field_validator("bias_draws")
    @classmethod
    def _at_least_one_draw(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"bias_draws must be >= 1 (draw 0 is the unperturbed correction), got {value}")
        return value

    @field_validator("bias_block_years")
    @classmethod
    def _block_years_not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"bias_block_years must be >= 0 (0: from the overlap's persistence), got {value}")
        return value

    @field_validator("core_structures")
    @classmethod
    def _known_structures(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in CORE_STRUCTURES]
        if unknown or not value or value[0] != CORE_STRUCTURES[0]:
            raise ValueError(
                f"core_structures must start with {CORE_STRUCTURES[0]!r} and name only "
                f"{list(CORE_STRUCTURES)}; got {value}"
            )
        return value

    @field_validator("bias_methods")
    @classmethod
    def _known_methods(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in BIAS_METHODS]
        if unknown or not value:
            raise ValueError(f"bias_methods must name one or more of {list(BIAS_METHODS)}; got {value}")
        return value


class HyperparameterSearchConfig(Config):
    """The hyperparameter search of one architecture (residual design), on the training years only.
    Off by default: `trials: 0` searches nothing and records "not searched"."""

    trials: int = Field(default=0, description="trials (networks trained); 0: no search")
    timeout_seconds: float = Field(default=600.0, description="the search stops after this many seconds")
    epochs: int = Field(
        default=15, description="maximum epochs of each trial's network (early stopping may end sooner)"
    )
    seed: int = Field(default=catalog.DEFAULT_SEED, description="seed of the sampler (TPE) and of the trials' networks")

    @field_validator("trials")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"trials must be >= 0 (0: no search), got {value}")
        return value

    @field_validator("timeout_seconds", "epochs")
    @classmethod
    def _positive(cls, value: float, info) -> float:
        if not value > 0:
            raise ValueError(f"{info.field_name} must be positive, got {value}")
        return value


class SpatialHoldoutConfig(Config):
    """Which whole spatial units (series groups) the spatial hold-out keeps from training."""

    share: float = Field(default=HELD_OUT_SHARE, description="share of the series groups held out")
    seed: int = Field(default=catalog.DEFAULT_SEED, description="seed of the split (the same seed, the same split)")

    @field_validator("share")
    @classmethod
    def _a_share(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError(f"share must be between 0 and 1, got {value}")
        return value


# ml.thermal_core.FIT_ITERATIONS (not imported here: ml.thermal_core is not one of the light ml modules)
CORE_FIT_ITERATIONS = 25


class TileScenariosConfig(QuantileMappingConfig):
    """How grid mode maps each cell's regridded scenario onto its reanalysis (`ml.tile_scenarios`):
    the band path's quantile mapping, with the same defaults."""


class TileCoreConfig(Config):
    """How grid mode fits the conduction core per cell (`ml.tiles`)."""

    max_iterations: int = Field(
        default=CORE_FIT_ITERATIONS, description="function evaluations of each cell's fit at most (0: initial values)"
    )

    @field_validator("max_iterations")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"max_iterations must be >= 0, got {value}")
        return value


class CellNetworkConfig(Config):
    """How grid mode trains its one shared network over every cell (`ml.cell_training`)."""

    architecture: str = Field(default="gru", description="one of ml.architecture_catalog's architectures")
    epochs: int = Field(default=8, ge=1, description="passes over the training windows at most (early stopping)")
    batch_size: int = Field(default=256, ge=1, description="windows per batch")
    learning_rate: float = Field(default=1e-3, gt=0, description="Adam's learning rate")
    patience: int = Field(default=3, ge=1, description="epochs without a better validation loss before stopping")
    shuffle_buffer: int = Field(default=8192, ge=0, description="windows shuffled together (tf.data buffer)")
    validation_months: int = Field(
        default=24, ge=0, description="the last training target months that early stopping watches"
    )
    seed: int = Field(default=0, description="Keras' random seed")
    units: int = Field(default=32, ge=1, description="units per layer, where the architecture has `units`")
    layers: int = Field(default=1, ge=1, description="stacked layers, where the architecture has `layers`")

    @field_validator("architecture")
    @classmethod
    def _known_architecture(cls, value: str) -> str:
        if value not in architecture_catalog.ARCHITECTURES:
            raise ValueError(f"architecture must be one of {sorted(architecture_catalog.ARCHITECTURES)}, got {value!r}")
        return value
