"""How the networks are fitted: a plain dataclass, cheap to import (no Keras).

The Dagster run config of `trained_models` is generated from it (dagster_project.config), so
a field added here appears in the UI's launchpad with its default and description.

Two designs (``design``):

* ``"residual"`` (default): each architecture learns a bounded residual on top of the
  calibrated conduction core from anomaly inputs clipped to their training range, window
  t-23..t (``ml.residual``); small networks, so several seeds train in seconds each.
* ``"paper"``: the paper's path, kept so it can be reproduced: normalised absolute targets
  from windows t-24..t-1 with the calendar year and the scenario signal z as inputs
  (``ml.windows``, ``ml.training``). ``TrainingConfig.paper()`` gives the paper's settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from sources import catalog

DESIGNS = ("residual", "paper")
# The bias corrections the scenario members take in turn (ml.scenario_members): "qdm" the
# pipeline's quantile delta mapping (cmip5_bias_corrected), "mean_delta" the raw scenario shifted
# (scaled) by the mean difference per band and calendar month between the reanalysis and all the
# model's runs over the overlap. Here, with the other run settings, so the run config can check it
# without loading the modelling code.
BIAS_METHODS: tuple[str, ...] = ("qdm", "mean_delta")
# The conduction core's structures the ensemble members take in turn (member draw k: structure
# k mod their number), the default first; ml.scenario_members.ENSEMBLE_STRUCTURES defines them.
# Here so the run config can check names without loading the modelling code.
CORE_STRUCTURES: tuple[str, ...] = ("default", "thick_column", "power_law_freezing")
# The share of series groups of spatial units the spatial hold-out keeps from training
# (ml.spatial_holdout), here so the run config can check it without loading the modelling code.
HELD_OUT_SHARE = 0.2


@dataclass(frozen=True)
class TrainingConfig:
    """How every network of an architecture is fitted (each of ``seeds`` seeds the same way)."""

    design: str = field(
        default="residual",
        metadata={"description": "'residual': bounded residual on the conduction core; 'paper': the paper's path"},
    )
    seeds: int = field(default=5, metadata={"description": "networks trained per architecture, each its own seed"})
    epochs: int = field(default=30, metadata={"description": "maximum epochs (early stopping may end sooner)"})
    batch_size: int = field(default=64, metadata={"description": "windows per gradient step"})
    learning_rate: float = field(default=2e-3, metadata={"description": "Adam learning rate"})
    seed: int = field(
        default=catalog.DEFAULT_SEED,
        metadata={"description": "seed of the first network's weights and shuffling; network s uses seed + 1000 s"},
    )
    patience: int = field(default=5, metadata={"description": "epochs without a better validation loss"})
    validation_fraction: float = field(
        default=0.1, metadata={"description": "latest share of training target months held out for early stopping"}
    )
    bound: float = field(
        default=2.0,
        metadata={"description": "residual design: largest correction, in training residual standard deviations"},
    )
    use_search: bool = field(
        default=True,
        metadata={
            "description": "residual design: train with the hyperparameters and learning rate hyperparameter_search "
            "found, where a search has run for the architecture (its trials > 0); the defaults otherwise"
        },
    )

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise ValueError(f"TrainingConfig.design must be one of {DESIGNS}, got {self.design!r}")
        for name in ("seeds", "epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainingConfig.{name} must be a positive int, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainingConfig.learning_rate must be positive, got {self.learning_rate!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"TrainingConfig.validation_fraction must be in [0, 1), got {self.validation_fraction!r}")
        if not self.bound > 0:
            raise ValueError(f"TrainingConfig.bound must be positive, got {self.bound!r}")

    def member_seed(self, index: int) -> int:
        """The seed of network ``index`` (0 .. seeds - 1) of an architecture."""
        return self.seed + 1000 * index

    @classmethod
    def paper(cls, **overrides) -> TrainingConfig:
        """The paper's settings: its path, 50 epochs, batch 32, Adam 1e-3, one network."""
        settings = {
            "design": "paper",
            "seeds": 1,
            "epochs": 50,
            "batch_size": 32,
            "learning_rate": 1e-3,
            "patience": 10,
        }
        return cls(**{**settings, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
