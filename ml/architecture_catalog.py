"""The network architectures, listed once with what varies per architecture: read by the
partitions, the builders, the residual design, the ensemble's draws, the evaluation and the figures.

Cheap to import (no Keras): Dagster's definitions read it at load. Adding an architecture is
one entry in ``ARCHITECTURES`` (its builder may live in any module: ``builder`` is an import path).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PaperScores:
    """The paper's Table 2: test-period (2019-2023) scores, all bands and layers pooled."""

    rmse: float
    mae: float
    r2: float


@dataclass(frozen=True)
class Architecture:
    """One architecture: its Keras builder, its colour in every figure, the hyperparameters of
    its small residual-design networks, and the paper's scores where the paper has it."""

    name: str
    builder: str  # "module.function" of a builder (InputSpec, hyperparameters | None) -> keras.Model
    colour: str
    small_hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    paper: PaperScores | None = None

    def build(self, spec, hyperparameters: dict | None = None):
        """The Keras model of this architecture (the builder's module is imported here)."""
        module, _, function = self.builder.rpartition(".")
        return getattr(importlib.import_module(module), function)(spec, hyperparameters)


# Small hyperparameters: ~1200 training windows need no more, and 25 networks must train in
# minutes on 2 CPU cores (about 5-7 s each at 30 epochs). The order is the partitions' and the
# ensemble's (ml.ensemble.bias_draw numbers the members by it).
ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            "tcn",
            "ml.architectures.build_tcn",
            "tab:blue",
            {"filters": 16, "dilations": (1, 2, 4, 8), "dropout": 0.1},
            PaperScores(rmse=1.118, mae=0.872, r2=0.937),
        ),
        Architecture(
            "transformer",
            "ml.architectures.build_transformer",
            "tab:orange",
            {"d_model": 16, "heads": 2, "ff_units": 32, "layers": 1, "dropout": 0.1},
            PaperScores(rmse=1.158, mae=0.912, r2=0.939),
        ),
        Architecture(
            "conv1d_lstm",
            "ml.architectures.build_conv1d_lstm",
            "tab:pink",
            {"filters": 16, "units": 16, "dropout": 0.1},
            PaperScores(rmse=1.092, mae=0.833, r2=0.938),
        ),
        Architecture(
            "gru",
            "ml.architectures.build_gru",
            "tab:red",
            {"units": 16, "layers": 1, "dropout": 0.1},
            PaperScores(rmse=1.027, mae=0.747, r2=0.943),
        ),
        Architecture(
            "bilstm",
            "ml.architectures.build_bilstm",
            "tab:purple",
            {"units": 12, "dropout": 0.1},
            PaperScores(rmse=1.234, mae=0.907, r2=0.919),
        ),
    )
}


def names() -> tuple[str, ...]:
    """Every architecture's name, in the list's order."""
    return tuple(ARCHITECTURES)


def architecture(name: str) -> Architecture:
    """The architecture called ``name``; raises naming the known ones."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; expected one of {sorted(ARCHITECTURES)}") from None
