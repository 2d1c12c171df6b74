"""PNG figures of the method and its results, after the paper's Figures 4-11.

* ``bias_correction_figure``: one band's reanalysis, raw and corrected model series (Figure 11);
* ``observed_vs_predicted_figure``: bands x layers of one test year, observed and each model
  (Figure 4);
* ``projection_figure``: bands x layers of annual-mean soil temperature for one RCP: the
  reanalysis 2001-2023, the ensemble's hindcast on the scenario's own forcing (dashed) and its
  projection 2024-2100 with the members' 5-95% range, each architecture's seed mean and the
  reference models (Figures 5-9);
* ``feature_importance_figure``: top features by mean |SHAP|, in the units it was computed in
  (Figure 10);
* ``active_layer_figure``: active-layer thickness per band over time, by scenario;
* ``perfect_model_figure``: the perfect-model validation, truth against the ensemble.

Figures are drawn per latitude band. Where the spatial units are not bands (basins, cells), a
band's panel shows the AREA-WEIGHTED MEAN of the units in it (``band_groups``), and the units
outside every band are one more group of their own ("outside the bands"): 96 basins stay
readable as at most seven panels, and every unit counts, weighted by its area.

One backend and one resolution for all: a bare ``matplotlib.figure.Figure`` (Agg, imported
inside each function, so importing this module costs nothing and pyplot's global state is
never touched) saved at ``DPI``. A model has the same colour in every figure
(``model_colour``). Each function writes the PNG to ``path`` and returns it; making the
write atomic (a temporary path, renamed into place with the asset's other outputs) is the
caller's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from ml import architecture_catalog
from ml.active_layer import MAX_DEPTH_M
from ml.bias_correction import DEFAULT_OVERLAP, UNITS
from ml.projections import ENSEMBLE_MODEL, REFERENCE_MODELS
from ml.unit_arrays import OUTSIDE_BANDS, Units
from sources import catalog

DPI = 100
# The reanalysis (what is observed) is green in every figure; no model or scenario is.
REANALYSIS_COLOUR = "tab:green"
OBSERVED_COLOUR = REANALYSIS_COLOUR
ENSEMBLE_COLOUR = "black"
RAW_COLOUR = "tab:red"
CORRECTED_COLOUR = "tab:blue"
YEARS_AFTER_OVERLAP = 5  # the bias-correction figure runs a few years past the overlap
# The IPCC AR5 colours of the pathways: dark blue, light blue, orange, red.
SCENARIO_COLOURS: dict[str, str] = {
    "reanalysis": REANALYSIS_COLOUR,
    "historical": "tab:gray",
    "rcp26": "navy",
    "rcp45": "deepskyblue",
    "rcp60": "tab:orange",
    "rcp85": "tab:red",
}
# One colour per model in every figure, so a model is recognised across figures (a note once
# named the wrong model because two figures coloured them differently). The architectures'
# colours are in ml.architecture_catalog; these are the other models'.
MODEL_COLOURS: dict[str, str] = {
    "ensemble": ENSEMBLE_COLOUR,
    ENSEMBLE_MODEL: ENSEMBLE_COLOUR,
    "thermal_core": "dimgray",
    "dl_ridge": "goldenrod",
    "ridge": "tab:brown",
    "climatology": "tab:gray",
    "persistence": "tab:olive",
    "damped_persistence": "tab:cyan",
}
_EXTRA_COLOURS = ("navy", "teal", "maroon", "darkkhaki", "slateblue", "sienna")
# active-layer flags other than "ok" (ml.active_layer): marker, meaning
FLAG_MARKERS: dict[str, tuple[str, str]] = {
    "all_thawed": ("^", f"thaws below {MAX_DEPTH_M:g} m: talik or deeper ALT (a lower bound)"),
    "none_thawed": ("v", "the surface never thaws"),
    "multiple_crossings": ("D", "several 0 degC crossings"),
    "incomplete": ("x", "incomplete year (no ALT)"),
}
LAYER_LABELS: tuple[str, ...] = tuple(f"{top:g}-{bottom:g} m" for top, bottom in catalog.SOIL_LAYERS_M)


def model_colour(model: str) -> str:
    """The colour of ``model`` in every figure: an architecture's from ``ml.architecture_catalog``,
    another model's from MODEL_COLOURS; any other name gets a stable pick."""
    if model in architecture_catalog.ARCHITECTURES:
        return architecture_catalog.ARCHITECTURES[model].colour
    if model in MODEL_COLOURS:
        return MODEL_COLOURS[model]
    return _EXTRA_COLOURS[sum(map(ord, model)) % len(_EXTRA_COLOURS)]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def save_png(figure, path: Path | str) -> Path:
    """Write ``figure`` as PNG at ``DPI`` to ``path`` (any name: the format is explicit)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI)
    return path


def _label_band_layer_axis(axis, row: int, layer: int, band: int) -> None:
    """Zero line, layer title on the top row, band label on the first column of a band x layer grid."""
    axis.axhline(0.0, color="grey", lw=0.5, ls=":")
    if row == 0:
        axis.set_title(f"layer {layer}: {LAYER_LABELS[layer]}", fontsize="medium")
    if layer == 0:
        axis.set_ylabel(f"{_band_label(band)}\n(degC)", fontsize="small")
    axis.tick_params(labelsize="x-small")


def _band_rows(bands=None) -> list[int]:
    """The bands to draw: every band that holds a row drawn (``bands``: their bands; None:
    every band), then the group of units outside every band where there is one. A band
    without units (no basin lies in band 5) gets no empty panel."""
    if bands is None:
        return [b.index for b in catalog.BANDS]
    present = set(np.unique(np.asarray(bands)).tolist())
    return [b.index for b in catalog.BANDS if b.index in present] + (
        [OUTSIDE_BANDS] if OUTSIDE_BANDS in present else []
    )


def _band_label(band: int) -> str:
    if band == OUTSIDE_BANDS:
        return "outside\nthe bands"
    b = catalog.BANDS[band]
    return f"band {band}\n{b.south:.1f}-{b.north:.1f}N"


def band_groups(frame: pl.DataFrame, units: Units, keys: tuple[str, ...], values: tuple[str, ...]) -> pl.DataFrame:
    """Per ``keys`` and band: the area-weighted means of ``values`` over the units of each band
    (nulls skipped), the units outside every band as band ``OUTSIDE_BANDS``. ``frame`` has
    ``unit`` and the keys and values; on bands (a unit per band) the values are the units' own."""
    weights = units.frame.select(
        "unit", pl.col("area_km2").alias("_weight"), pl.col("band").fill_null(OUTSIDE_BANDS).alias("_group")
    )
    joined = frame.drop("band", strict=False).join(weights, on="unit", how="inner")

    def weighted(column: str) -> pl.Expr:
        present = pl.col(column).is_not_null() & pl.col(column).is_not_nan()
        total = pl.col("_weight").filter(present).sum()
        return ((pl.col(column) * pl.col("_weight")).filter(present).sum() / total).alias(column)

    return (
        joined.group_by(*keys, "_group")
        .agg(weighted(column) for column in values)
        .rename({"_group": "band"})
        .sort(*keys, "band")
    )


def _as_months(month) -> np.ndarray:
    if isinstance(month, pl.Series):
        month = month.to_numpy()
    return np.asarray(month).astype("datetime64[M]")


def _band_layer_grid(title_rows: int, n_layers: int):
    figure = _figure(3.2 * n_layers, 1.9 * title_rows)
    axes = figure.subplots(title_rows, n_layers, sharex=True, squeeze=False)
    return figure, axes


def _unit(variable: str) -> str:
    return "m3 m-3" if variable in catalog.WATER_CONTENT else UNITS.get(variable, "")


def _unit_series(frame: pl.DataFrame, unit: int, variable: str, first: date, last: date) -> pl.DataFrame:
    if variable not in frame.columns:
        raise ValueError(f"figure needs column {variable}; frame has {frame.columns}")
    if "scenario" in frame.columns and frame["scenario"].n_unique() > 1:
        raise ValueError(f"figure shows one scenario; got {sorted(frame['scenario'].unique().to_list())}")
    return (
        frame.filter(pl.col("unit") == unit, pl.col("month").is_between(first, last))
        .select("month", variable)
        .sort("month")
    )


def bias_correction_figure(
    reference: pl.DataFrame,
    raw: pl.DataFrame,
    corrected: pl.DataFrame,
    unit: int,
    variables: tuple[str, ...] = ("t_air", "q_latent", "p_total", "w_1"),
    *,
    path: Path | str,
    overlap: tuple[date, date] = DEFAULT_OVERLAP,
) -> Path:
    """Monthly series of one spatial unit (a band on the demo), as the paper's Figure 11:
    reanalysis (green), raw model (red) and bias-corrected model (blue), one panel per variable,
    over the overlap and YEARS_AFTER_OVERLAP years after it; the frames are keyed by ``unit``.
    For the w_k panels `corrected` must already carry the split soil water
    (ml.soil_water.split_soil_water); bias_correct leaves w_k as they came."""
    first, last = overlap[0], catalog.add_months(overlap[1], 12 * YEARS_AFTER_OVERLAP)
    scenario = raw["scenario"][0] if "scenario" in raw.columns and raw.height else "scenario"
    height = 2.4 * len(variables)
    figure = _figure(10, height)
    axes = figure.subplots(len(variables), 1, sharex=True, squeeze=False)
    for axis, variable in zip(axes[:, 0], variables, strict=True):
        for frame, colour, label in (
            (reference, REANALYSIS_COLOUR, "ERA5-Land"),
            (raw, RAW_COLOUR, f"{scenario} raw"),
            (corrected, CORRECTED_COLOUR, f"{scenario} bias-corrected"),
        ):
            series = _unit_series(frame, unit, variable, first, last)
            axis.plot(series["month"].to_list(), series[variable].to_list(), color=colour, lw=0.9, label=label)
        axis.axvline(overlap[1], color="grey", lw=0.6, ls="--")  # end of the training overlap
        axis.set_ylabel(f"{variable}\n({_unit(variable)})")
    figure.suptitle(f"Unit {unit}: quantile mapping of {scenario} onto ERA5-Land")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.965), ncol=3, fontsize="small")
    figure.tight_layout(rect=(0, 0, 1, 0.94))
    return save_png(figure, path)


def observed_vs_predicted_figure(
    month,
    band,
    observed: np.ndarray,
    predicted: Mapping[str, np.ndarray],
    year: int,
    path: Path | str,
    weight: np.ndarray | None = None,
) -> Path:
    """Observed (black) and each model's predicted monthly soil temperature through ``year``.

    A grid of the bands (rows, south at the top; units outside every band last) by the four
    soil layers (columns), as the paper's Figure 4 for the last test year. ``month`` (n,) is the
    month each row predicts (datetime64[M], dates or a polars Date Series), ``band`` (n,) its
    band (``OUTSIDE_BANDS`` outside them), ``observed`` (n, 4) and each ``predicted[model]``
    (n, 4) degC in the same row order. Rows of one band and month (several units) are averaged,
    weighted by ``weight`` (n,) (the units' areas; default equal). Raises if ``year`` has no rows
    or a shape does not match.
    """
    months = _as_months(month)
    bands = np.asarray(band).astype(np.int64)
    observed = np.asarray(observed, dtype=np.float64)
    n_layers = len(catalog.TARGETS)
    if months.shape != bands.shape or observed.shape != (bands.shape[0], n_layers):
        raise ValueError(f"month {months.shape}, band {bands.shape}, observed {observed.shape} do not match")
    predicted = {name: np.asarray(values, dtype=np.float64) for name, values in predicted.items()}
    for name, values in predicted.items():
        if values.shape != observed.shape:
            raise ValueError(f"predicted[{name!r}] has shape {values.shape}, observed {observed.shape}")
    in_year = months.astype("datetime64[Y]").astype(np.int64) + 1970 == year
    if not in_year.any():
        raise ValueError(f"no rows in {year}")
    weight = np.ones(len(bands)) if weight is None else np.asarray(weight, dtype=np.float64)

    def group_mean(values: np.ndarray, selected: np.ndarray, calendar: np.ndarray) -> np.ndarray:
        """(12, 4) weighted mean per calendar month of the selected rows (NaN where none)."""
        w = weight[selected][:, None]
        total = np.zeros((12, values.shape[1]))
        mass = np.zeros((12, 1))
        np.add.at(total, calendar, values[selected] * w)
        np.add.at(mass, calendar, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / mass

    rows = _band_rows(bands)
    figure, axes = _band_layer_grid(len(rows), n_layers)
    for r, b in enumerate(rows):
        selected = np.flatnonzero(in_year & (bands == b))
        calendar = months[selected].astype(np.int64) % 12
        present = np.unique(calendar)
        x = present + 1  # calendar month 1-12
        means = {"observed": group_mean(observed, selected, calendar)}
        means.update({name: group_mean(values, selected, calendar) for name, values in predicted.items()})
        for k in range(n_layers):
            axis = axes[r, k]
            if selected.size == 0:
                axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes, color="grey")
            else:
                axis.plot(x, means["observed"][present, k], color=OBSERVED_COLOUR, lw=2.0, label="observed (ERA5-Land)")
                for name in predicted:
                    axis.plot(x, means[name][present, k], color=model_colour(name), lw=1.0, label=name)
            _label_band_layer_axis(axis, r, k, b)
    for axis in axes[-1]:
        axis.set_xticks(range(1, 13), list("JFMAMJJASOND"))
        axis.set_xlim(0.5, 12.5)
        axis.set_xlabel(f"month of {year}", fontsize="small")
    _legend(figure, axes)
    figure.suptitle(f"Observed and predicted soil temperature, {year}", x=0.02, ha="left")
    # fixed margins: tight_layout measures every tick label of the 24 panels and costs seconds
    figure.subplots_adjust(left=0.09, right=0.99, bottom=0.07, top=0.92, wspace=0.25, hspace=0.15)
    return save_png(figure, path)


def _legend(figure, axes, anchor: tuple[float, float] = (0.99, 0.99), loc: str = "upper right") -> None:
    handles, labels = {}, []
    for axis in axes.ravel():
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if handles:
        figure.legend(
            [handles[label] for label in labels],
            labels,
            loc=loc,
            bbox_to_anchor=anchor,
            ncol=min(len(labels), 6),
            fontsize="small",
            frameon=False,
        )


def _annual(frame: pl.DataFrame, keys: tuple[str, ...]) -> pl.DataFrame:
    """Annual means of complete years (12 months) per ``keys``, band and year."""
    return (
        frame.with_columns(
            pl.col("month").cast(pl.Date).dt.year().alias("year"),
            *(pl.col(c).cast(pl.Float64).fill_nan(None) for c in catalog.TARGETS),
        )
        .group_by(*keys, "band", "year")
        .agg(pl.len().alias("_n"), *(pl.col(c).mean() for c in catalog.TARGETS))
        .filter(pl.col("_n") == 12)
        .drop("_n")
        .sort(*keys, "band", "year")
    )


def _annual_members(projections: pl.DataFrame, scenario: str) -> pl.DataFrame:
    """Annual means per model, member, band and year of one scenario's member rows."""
    catalog.require_columns(
        projections, ("scenario", "model", "member", "band", "month", *catalog.TARGETS), "projection frame"
    )
    rows = projections.filter(pl.col("scenario") == scenario, pl.col("model") != ENSEMBLE_MODEL)
    if rows.height == 0:
        available = sorted(projections["scenario"].unique().to_list())
        raise ValueError(f"no member projections for {scenario!r}; scenarios present: {available}")
    return _annual(rows, ("model", "member"))


def projection_figure(
    projections: pl.DataFrame,
    scenario: str,
    path: Path | str,
    history: pl.DataFrame | None = None,
    first_projected_year: int = catalog.PROJECTION_FIRST_MONTH.year,
    units: Units | None = None,
) -> Path:
    """Annual-mean soil temperature of one scenario, bands (rows) x layers (columns).

    The ensemble mean (black; dashed over the hindcast years before ``first_projected_year``,
    which run on the climate model's own historical weather) with the 5-95% range of its
    members' annual means (grey), each architecture's seed mean (thin, its colour), the
    reference models (dotted) and, if ``history`` (band, month, t_soil_k) is given, the
    reanalysis' annual means (green). Everything is computed here from the member rows, so
    ``ensemble_mean`` rows in ``projections`` are ignored. Only complete years are drawn. For
    ``units`` that are not bands each band shows its units' area-weighted mean (``band_groups``).
    """
    if units is not None and not units.are_bands:
        projections = band_groups(
            projections.filter(pl.col("scenario") == scenario, pl.col("model") != ENSEMBLE_MODEL),
            units,
            ("scenario", "model", "member", "month"),
            catalog.TARGETS,
        )
        if history is not None:
            history = band_groups(history, units, ("month",), catalog.TARGETS)
    annual = _annual_members(projections, scenario)
    networks = annual.filter(~pl.col("model").is_in(REFERENCE_MODELS))
    if networks.height == 0:
        raise ValueError(f"{scenario!r} has no network member to draw")
    ensemble = (
        networks.group_by("band", "year")
        .agg(
            *(pl.col(c).mean().alias(c) for c in catalog.TARGETS),
            *(pl.col(c).quantile(0.05, interpolation="linear").alias(f"{c}_q05") for c in catalog.TARGETS),
            *(pl.col(c).quantile(0.95, interpolation="linear").alias(f"{c}_q95") for c in catalog.TARGETS),
        )
        .sort("band", "year")
    )
    architectures = (
        networks.group_by("model", "band", "year")
        .agg(pl.col(c).mean() for c in catalog.TARGETS)
        .sort("model", "band", "year")
    )
    references = annual.filter(pl.col("model").is_in(REFERENCE_MODELS))
    observed = (
        None if history is None else _annual(history.with_columns(pl.lit("reanalysis").alias("_source")), ("_source",))
    )

    rows, n_layers = _band_rows(annual["band"].to_numpy()), len(catalog.TARGETS)
    figure, axes = _band_layer_grid(len(rows), n_layers)
    for r, b in enumerate(rows):
        mean = ensemble.filter(pl.col("band") == b)
        for k, column in enumerate(catalog.TARGETS):
            axis = axes[r, k]
            for model in sorted(architectures["model"].unique().to_list()):
                series = architectures.filter(pl.col("model") == model, pl.col("band") == b)
                axis.plot(series["year"], series[column], color=model_colour(model), lw=0.7, alpha=0.8, label=model)
            for model in REFERENCE_MODELS:
                series = references.filter(pl.col("model") == model, pl.col("band") == b)
                if series.height:
                    axis.plot(series["year"], series[column], color=model_colour(model), lw=0.9, ls=":", label=model)
            years = mean["year"].to_numpy()
            axis.fill_between(
                years,
                mean[f"{column}_q05"].to_numpy(),
                mean[f"{column}_q95"].to_numpy(),
                color="grey",
                alpha=0.3,
                lw=0,
                label="ensemble 5-95%",
            )
            centre = mean[column].to_numpy()
            hindcast = years < first_projected_year
            axis.plot(
                years[hindcast], centre[hindcast], color=ENSEMBLE_COLOUR, lw=1.4, ls="--", label="ensemble hindcast"
            )
            axis.plot(years[~hindcast], centre[~hindcast], color=ENSEMBLE_COLOUR, lw=1.6, label="ensemble mean")
            if observed is not None:
                series = observed.filter(pl.col("band") == b)
                axis.plot(series["year"], series[column], color=REANALYSIS_COLOUR, lw=1.4, label="ERA5-Land")
            axis.axvline(first_projected_year - 0.5, color="grey", lw=0.6, ls="--")
            _label_band_layer_axis(axis, r, k, b)
    _legend(figure, axes)
    first, last = annual["year"].min(), annual["year"].max()
    for axis in axes[-1]:
        axis.set_xlabel("year", fontsize="small")
    figure.suptitle(f"Annual-mean soil temperature, {scenario}, {first}-{last}", x=0.02, ha="left")
    figure.subplots_adjust(left=0.09, right=0.99, bottom=0.07, top=0.92, wspace=0.25, hspace=0.15)
    return save_png(figure, path)


def feature_importance_figure(
    importance: pl.DataFrame, model: str, path: Path | str, top: int = 15, unit: str = "K", explained: str = ""
) -> Path:
    """Horizontal bars of the ``top`` features by mean |SHAP| in ``unit``, largest at the top
    (Figure 10), in ``model``'s colour; ``explained`` says what output was explained.

    ``importance`` has columns ``feature`` and ``mean_abs_shap``; a feature listed more than
    once (e.g. per band or layer) is refused: aggregate it first, the choice of sum or mean
    is the caller's. NaN or null values are dropped.
    """
    catalog.require_columns(importance, ("feature", "mean_abs_shap"), "importance frame")
    duplicated = importance["feature"].is_duplicated()
    if duplicated.any():
        raise ValueError(f"features listed more than once: {sorted(set(importance['feature'].filter(duplicated)))}")
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    ranked = (
        importance.select(pl.col("feature").cast(pl.Utf8), pl.col("mean_abs_shap").cast(pl.Float64).fill_nan(None))
        .drop_nulls()
        .sort(["mean_abs_shap", "feature"], descending=[True, False])
        .head(top)
    )
    if ranked.height == 0:
        raise ValueError("no feature importance to draw")

    figure = _figure(7.5, 0.35 * ranked.height + 1.5)
    axis = figure.subplots()
    positions = np.arange(ranked.height)[::-1]  # largest at the top
    axis.barh(positions, ranked["mean_abs_shap"].to_numpy(), color=model_colour(model))
    axis.set_yticks(positions, ranked["feature"].to_list(), fontsize="small")
    axis.set_xlabel(f"mean |SHAP| ({unit})")
    axis.set_title(f"Feature importance, {model}{f' ({explained})' if explained else ''}, top {ranked.height}")
    axis.grid(axis="x", lw=0.4, alpha=0.5)
    figure.tight_layout()
    return save_png(figure, path)


def _flag_markers(axis, x, y, marker: str, colour: str, label: str = "_nolegend_") -> None:
    if marker == "x":  # an unfilled marker: its colour is its edge
        axis.scatter(x, y, marker=marker, s=22, color=colour, linewidths=0.9, label=label, zorder=3)
    else:
        axis.scatter(
            x, y, marker=marker, s=22, facecolors="none", edgecolors=colour, linewidths=0.9, label=label, zorder=3
        )


def active_layer_figure(
    alt: pl.DataFrame, path: Path | str, model: str | None = None, units: Units | None = None
) -> Path:
    """Active-layer thickness per year, one panel per band, one line per scenario.

    ``alt`` has ``scenario, band, year, alt_m, flag`` (``ml.active_layer`` output with the
    scenario as a group column). Depth grows downwards on the y axis. Years flagged other
    than ``"ok"`` are marked (FLAG_MARKERS): ``all_thawed`` at the deepest depth resolved (a lower
    bound, drawn as a dotted line too), ``incomplete`` years (no ALT) at the surface.
    If ``alt`` has a ``model`` column with several models, ``model`` picks one (default
    ``"ensemble_mean"`` when present, otherwise it must be given). For ``units`` that are not
    bands (``alt`` then has ``unit``), a band's line is its units' area-weighted mean ALT and its
    mark the flag most of its units have that year.
    """
    catalog.require_columns(alt, ("scenario", "band", "year", "alt_m", "flag"), "active-layer frame")
    title_model = model
    if "model" in alt.columns:
        models = alt["model"].unique().to_list()
        if model is None:
            if len(models) > 1 and ENSEMBLE_MODEL not in models:
                raise ValueError(f"alt holds models {sorted(models)}; pick one with model=")
            model = ENSEMBLE_MODEL if ENSEMBLE_MODEL in models else models[0] if models else None
        title_model = model
        alt = alt.filter(pl.col("model") == model)
    elif model is not None:
        raise ValueError(f"model={model!r} given but alt has no model column")
    if alt.height == 0:
        raise ValueError("no active-layer thickness to draw")
    if units is not None and not units.are_bands:
        mean = band_groups(alt, units, ("scenario", "year"), ("alt_m",))
        flag = (
            alt.drop("band")
            .join(units.frame.select("unit", pl.col("band").fill_null(OUTSIDE_BANDS)), on="unit")
            .group_by("scenario", "year", "band")
            .agg(pl.col("flag").mode().sort().first())
        )
        alt = mean.join(flag, on=["scenario", "year", "band"])
    scenarios = [s for s in SCENARIO_COLOURS if s in alt["scenario"].unique().to_list()]
    scenarios += sorted(set(alt["scenario"].unique().to_list()) - set(scenarios))
    deepest = MAX_DEPTH_M

    rows = _band_rows(alt["band"].to_numpy())
    n_cols = 3
    n_rows = -(-len(rows) // n_cols)
    figure = _figure(4.2 * n_cols, 3.0 * n_rows)
    axes = figure.subplots(n_rows, n_cols, sharex=True, sharey=True, squeeze=False)
    alt = alt.with_columns(pl.col("alt_m").cast(pl.Float64).fill_nan(None)).sort("scenario", "band", "year")
    seen_flags: set[str] = set()
    for axis, b in zip(axes.ravel(), rows, strict=False):
        band_rows = alt.filter(pl.col("band") == b)
        for scenario in scenarios:
            series = band_rows.filter(pl.col("scenario") == scenario)
            if series.height == 0:
                continue
            colour = SCENARIO_COLOURS.get(scenario) or model_colour(scenario)
            years = series["year"].to_numpy()
            depth = series["alt_m"].to_numpy().astype(np.float64)  # null -> NaN: a gap in the line
            axis.plot(years, depth, color=colour, lw=1.1, label=scenario)
            flags = series["flag"].to_numpy()
            for flag, (marker, _) in FLAG_MARKERS.items():
                hit = flags == flag
                if hit.any():
                    y = np.where(np.isnan(depth[hit]), 0.0, depth[hit])
                    _flag_markers(axis, years[hit], y, marker, colour)
                    seen_flags.add(flag)
        axis.axhline(deepest, color="grey", lw=0.6, ls=":")
        axis.set_title(_band_label(b).replace("\n", ", "), fontsize="medium")
        axis.tick_params(labelsize="x-small")
    for axis in axes.ravel()[len(rows) :]:
        axis.set_visible(False)
    for flag, (marker, meaning) in FLAG_MARKERS.items():  # neutral legend entries for the marks
        if flag in seen_flags:
            _flag_markers(axes[0, 0], [], [], marker, "grey", label=meaning)
    axes[0, 0].invert_yaxis()  # shared y: depth grows downwards on every panel
    for axis in axes[:, 0]:
        axis.set_ylabel("active-layer thickness (m)")
    for axis in axes[-1]:
        axis.set_xlabel("year")
    _legend(figure, axes, anchor=(0.5, 0.92), loc="upper center")
    suffix = f", {title_model}" if title_model else ""
    figure.suptitle(
        f"Active-layer thickness by scenario{suffix} (dotted: {deepest:g} m, the deepest depth the layers resolve)",
        x=0.02,
        ha="left",
    )
    figure.subplots_adjust(left=0.07, right=0.99, bottom=0.1, top=0.8, wspace=0.08, hspace=0.25)
    return save_png(figure, path)


def perfect_model_figure(cells: pl.DataFrame, series: pl.DataFrame, path: Path | str, title: str = "") -> Path:
    """The perfect-model validation in three panels.

    Left and middle: per scenario x band x layer cell, the truth's 2081-2100 minus 2024-2043
    change (left) and 2081-2100 level (middle) against the ensemble mean, with the members'
    5-95% range as error bars, one colour per RCP; on the diagonal the ensemble is right.
    ``cells`` has ``scenario``, ``truth_change``, ``ensemble_change``, ``change_q05``,
    ``change_q95`` and the same for ``level``. Right: annual means of one band and layer,
    ``series`` with ``scenario``, ``source`` ("truth", "ensemble" or "reanalysis"), ``year``,
    ``value`` and, for the ensemble, ``q05``/``q95``.
    """
    catalog.require_columns(
        cells,
        ("scenario", *(f"{p}_{s}" for s in ("change", "level") for p in ("truth", "ensemble")), "change_q05"),
        "perfect-model cells",
    )
    catalog.require_columns(series, ("scenario", "source", "year", "value", "q05", "q95"), "perfect-model series")
    if cells.height == 0:
        raise ValueError("no perfect-model cells to draw")
    figure = _figure(16, 5.2)
    axes = figure.subplots(1, 3)
    for axis, signal, label in (
        (axes[0], "change", "2081-2100 minus 2024-2043 (K)"),
        (axes[1], "level", "2081-2100 (degC)"),
    ):
        for scenario in [s for s in SCENARIO_COLOURS if s in cells["scenario"].unique().to_list()]:
            rows = cells.filter(pl.col("scenario") == scenario)
            truth = rows[f"truth_{signal}"].to_numpy()
            centre = rows[f"ensemble_{signal}"].to_numpy()
            error = np.abs(
                np.stack([centre - rows[f"{signal}_q05"].to_numpy(), rows[f"{signal}_q95"].to_numpy() - centre])
            )
            axis.errorbar(
                truth, centre, yerr=error, fmt="o", ms=3, lw=0.6, color=SCENARIO_COLOURS[scenario], label=scenario
            )
        low = float(np.nanmin(cells.select(f"truth_{signal}", f"{signal}_q05").to_numpy()))
        high = float(np.nanmax(cells.select(f"truth_{signal}", f"{signal}_q95").to_numpy()))
        axis.plot([low, high], [low, high], color="grey", lw=0.8, ls="--")
        axis.set_xlabel(f"truth: {label}")
        axis.set_ylabel(f"ensemble mean and 5-95%: {label}")
        axis.set_title(f"{signal}, every band x layer cell", fontsize="medium")
        axis.legend(fontsize="small", frameon=False)
    axis = axes[2]
    for scenario in sorted(series["scenario"].unique().to_list()):
        colour = SCENARIO_COLOURS.get(scenario, REANALYSIS_COLOUR)
        for source, style in (("truth", "-"), ("ensemble", "--"), ("reanalysis", "-")):
            rows = series.filter(pl.col("scenario") == scenario, pl.col("source") == source).sort("year")
            if rows.height == 0:
                continue
            name = "ERA5-Land" if source == "reanalysis" else f"{scenario} {source}"
            axis.plot(rows["year"], rows["value"], color=colour, lw=1.0, ls=style, label=name)
            if source == "ensemble":
                axis.fill_between(rows["year"], rows["q05"], rows["q95"], color=colour, alpha=0.15, lw=0)
    axis.axvline(catalog.PROJECTION_FIRST_MONTH.year - 0.5, color="grey", lw=0.6, ls="--")
    axis.set_xlabel("year")
    axis.set_ylabel("annual mean (degC)")
    axis.legend(fontsize="x-small", frameon=False, ncol=2)
    figure.suptitle(
        title or "Perfect-model validation: the simulator's own soil against the ensemble", x=0.02, ha="left"
    )
    figure.tight_layout(rect=(0, 0, 1, 0.94))
    return save_png(figure, path)
