"""PNG figures of the method's steps; matplotlib (Agg) is imported inside each function."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from dagster_project.catalog import WATER_CONTENT, add_months
from dagster_project.lake import write_file_atomic
from ml.bias_correction import DEFAULT_OVERLAP, UNITS

REANALYSIS_COLOUR = "tab:green"
RAW_COLOUR = "tab:red"
CORRECTED_COLOUR = "tab:blue"
YEARS_AFTER_OVERLAP = 5  # the figure runs a few years past the overlap, into the projection


def _unit(variable: str) -> str:
    return "m3 m-3" if variable in WATER_CONTENT else UNITS.get(variable, "")


def _band_series(frame: pl.DataFrame, band: int, variable: str, first: date, last: date) -> pl.DataFrame:
    if variable not in frame.columns:
        raise ValueError(f"figure needs column {variable}; frame has {frame.columns}")
    if "scenario" in frame.columns and frame["scenario"].n_unique() > 1:
        raise ValueError(f"figure shows one scenario; got {sorted(frame['scenario'].unique().to_list())}")
    return (
        frame.filter(pl.col("band") == band, pl.col("month").is_between(first, last))
        .select("month", variable)
        .sort("month")
    )


def bias_correction_figure(
    reference: pl.DataFrame,
    raw: pl.DataFrame,
    corrected: pl.DataFrame,
    band: int,
    variables: tuple[str, ...] = ("t_air", "q_latent", "p_total", "w_1"),
    *,
    path: Path | str,
    overlap: tuple[date, date] = DEFAULT_OVERLAP,
) -> Path:
    """Monthly series of one band, as the paper's Figure 11: reanalysis (green), raw model
    (red) and bias-corrected model (blue), one panel per variable, over the overlap and
    YEARS_AFTER_OVERLAP years after it. For the w_k panels `corrected` must already carry the
    split soil water (ml.soil_water.split_soil_water); bias_correct leaves w_k as they came.
    Written to a temporary file, then renamed onto `path`."""
    # A bare Figure renders PNG with Agg and leaves pyplot's global state and backend alone.
    from matplotlib.figure import Figure

    first, last = overlap[0], add_months(overlap[1], 12 * YEARS_AFTER_OVERLAP)
    scenario = raw["scenario"][0] if "scenario" in raw.columns and raw.height else "scenario"
    height = 2.4 * len(variables)
    figure = Figure(figsize=(10, height))
    axes = figure.subplots(len(variables), 1, sharex=True, squeeze=False)
    for axis, variable in zip(axes[:, 0], variables, strict=True):
        for frame, colour, label in (
            (reference, REANALYSIS_COLOUR, "ERA5-Land"),
            (raw, RAW_COLOUR, f"{scenario} raw"),
            (corrected, CORRECTED_COLOUR, f"{scenario} bias-corrected"),
        ):
            series = _band_series(frame, band, variable, first, last)
            axis.plot(series["month"].to_list(), series[variable].to_list(), color=colour, lw=0.9, label=label)
        axis.axvline(overlap[1], color="grey", lw=0.6, ls="--")  # end of the training overlap
        axis.set_ylabel(f"{variable}\n({_unit(variable)})")
    figure.suptitle(f"Band {band}: quantile mapping of {scenario} onto ERA5-Land")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.965), ncol=3, fontsize="small")
    figure.tight_layout(rect=(0, 0, 1, 0.94))

    return write_file_atomic(Path(path), lambda tmp: figure.savefig(tmp, format="png", dpi=110))
