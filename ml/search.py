"""Hyperparameter search for the residual networks within a budget (optuna), off by default.

Per architecture, on the TRAINING YEARS only: each trial trains one network
(``ml.residual.train_residual``) on the training windows, whose early stopping holds out the
latest training target months, and scores the trial by its best validation loss there (mean
squared scaled residual); the test years are never seen. Trial 0 is the architecture's default
(``ml.architecture_catalog``'s small hyperparameters and the configured learning rate), so the
record compares the default's validation loss with the best's. A budget of ``trials`` and
``timeout_seconds`` bounds it (whichever ends first); ``trials == 0`` searches nothing and
records so (``SearchResult.not_searched``). optuna (TPE, seeded) is imported only when a search runs.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ml import architecture_catalog
from ml.training_config import TrainingConfig

LEARNING_RATE = "learning_rate"
# The searched hyperparameters per architecture: name -> ("int", low, high, step) |
# ("float", low, high) | ("categorical", choices). Every default of the catalog lies inside.
SEARCH_SPACES: dict[str, dict[str, tuple]] = {
    "tcn": {"filters": ("int", 8, 48, 8), "dropout": ("float", 0.0, 0.3)},
    "transformer": {
        "d_model": ("categorical", (8, 16, 32)),
        "heads": ("categorical", (1, 2, 4)),
        "ff_units": ("categorical", (16, 32, 64)),
        "layers": ("int", 1, 2, 1),
        "dropout": ("float", 0.0, 0.3),
    },
    "conv1d_lstm": {"filters": ("int", 8, 32, 8), "units": ("int", 8, 32, 8), "dropout": ("float", 0.0, 0.3)},
    "gru": {"units": ("int", 8, 48, 8), "layers": ("int", 1, 2, 1), "dropout": ("float", 0.0, 0.3)},
    "bilstm": {"units": ("int", 4, 32, 4), "dropout": ("float", 0.0, 0.3)},
}
LEARNING_RATE_RANGE = (3e-4, 1e-2)  # searched on a log scale for every architecture
TRIAL_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.Utf8,
    "trial": pl.Int64,
    "state": pl.Utf8,
    "validation_loss": pl.Float64,
    "seconds": pl.Float64,
    "is_default": pl.Boolean,
    "is_best": pl.Boolean,
    "hyperparameters": pl.Utf8,  # JSON of the trial's hyperparameters and learning rate
    "searched": pl.Boolean,
    "reason": pl.Utf8,
}


@dataclass
class SearchResult:
    """What a search of one architecture found: its ``trials`` (number, state, validation loss,
    seconds, hyperparameters), the default's and the best's hyperparameters and validation
    losses; ``searched`` False (with ``reason``) when no search ran."""

    architecture: str
    searched: bool
    reason: str = ""
    budget: dict[str, float] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)
    default: dict[str, Any] = field(default_factory=dict)
    default_validation_loss: float | None = None
    best: dict[str, Any] = field(default_factory=dict)
    best_validation_loss: float | None = None

    @classmethod
    def not_searched(cls, architecture: str, reason: str, budget: dict[str, float] | None = None) -> SearchResult:
        return cls(architecture, False, reason, dict(budget or {}))

    @property
    def best_hyperparameters(self) -> dict[str, Any]:
        """The best trial's builder hyperparameters (without the learning rate)."""
        return {k: v for k, v in self.best.items() if k != LEARNING_RATE}

    @property
    def best_learning_rate(self) -> float | None:
        return self.best.get(LEARNING_RATE)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchResult:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def trials_frame(self) -> pl.DataFrame:
        """One row per trial (a single row saying "not searched" when none ran): the view
        ``evaluation.hyperparameter_search``."""
        import json

        if not self.searched:
            rows = [{"model": self.architecture, "searched": False, "reason": self.reason}]
            return pl.DataFrame(rows, schema=TRIAL_SCHEMA)
        best = min((t for t in self.trials if t["value"] is not None), key=lambda t: t["value"])["number"]
        rows = [
            {
                "model": self.architecture,
                "trial": t["number"],
                "state": t["state"],
                "validation_loss": t["value"],
                "seconds": t["seconds"],
                "is_default": t["number"] == 0,
                "is_best": t["number"] == best,
                "hyperparameters": json.dumps(t["params"], sort_keys=True),
                "searched": True,
                "reason": self.reason,
            }
            for t in self.trials
        ]
        return pl.DataFrame(rows, schema=TRIAL_SCHEMA)


def default_trial(architecture: str, config: TrainingConfig) -> dict[str, Any]:
    """The architecture's default as a point of its search space (plus the learning rate)."""
    small = architecture_catalog.architecture(architecture).small_hyperparameters
    return {**{name: small[name] for name in SEARCH_SPACES[architecture]}, LEARNING_RATE: config.learning_rate}


def _suggest(trial, architecture: str) -> dict[str, Any]:
    params = {}
    for name, (kind, *bounds) in SEARCH_SPACES[architecture].items():
        if kind == "int":
            low, high, step = bounds
            params[name] = trial.suggest_int(name, low, high, step=step)
        elif kind == "float":
            params[name] = trial.suggest_float(name, *bounds)
        else:
            params[name] = trial.suggest_categorical(name, list(bounds[0]))
    params[LEARNING_RATE] = trial.suggest_float(LEARNING_RATE, *LEARNING_RATE_RANGE, log=True)
    return params


def search(
    architecture: str,
    train,
    scaler,
    config: TrainingConfig,
    trials: int,
    timeout_seconds: float,
    seed: int = 0,
) -> SearchResult:
    """Search ``architecture``'s hyperparameters and learning rate on the residual design's
    training windows ``train`` (``ml.residual.ResidualWindows``, targets to 2018-12) with their
    ``scaler``, each trial a network trained as ``config`` says (its epochs, patience and
    validation fraction), within ``trials`` trials and ``timeout_seconds``."""
    from ml.residual import train_residual

    architecture = architecture_catalog.architecture(architecture).name
    budget = {"trials": trials, "timeout_seconds": timeout_seconds}
    if trials == 0:
        return SearchResult.not_searched(architecture, "not searched: trials is 0 (the search is off)", budget)
    if trials < 0 or timeout_seconds <= 0:
        raise ValueError(f"a search needs trials >= 0 and timeout_seconds > 0, got {trials} and {timeout_seconds}")
    if not config.validation_fraction > 0:
        raise ValueError("a search scores trials on the latest training months: validation_fraction must be > 0")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    default = default_trial(architecture, config)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(default)
    seconds: dict[int, float] = {}

    def objective(trial) -> float:
        params = _suggest(trial, architecture)
        started = time.perf_counter()
        settings = dataclasses.replace(config, learning_rate=params[LEARNING_RATE], seeds=1)
        hyperparameters = {k: v for k, v in params.items() if k != LEARNING_RATE}
        network = train_residual(architecture, train, scaler, settings, 0, hyperparameters)
        seconds[trial.number] = time.perf_counter() - started
        return float(min(network.history["val_loss"]))

    study.optimize(objective, n_trials=trials, timeout=timeout_seconds)
    done = [t for t in study.trials if t.value is not None]
    if not done:
        return SearchResult.not_searched(architecture, "no trial finished within the budget", budget)
    records = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "seconds": seconds.get(t.number),
            "params": dict(t.params),
        }
        for t in study.trials
    ]
    default_loss = next((t.value for t in done if t.number == 0), None)
    return SearchResult(
        architecture,
        True,
        f"{len(done)} trial(s) within {trials} trials and {timeout_seconds:g} s",
        budget,
        records,
        default,
        default_loss,
        dict(study.best_trial.params),
        float(study.best_value),
    )
