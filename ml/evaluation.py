"""The test-year evaluation (2019-2023): every network, the ensemble and every baseline on the
same test windows, scored against climatology, and the summaries the evaluation reports.

``predict_test_years`` makes every prediction, ``score`` the long table (``ml.metrics.skill_table``
per model), ``overall_table`` one row per model beside the paper's Table 2, ``targets`` the
issue's test-year targets and ``baseline_verdict`` which models beat the best baseline that does
not read observed soil temperature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ml import architecture_catalog
from ml.metrics import TARGET_ARCHITECTURE, TARGET_ENSEMBLE, skill_table
from sources import catalog

# Baselines of the evaluation: what each one reads that a projection would not have.
BASELINES: dict[str, str] = {
    "climatology": "monthly climatology per band and layer, 2001-2018",
    "persistence": "the same calendar month a year before: READS OBSERVED soil temperature",
    "damped_persistence": "damped lag-1 anomaly persistence: READS OBSERVED soil temperature (the month before)",
    "ridge": "the status-quo ridge on the paper's windows (t-24..t-1, year and z)",
    "dl_ridge": "distributed-lag anomaly ridge, lags 0-23 (projects)",
    "thermal_core": "the calibrated conduction core alone (projects)",
}
OBSERVED_SOIL = ("persistence", "damped_persistence")


@dataclass
class TestYearPredictions:
    """Every model's predictions of the test windows (n rows, 4 layers, degC).

    ``target_month``, ``band`` and ``observed`` describe the windows; ``baselines`` maps a name
    of ``BASELINES`` to (n, 4); ``networks`` an architecture to (design, (members, n, 4)).
    """

    __test__ = False  # a result, not a pytest class

    target_month: np.ndarray
    band: np.ndarray
    observed: np.ndarray
    baselines: dict[str, np.ndarray]
    networks: dict[str, tuple[str, np.ndarray]]

    @property
    def ensemble(self) -> np.ndarray:
        """(n, 4): the mean over every network of every architecture."""
        return np.concatenate([members for _, members in self.networks.values()]).mean(axis=0)

    def shown(self) -> dict[str, np.ndarray]:
        """What the observed-vs-predicted figure draws: each architecture's seed mean, the
        ensemble and the core alone."""
        shown = {name: members.mean(axis=0) for name, (_, members) in self.networks.items()}
        return {**shown, "ensemble": self.ensemble, "thermal_core": self.baselines["thermal_core"]}


def predict_test_years(
    history: pl.DataFrame, paper_train, paper_test, residual_test, core_history: Path, trained: dict
) -> TestYearPredictions:
    """Predictions of the test windows by every baseline and every trained architecture.

    ``paper_train``/``paper_test`` are ``ml.windows.WindowSet``s, ``residual_test`` the residual
    design's ``ResidualWindows`` (the same target rows), ``core_history`` the conduction core's
    history run (parquet), ``trained`` architecture -> ``ml.ensemble.TrainedArchitecture``.
    """
    from ml.band_arrays import history_grid
    from ml.baselines import RidgeBaseline, climatology, damped_persistence, persistence_predict
    from ml.distributed_lag import fit_on_history
    from ml.ensemble import predict_members
    from ml.residual import DRIVERS
    from ml.scenario_members import read_history_run

    if len(residual_test) == 0:
        raise ValueError("no test windows: the history must reach into 2019-2023 to evaluate")
    if not np.allclose(paper_test.y, residual_test.observed, atol=1e-4):
        raise ValueError("the paper's and the residual design's test windows disagree: re-materialize training_windows")
    grid = history_grid(history).until(catalog.month64(catalog.TEST_LAST_TARGET_MONTH))
    row = np.searchsorted(grid.months, residual_test.target_month)
    band = residual_test.band

    def at_test(values: np.ndarray) -> np.ndarray:  # (T, B, 4) -> test rows (n, 4)
        return values[row, band]

    train = grid.months <= catalog.month64(catalog.TRAIN_LAST_TARGET_MONTH)
    observed = grid.select(catalog.TARGETS)
    ridge = RidgeBaseline().fit(
        paper_train.x, paper_train.band, paper_train.y, alpha="auto", target_month=paper_train.target_month
    )
    baselines = {
        "climatology": climatology(history).predict(band, residual_test.target_month),
        "persistence": persistence_predict(history, band, residual_test.target_month),
        "damped_persistence": at_test(damped_persistence(observed, grid.calendar_month, train)),
        "ridge": ridge.predict(paper_test.x, paper_test.band),
        "dl_ridge": at_test(fit_on_history(grid).predict(grid.select(DRIVERS), grid.calendar_month)),
        "thermal_core": at_test(read_history_run(core_history, grid.months)),
    }
    networks = {
        architecture: (networks.design, predict_members(networks, residual_test, paper_test))
        for architecture, networks in trained.items()
    }
    return TestYearPredictions(residual_test.target_month, band, residual_test.observed, baselines, networks)


def score(predictions: TestYearPredictions) -> pl.DataFrame:
    """The evaluation table: ``skill_table`` of every network (each seed and the seed mean), the
    ensemble and every baseline, against the climatology baseline."""
    year = predictions.target_month.astype("datetime64[Y]").astype(np.int64) + 1970
    clim = predictions.baselines["climatology"]

    def scored(name, values, kind, observed_soil=False):
        return skill_table(predictions.observed, values, clim, predictions.band, year, name, kind, observed_soil)

    return pl.concat(
        [
            *(scored(name, members, "network") for name, (_, members) in predictions.networks.items()),
            scored("ensemble", predictions.ensemble, "ensemble"),
            *(scored(name, p, "baseline", name in OBSERVED_SOIL) for name, p in predictions.baselines.items()),
        ]
    )


def paper_table() -> pl.DataFrame:
    """The paper's Table 2 for every architecture it has (``ml.architecture_catalog``)."""
    rows = [
        {"model": a.name, "paper_rmse": a.paper.rmse, "paper_mae": a.paper.mae, "paper_r2": a.paper.r2}
        for a in architecture_catalog.ARCHITECTURES.values()
        if a.paper is not None
    ]
    schema = {"model": pl.Utf8, "paper_rmse": pl.Float64, "paper_mae": pl.Float64, "paper_r2": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def overall_table(table: pl.DataFrame) -> pl.DataFrame:
    """One row per model: seed-mean (or single) scores with interval, skill, change vs climatology."""
    summary = table.filter(pl.col("member").is_null())
    overall = summary.filter(pl.col("scope") == "overall")
    clim = overall.filter(pl.col("model") == "climatology")["rmse"][0]
    worst_cell = (
        summary.filter(pl.col("scope") == "band_layer")
        .group_by("model")
        .agg(pl.col("skill").min().alias("min_cell_skill"))
    )
    return (
        overall.join(worst_cell, on="model", how="left")
        .join(paper_table().select("model", "paper_rmse"), on="model", how="left")
        .with_columns(((pl.col("rmse") / clim - 1.0) * 100).alias("vs_climatology_pct"))
        .select(
            "model",
            "kind",
            "members",
            "rmse",
            "rmse_sd",
            "rmse_low",
            "rmse_high",
            "skill",
            "vs_climatology_pct",
            "min_cell_skill",
            "uses_observed_soil_temperature",
            "paper_rmse",
        )
        .sort("rmse")
    )


def skill_pivot(table: pl.DataFrame, scope: str) -> pl.DataFrame:
    """Skill per model (rows) and band or layer (``scope``: columns "band 0", ...)."""
    rows = table.filter(pl.col("member").is_null(), pl.col("scope") == scope)
    return rows.pivot(on=scope, index="model", values="skill", sort_columns=True).rename(
        lambda name: name if name == "model" else f"{scope} {name}"
    )


def targets(overall: pl.DataFrame) -> dict[str, object]:
    """The issue's test-year targets: every architecture >= 10% and the ensemble >= 15% below climatology."""
    networks = overall.filter(pl.col("kind") == "network")
    ensemble = overall.filter(pl.col("kind") == "ensemble")
    worst = networks.sort("vs_climatology_pct", descending=True).row(0, named=True) if networks.height else None
    return {
        "worst_architecture": None if worst is None else f"{worst['model']} {worst['vs_climatology_pct']:+.1f}%",
        "every_architecture_10pct_below_climatology": bool(
            networks.height and (networks["vs_climatology_pct"] <= -100 * TARGET_ARCHITECTURE).all()
        ),
        "ensemble_vs_climatology": None if ensemble.is_empty() else f"{ensemble['vs_climatology_pct'][0]:+.1f}%",
        "ensemble_15pct_below_climatology": bool(
            ensemble.height and ensemble["vs_climatology_pct"][0] <= -100 * TARGET_ENSEMBLE
        ),
    }


def baseline_verdict(overall: pl.DataFrame) -> dict[str, object]:
    """Which models (networks and the ensemble) beat the best baseline that does not read
    observed soil temperature (``passed``: all of them), and which beat the best that does."""
    fair = overall.filter(pl.col("kind") == "baseline", ~pl.col("uses_observed_soil_temperature")).sort("rmse")
    best = fair.row(0, named=True)
    observed = overall.filter(pl.col("kind") == "baseline", pl.col("uses_observed_soil_temperature")).sort("rmse")
    models = overall.filter(pl.col("kind").is_in(["network", "ensemble"]))
    losing = models.filter(pl.col("rmse") >= best["rmse"])["model"].to_list()
    best_observed = observed.row(0, named=True) if observed.height else None
    return {
        "passed": not losing,
        "best_baseline": f"{best['model']} (RMSE {best['rmse']:.3f} K; {BASELINES[best['model']]})",
        "models_beating_it": models.filter(pl.col("rmse") < best["rmse"])["model"].to_list(),
        "models_not_beating_it": losing,
        "best_observed_soil_baseline": "none"
        if best_observed is None
        else f"{best_observed['model']} (RMSE {best_observed['rmse']:.3f} K; reads observed soil temperature)",
        "models_beating_the_observed_soil_baseline": []
        if best_observed is None
        else models.filter(pl.col("rmse") < best_observed["rmse"])["model"].to_list(),
    }
