"""Active-layer thickness (ALT) from the annual maximum soil-temperature profile.

For each group (band; or scenario, model, band for projections) and calendar year:

1. each layer's MAXIMUM monthly temperature over the year gives a profile of four values,
   placed at the layer MID-DEPTHS ``MID_DEPTHS_M`` = 0.035, 0.175, 0.64, 1.945 m (from
   ``catalog.SOIL_LAYERS_M``);
2. ALT is the depth where that profile first crosses 0 degC going down (thawed = max > 0,
   frozen = max <= 0): between the first thawed mid-depth d_k and the frozen one below it,
   linearly interpolated, ``d_k + (d_k+1 - d_k) * T_k / (T_k - T_k+1)``.

``flag`` says how to read ``alt_m``:

* ``"ok"``: one crossing, ALT interpolated as above.
* ``"none_thawed"``: the top layer's max is <= 0 (nothing thaws at the top mid-depth);
  ALT = 0.0 (whatever happens deeper).
* ``"all_thawed"``: every layer's max is > 0, the crossing is below the deepest mid-depth;
  ALT = the deepest mid-depth (1.945 m), to be read as a LOWER BOUND ("at least 1.945 m").
  Exclude or censor these years before averaging ALT.
* ``"multiple_crossings"``: the profile thaws again below the first frozen mid-depth (a
  talik, for instance); ALT is the first crossing from the top.
* ``"incomplete"``: the year has fewer than 12 months with every temperature present;
  ALT is null (an annual maximum over part of a year is not an annual maximum). Such years
  are kept so the gap is visible, ``n_months`` says how many months there were.

Months with a null or NaN in any temperature column do not count. Two rows for the same
group and month raise (usually a grouping column is missing, e.g. several scenarios pooled
under ``group_columns=("band",)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from sources import catalog

MID_DEPTHS_M: tuple[float, ...] = tuple(0.5 * (top + bottom) for top, bottom in catalog.SOIL_LAYERS_M)
MONTHS_PER_YEAR = 12
FLAGS: tuple[str, ...] = ("ok", "none_thawed", "all_thawed", "multiple_crossings", "incomplete")


def _alt_from_profiles(t_max: np.ndarray, depths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(alt_m, flag) for profiles (m, L) of annual maxima at ``depths`` (L,)."""
    thawed = t_max > 0.0
    # crossing k: thawed at depth k, frozen at depth k + 1
    crossing = thawed[:, :-1] & ~thawed[:, 1:]
    first = np.argmax(crossing, axis=1)  # 0 when there is none; masked below
    rows = np.arange(len(t_max))
    t_upper, t_lower = t_max[rows, first], t_max[rows, first + 1]
    d_upper, d_lower = depths[first], depths[first + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        alt = d_upper + (d_lower - d_upper) * t_upper / (t_upper - t_lower)
    # thawed again anywhere below the first frozen mid-depth
    below = np.arange(t_max.shape[1])[None, :] > (first + 1)[:, None]
    rethaws = (thawed & below).any(axis=1)

    none_thawed = ~thawed[:, 0]
    all_thawed = thawed.all(axis=1)
    flag = np.where(rethaws, "multiple_crossings", "ok").astype(object)
    flag[all_thawed] = "all_thawed"
    flag[none_thawed] = "none_thawed"
    alt = np.where(all_thawed, depths[-1], alt)
    alt = np.where(none_thawed, 0.0, alt)
    return alt, flag


def active_layer_thickness(
    frame: pl.DataFrame,
    temperature_columns: Sequence[str] = catalog.TARGETS,
    group_columns: Sequence[str] = ("band",),
) -> pl.DataFrame:
    """ALT per group and year: columns ``*group_columns, year, alt_m, flag, n_months``.

    ``frame`` has ``month`` (date, first of month), the temperature columns (degC, top layer
    first, one per ``catalog.SOIL_LAYERS_M`` layer) and the group columns. Rows are sorted by
    group and year. See the module docstring for the flags.
    """
    temperature_columns, group_columns = list(temperature_columns), list(group_columns)
    if len(temperature_columns) != len(MID_DEPTHS_M):
        raise ValueError(
            f"{len(temperature_columns)} temperature columns given, expected one per soil layer ({len(MID_DEPTHS_M)})"
        )
    catalog.require_columns(frame, ("month", *temperature_columns, *group_columns), "soil-temperature frame")
    if "year" in group_columns:
        raise ValueError("'year' is derived from month; do not pass it as a group column")

    rows = frame.select(
        *group_columns, pl.col("month").cast(pl.Date), *(pl.col(c).cast(pl.Float64) for c in temperature_columns)
    )
    duplicated = rows.select(*group_columns, "month").is_duplicated()
    if duplicated.any():
        example = rows.filter(duplicated).row(0, named=True)
        raise ValueError(
            f"more than one row per group {group_columns} and month, e.g. {example}; "
            "is a grouping column (scenario, model) missing?"
        )
    complete = pl.all_horizontal(pl.col(c).is_not_null() & pl.col(c).is_not_nan() for c in temperature_columns)
    keys = [*group_columns, "year"]
    annual = (
        rows.with_columns(pl.col("month").dt.year().cast(pl.Int32).alias("year"), complete.alias("_complete"))
        .group_by(keys)
        .agg(
            pl.col("_complete").sum().cast(pl.Int64).alias("n_months"),
            *(pl.col(c).filter(pl.col("_complete")).max().alias(c) for c in temperature_columns),
        )
        .sort(keys)
    )
    t_max = annual.select(temperature_columns).to_numpy().astype(np.float64)
    full = annual["n_months"].to_numpy() == MONTHS_PER_YEAR
    alt, flag = _alt_from_profiles(np.nan_to_num(t_max), np.asarray(MID_DEPTHS_M, dtype=np.float64))
    alt = np.where(full, alt, np.nan)
    flag = np.where(full, flag, "incomplete")
    return (
        annual.select(*keys, "n_months")
        .with_columns(
            pl.Series("alt_m", alt, dtype=pl.Float64).fill_nan(None),
            pl.Series("flag", flag.astype(str), dtype=pl.Utf8),
        )
        .select(*keys, "alt_m", "flag", "n_months")
    )
