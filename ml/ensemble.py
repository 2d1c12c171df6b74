"""An architecture's networks, one per seed, trained, saved and loaded together.

A trained architecture is a folder holding ``ensemble.json`` (design, members, who wrote it) and
one sub-folder per member (``member_0`` ..), each a network of the design it was trained with:
``ml.residual`` (the default) or ``ml.training`` (the paper's path). Member ``s`` is seeded with
``TrainingConfig.member_seed(s)``.

Members of the ensemble (architecture x seed) also differ in the bias-correction bootstrap draw
of their scenario drivers (``ml.forcing_bootstrap``): ``bias_draw`` numbers them seed-major, so
draw 0 (the unperturbed correction) is the first architecture's first network and the draws an
ensemble of S seeds uses do not change when seeds are added. Keras is imported inside functions.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml import architecture_catalog
from ml.training_config import TrainingConfig

ENSEMBLE_FILE = "ensemble.json"


def member_folder(index: int) -> str:
    return f"member_{index}"


def bias_draw(architecture: str, member: int) -> int:
    """The bias-correction bootstrap draw of network ``member`` of ``architecture`` (in the order
    of ``ml.architecture_catalog``)."""
    order = architecture_catalog.names()
    return member * len(order) + order.index(architecture_catalog.architecture(architecture).name)


@dataclass
class TrainedArchitecture:
    """The networks of one architecture (``members``: ``ResidualModel`` or ``TrainedModel``)."""

    architecture: str
    design: str
    members: list[Any]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> list[float]:
        return [float(m.seconds) for m in self.members]

    @property
    def epochs_run(self) -> list[int]:
        return [len(m.history.get("loss", [])) for m in self.members]


def train_architecture(
    architecture: str,
    config: TrainingConfig,
    residual_train=None,
    residual_scaler=None,
    paper_train=None,
    paper_stats=None,
    hyperparameters: dict | None = None,
    n_units: int | None = None,
) -> TrainedArchitecture:
    """``config.seeds`` networks of ``architecture`` in ``config.design``: residual networks on
    ``residual_train`` (``ml.residual.ResidualWindows``) with its ``residual_scaler``, or the
    paper's on ``paper_train`` (``ml.windows.WindowSet``) with ``paper_stats`` and a unit
    embedding of ``n_units`` rows."""
    members = []
    for index in range(config.seeds):
        if config.design == "residual":
            from ml.residual import train_residual

            if residual_train is None or residual_scaler is None:
                raise ValueError("the residual design needs residual training windows and their scaler")
            members.append(
                train_residual(architecture, residual_train, residual_scaler, config, index, hyperparameters)
            )
        else:
            from ml.training import train_model

            if paper_train is None or paper_stats is None:
                raise ValueError("the paper design needs the paper's training windows and statistics")
            seeded = dataclasses.replace(config, seed=config.member_seed(index))
            members.append(train_model(architecture, paper_train, paper_stats, seeded, hyperparameters, n_units))
    return TrainedArchitecture(architecture, config.design, members)


def save_architecture(trained: TrainedArchitecture, folder: Path) -> None:
    """Every member in its sub-folder and ``ensemble.json`` (the caller makes it atomic)."""
    from ml.residual import save_residual
    from ml.training import save_trained

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, member in enumerate(trained.members):
        target = folder / member_folder(index)
        if trained.design == "residual":
            save_residual(dataclasses.replace(member, provenance=trained.provenance), target)
        else:
            save_trained(dataclasses.replace(member, provenance=trained.provenance), target)
    record = {
        "architecture": trained.architecture,
        "design": trained.design,
        "members": [member_folder(i) for i in range(len(trained.members))],
        "seconds": trained.seconds,
        "epochs_run": trained.epochs_run,
        "provenance": trained.provenance,
    }
    (folder / ENSEMBLE_FILE).write_text(json.dumps(record, indent=2))


def read_record(folder: Path) -> dict[str, Any]:
    """``ensemble.json`` of a trained-architecture folder."""
    path = Path(folder) / ENSEMBLE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no {ENSEMBLE_FILE}: not a trained architecture (train it again)")
    return json.loads(path.read_text())


def load_architecture(folder: Path, members: int | None = None) -> TrainedArchitecture:
    """The architecture saved in ``folder``; only its first ``members`` networks if given."""
    from ml.residual import load_residual
    from ml.training import load_trained

    folder = Path(folder)
    record = read_record(folder)
    names = record["members"][:members]
    load = load_residual if record["design"] == "residual" else load_trained
    return TrainedArchitecture(
        record["architecture"], record["design"], [load(folder / name) for name in names], record.get("provenance", {})
    )


def predict_members(trained: TrainedArchitecture, residual_windows=None, paper_windows=None) -> np.ndarray:
    """(members, n, 4) degC: every member on the same windows of its design."""
    from ml.training import predict

    if trained.design == "residual":
        if residual_windows is None:
            raise ValueError(f"{trained.architecture} is a residual design: pass residual windows")
        return np.stack([member.predict(residual_windows) for member in trained.members])
    if paper_windows is None:
        raise ValueError(f"{trained.architecture} is the paper design: pass the paper's windows")
    return np.stack([predict(member, paper_windows) for member in trained.members])
