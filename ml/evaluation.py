"""The test-year evaluation (2019-01 to the history's last test month, 2023-12 at most): every
network, the ensemble and every baseline on the same test windows, scored against climatology,
and the summaries the evaluation reports.

``predict_test_years`` makes every prediction, ``score`` the long table (``ml.metrics.skill_table``
per model, over every scope: overall, latitude band of the units, layer, band x layer, unit),
``overall_table`` one row per model beside the paper's Table 2, ``layer_targets`` the issue's
targets per soil layer, ``paper_comparison`` says how the data differ from the paper's, and
``baseline_verdict`` which models beat the best baseline that does not read observed soil
temperature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from ml import architecture_catalog
from ml.metrics import TARGET_ARCHITECTURE, TARGET_ENSEMBLE, skill_table
from ml.unit_arrays import Units
from sources import catalog

# Baselines of the evaluation: what each one reads that a projection would not have.
BASELINES: dict[str, str] = {
    "climatology": "monthly climatology per unit and layer, 2001-2018",
    "persistence": "the same calendar month a year before: READS OBSERVED soil temperature",
    "damped_persistence": "damped lag-1 anomaly persistence: READS OBSERVED soil temperature (the month before)",
    "ridge": "the status-quo ridge on the paper's windows (t-24..t-1, year and z where r_thermal exists)",
    "dl_ridge": "distributed-lag anomaly ridge, lags 0-23 (projects)",
    "thermal_core": "the calibrated conduction core alone (projects)",
}
OBSERVED_SOIL = ("persistence", "damped_persistence")


@dataclass
class TestYearPredictions:
    """Every model's predictions of the test windows (n rows, 4 layers, degC).

    ``target_month``, ``unit`` (positions in ``units``) and ``observed`` describe the windows;
    ``baselines`` maps a name of ``BASELINES`` to (n, 4); ``networks`` an architecture to
    (design, (members, n, 4)).
    """

    __test__ = False  # a result, not a pytest class

    target_month: np.ndarray
    unit: np.ndarray
    observed: np.ndarray
    baselines: dict[str, np.ndarray]
    networks: dict[str, tuple[str, np.ndarray]]
    units: Units = field(default_factory=Units.bands)

    @property
    def ensemble(self) -> np.ndarray:
        """(n, 4): the mean over every network of every architecture."""
        return np.concatenate([members for _, members in self.networks.values()]).mean(axis=0)

    @property
    def unit_ids(self) -> np.ndarray:
        return self.units.ids[self.unit]

    @property
    def band(self) -> np.ndarray:
        """(n,) the band of each window's unit (``ml.unit_arrays.OUTSIDE_BANDS`` outside every band)."""
        return self.units.band[self.unit]

    def shown(self) -> dict[str, np.ndarray]:
        """What the observed-vs-predicted figure draws: each architecture's seed mean, the
        ensemble and the core alone."""
        shown = {name: members.mean(axis=0) for name, (_, members) in self.networks.items()}
        return {**shown, "ensemble": self.ensemble, "thermal_core": self.baselines["thermal_core"]}


def predict_test_years(
    history: pl.DataFrame,
    units: Units,
    drivers: tuple[str, ...],
    paper_train,
    paper_test,
    residual_test,
    core_history: Path,
    trained: dict,
) -> TestYearPredictions:
    """Predictions of the test windows by every baseline and every trained architecture.

    ``units`` is the history's units table, ``drivers`` the model inputs' channels (drivers and
    soil water); ``paper_train``/``paper_test`` are ``ml.windows.WindowSet``s, ``residual_test``
    the residual design's ``ResidualWindows`` (the same target rows), ``core_history`` the
    conduction core's history run (parquet), ``trained`` architecture ->
    ``ml.ensemble.TrainedArchitecture``.
    """
    from ml.baselines import RidgeBaseline, climatology, damped_persistence, persistence_predict
    from ml.distributed_lag import fit_on_history
    from ml.ensemble import predict_members
    from ml.scenario_members import read_history_run
    from ml.unit_arrays import history_grid

    if len(residual_test) == 0:
        raise ValueError("no test windows: the history must reach into 2019-2023 to evaluate")
    if not np.allclose(paper_test.y, residual_test.observed, atol=1e-4):
        raise ValueError("the paper's and the residual design's test windows disagree: re-materialize training_windows")
    grid = history_grid(history, units, (*drivers, *catalog.TARGETS))
    grid = grid.until(catalog.month64(catalog.TEST_LAST_TARGET_MONTH))
    row = np.searchsorted(grid.months, residual_test.target_month)
    position = residual_test.unit
    ids = units.ids[position]

    def at_test(values: np.ndarray) -> np.ndarray:  # (T, U, 4) -> test rows (n, 4)
        return values[row, position]

    train = grid.months <= catalog.month64(catalog.TRAIN_LAST_TARGET_MONTH)
    observed = grid.select(catalog.TARGETS)
    ridge = RidgeBaseline().fit(
        paper_train.x, paper_train.unit, paper_train.y, alpha="auto", target_month=paper_train.target_month
    )
    lagged = fit_on_history(grid, drivers)
    baselines = {
        "climatology": climatology(history).predict(ids, residual_test.target_month),
        "persistence": persistence_predict(history, ids, residual_test.target_month),
        "damped_persistence": at_test(damped_persistence(observed, grid.calendar_month, train)),
        "ridge": ridge.predict(paper_test.x, paper_test.unit),
        "dl_ridge": at_test(lagged.predict(grid.select(drivers), grid.calendar_month)),
        "thermal_core": at_test(read_history_run(core_history, grid.months, units)),
    }
    networks = {
        architecture: (networks.design, predict_members(networks, residual_test, paper_test))
        for architecture, networks in trained.items()
    }
    return TestYearPredictions(residual_test.target_month, position, residual_test.observed, baselines, networks, units)


def score(predictions: TestYearPredictions, observed_soil: tuple[str, ...] = OBSERVED_SOIL) -> pl.DataFrame:
    """The evaluation table: ``skill_table`` of every network (each seed and the seed mean), the
    ensemble and every baseline, against the climatology baseline; the baselines named in
    ``observed_soil`` are marked as reading observed soil temperature."""
    year = predictions.target_month.astype("datetime64[Y]").astype(np.int64) + 1970
    clim = predictions.baselines["climatology"]
    band, unit = predictions.band, predictions.unit_ids

    def scored(name, values, kind, observed_soil=False):
        return skill_table(predictions.observed, values, clim, band, year, name, kind, observed_soil, unit=unit)

    return pl.concat(
        [
            *(scored(name, members, "network") for name, (_, members) in predictions.networks.items()),
            scored("ensemble", predictions.ensemble, "ensemble"),
            *(scored(name, p, "baseline", name in observed_soil) for name, p in predictions.baselines.items()),
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
    """Skill per model (rows) and band or layer (``scope``: columns "band 0", ..., and
    "band outside" for the units outside every band)."""
    rows = table.filter(pl.col("member").is_null(), pl.col("scope") == scope)
    if scope == "band":
        rows = rows.with_columns(pl.col("band").cast(pl.Utf8).fill_null("outside"))
    return rows.pivot(on=scope, index="model", values="skill", sort_columns=True).rename(
        lambda name: name if name == "model" else f"{scope} {name}"
    )


def layer_table(table: pl.DataFrame) -> pl.DataFrame:
    """Per soil layer and model (seed means): RMSE, its spread over seeds and its interval, and
    the RMSE against climatology's in the same layer (``vs_climatology_pct``, negative: better)."""
    rows = table.filter(pl.col("member").is_null(), pl.col("scope") == "layer")
    clim = rows.filter(pl.col("model") == "climatology").select("layer", pl.col("rmse").alias("_clim"))
    return (
        rows.join(clim, on="layer")
        .with_columns(((pl.col("rmse") / pl.col("_clim") - 1.0) * 100).alias("vs_climatology_pct"))
        .select("layer", "model", "kind", "members", "rmse", "rmse_sd", "rmse_low", "rmse_high", "vs_climatology_pct")
        .sort("layer", "rmse")
    )


def layer_targets(
    table: pl.DataFrame,
    architecture_target: float = TARGET_ARCHITECTURE,
    ensemble_target: float | None = TARGET_ENSEMBLE,
) -> dict[str, object]:
    """The issue's targets, per soil layer: every architecture's seed-mean RMSE at least
    ``architecture_target`` below monthly climatology's, and the ensemble's ``ensemble_target``
    (None: no separate ensemble target). ``table`` is ``score``'s."""
    layers = layer_table(table)
    per_layer, every_architecture, ensemble_ok = [], True, True
    for layer in sorted(layers["layer"].unique().to_list()):
        rows = layers.filter(pl.col("layer") == layer)
        networks = rows.filter(pl.col("kind") == "network").sort("vs_climatology_pct", descending=True)
        ensemble = rows.filter(pl.col("kind") == "ensemble")
        worst = networks.row(0, named=True) if networks.height else None
        architectures_met = bool(networks.height) and bool(
            (networks["vs_climatology_pct"] <= -100 * architecture_target).all()
        )
        ensemble_pct = ensemble["vs_climatology_pct"][0] if ensemble.height else None
        ensemble_met = ensemble_pct is not None and ensemble_pct <= -100 * (ensemble_target or architecture_target)
        every_architecture &= architectures_met
        ensemble_ok &= ensemble_met
        per_layer.append(
            {
                "layer": layer,
                "climatology_rmse": round(float(rows.filter(pl.col("model") == "climatology")["rmse"][0]), 3),
                "worst_architecture": None
                if worst is None
                else f"{worst['model']} {worst['vs_climatology_pct']:+.1f}%",
                "ensemble_vs_climatology": None if ensemble_pct is None else f"{ensemble_pct:+.1f}%",
                "architectures_met": architectures_met,
                "ensemble_met": ensemble_met,
            }
        )
    architecture_key = f"every_architecture_{round(100 * architecture_target)}pct_below_climatology_every_layer"
    ensemble_key = f"ensemble_{round(100 * (ensemble_target or architecture_target))}pct_below_climatology_every_layer"
    return {architecture_key: every_architecture, ensemble_key: ensemble_ok, "per_layer": per_layer}


def paper_comparison(overall: pl.DataFrame, units: Units, months: np.ndarray, inputs) -> dict[str, object]:
    """The paper's Table 2 beside this evaluation's pooled RMSE (all units and layers), per
    architecture, and a sentence saying how the data differ. ``months`` are the test windows'
    target months, ``inputs`` the ``ml.model_inputs.ModelInputs``."""
    rows = overall.filter(pl.col("paper_rmse").is_not_null()).select("model", "rmse", "paper_rmse")
    span = f"{np.min(months)}..{np.max(months)}"
    what = "latitude bands (the paper's)" if units.are_bands else f"{units.kind}s"
    derived = f"; derived: {', '.join(inputs.derived)}" if inputs.derived else ""
    absent = f"; absent: {', '.join(inputs.absent)}" if inputs.absent else ""
    return {
        "table_2": {
            row["model"]: {"here": round(row["rmse"], 3), "paper": row["paper_rmse"]}
            for row in rows.iter_rows(named=True)
        },
        "how_the_data_differ": (
            "The paper's Table 2 scores its networks on six latitude-band means of ERA5-Land over the test "
            "years 2019-2023, with every ERA5-Land driver as input and absolute targets. Here: "
            f"{units.count} {what}, test months {span}, inputs {', '.join(inputs.drivers)}{derived}{absent}; "
            "a basin is a much smaller area than a band (its weather is noisier and less averaged), "
            "and these networks are residuals on the conduction core."
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
