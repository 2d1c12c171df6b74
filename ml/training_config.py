"""How a model is fitted: a plain dataclass, cheap to import (no Keras).

The Dagster run config of `trained_models` is generated from it (dagster_project.config), so
a field added here appears in the UI's launchpad with its default and description.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sources import catalog


@dataclass(frozen=True)
class TrainingConfig:
    """How a model is fitted (the paper trains 50 epochs)."""

    epochs: int = field(default=50, metadata={"description": "maximum epochs (early stopping may end sooner)"})
    batch_size: int = field(default=32, metadata={"description": "windows per gradient step"})
    learning_rate: float = field(default=1e-3, metadata={"description": "Adam learning rate"})
    seed: int = field(default=catalog.DEFAULT_SEED, metadata={"description": "seed of weights and shuffling"})
    patience: int = field(default=10, metadata={"description": "epochs without a better validation loss"})
    validation_fraction: float = field(
        default=0.1, metadata={"description": "latest share of training target months held out for early stopping"}
    )

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainingConfig.{name} must be a positive int, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainingConfig.learning_rate must be positive, got {self.learning_rate!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"TrainingConfig.validation_fraction must be in [0, 1), got {self.validation_fraction!r}")
