"""Active-layer thickness (ALT): the depth the annual maximum temperature profile crosses 0 degC.

The four ERA5-Land layer means are too coarse to place that crossing: the deepest mid-depth is
1.945 m, and the 1.00-2.89 m layer MEAN hides the profile inside it. Two methods, per group
(a spatial unit; or scenario, model, member, unit for projections) and calendar year:

* ``"profile"`` (default): fit the classical solution of heat conduction for a periodic surface
  temperature (Carslaw and Jaeger; the damping-depth profile) to the year's 48 monthly layer
  means,

      T(z, t) = M(z) + A0 exp(-z / D) cos(2 pi t / 12 - z / D - phi),

  with M(z) the annual-mean profile (piecewise linear through the layers' annual means at their
  mid-depths, constant outside), the damping depth D picked from a grid and A0, phi by linear
  least squares, each basis function AVERAGED OVER THE LAYER it is compared with. The annual
  maximum at depth z is then ``M(z) + A0 exp(-z / D)``; ALT is its first 0 degC crossing on a
  1 cm grid down to ``MAX_DEPTH_M`` (2.89 m, the bottom of the deepest layer: below it the
  layers say nothing). Why not a Stefan fit: a Stefan relation ALT = E sqrt(thawing index)
  needs E calibrated on years whose ALT is known, which is what is missing; the conduction
  profile uses all four layers of the same year and needs no calibration. Zero-curtain
  (latent heat) effects flatten real profiles near 0 degC, so it reads about 0.2 m deep against
  the demo's own cell temperatures.
* ``"mid_depth"``: the four layers' annual maxima placed at their mid-depths
  (``MID_DEPTHS_M`` = 0.035, 0.175, 0.64, 1.945 m), linearly interpolated. Censored wherever the
  deepest layer's maximum is above 0 degC.

``flag`` says how to read ``alt_m``:

* ``"ok"``: one crossing, ALT as above.
* ``"none_thawed"``: nothing thaws at the top (profile: at the surface; mid-depth: at the top
  mid-depth); ALT = 0.0.
* ``"all_thawed"``: no crossing above the deepest depth the method resolves (2.89 m for the
  profile, 1.945 m at mid-depths): the ground thaws deeper than that, or a talik separates the
  surface from the permafrost. ALT is that depth, a LOWER BOUND; exclude or censor these years
  before averaging ALT.
* ``"multiple_crossings"``: the profile thaws again below the first frozen depth; ALT is the
  first crossing from the top.
* ``"incomplete"``: fewer than 12 months with every temperature present; ALT is null, the year
  is kept so the gap is visible (``n_months`` says how many months there were).

Two rows for the same group and month raise (usually a grouping column is missing).
``thickness_table`` gives the reanalysis' and every projection's ALT in one table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from sources import catalog

MID_DEPTHS_M: tuple[float, ...] = tuple(0.5 * (top + bottom) for top, bottom in catalog.SOIL_LAYERS_M)
MAX_DEPTH_M = catalog.SOIL_LAYERS_M[-1][1]
MONTHS_PER_YEAR = 12
# The target: ALT censored (all thawed) in at most half of the reanalysis years of these bands.
CENSORED_TARGET_BANDS: tuple[int, ...] = (2, 3, 4, 5)
FLAGS: tuple[str, ...] = ("ok", "none_thawed", "all_thawed", "multiple_crossings", "incomplete")
METHODS: tuple[str, ...] = ("profile", "mid_depth")
DAMPING_DEPTHS_M = np.geomspace(0.2, 6.0, 60)
GRID_M = np.arange(0.0, MAX_DEPTH_M + 1e-9, 0.01)
_POINTS_PER_LAYER = 200  # for layer averages of the basis functions
_BASES: list[np.ndarray] = []


# --- the mid-depth method ---------------------------------------------------------------------


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
    # thawed again anywhere below the first frozen depth
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


# --- the conduction-profile method ---------------------------------------------------------


def _layer_average(function) -> np.ndarray:
    """Average of ``function(z)`` over each soil layer, (4, ...)."""
    return np.array(
        [function(np.linspace(top, bottom, _POINTS_PER_LAYER)).mean(axis=0) for top, bottom in catalog.SOIL_LAYERS_M]
    )


def _bases() -> list[np.ndarray]:
    """Per damping depth D: the (48, 2) layer-averaged basis exp(-z/D) [cos, sin](wt - z/D), rows
    month-major (12 months x 4 layers). Computed once."""
    if not _BASES:
        omega_t = 2 * np.pi * (np.arange(MONTHS_PER_YEAR) + 0.5) / MONTHS_PER_YEAR
        for depth in DAMPING_DEPTHS_M:
            columns = [
                _layer_average(lambda z, d=depth, f=f: np.exp(-z[:, None] / d) * f(omega_t[None, :] - z[:, None] / d))
                for f in (np.cos, np.sin)
            ]
            _BASES.append(np.stack([c.T.ravel() for c in columns], axis=1))
    return _BASES


def fit_profiles(monthly: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 12, 4) monthly layer means of N years -> annual means (N, 4), A0 (N,), D (N,).

    For every D of the grid, A0 and phi by linear least squares on the de-meaned monthly layer
    means; the D with the smallest residual wins (vectorised over the N years)."""
    monthly = np.asarray(monthly, dtype=float)
    means = monthly.mean(axis=1)
    anomaly = (monthly - means[:, None, :]).reshape(len(monthly), -1)
    best = np.full(len(monthly), np.inf)
    amplitude = np.zeros(len(monthly))
    depth = np.full(len(monthly), DAMPING_DEPTHS_M[0])
    for candidate, basis in zip(DAMPING_DEPTHS_M, _bases(), strict=True):
        coefficients = anomaly @ np.linalg.pinv(basis).T  # (N, 2)
        error = ((coefficients @ basis.T - anomaly) ** 2).sum(axis=1)
        better = error < best
        best = np.where(better, error, best)
        amplitude = np.where(better, np.hypot(coefficients[:, 0], coefficients[:, 1]), amplitude)
        depth = np.where(better, candidate, depth)
    return means, amplitude, depth


def annual_max_profile(monthly: np.ndarray, z: np.ndarray = GRID_M) -> np.ndarray:
    """Annual maximum temperature (N, len(z)) at depths z from (N, 12, 4) monthly layer means."""
    means, amplitude, depth = fit_profiles(monthly)
    mid = np.asarray(MID_DEPTHS_M)
    clipped = np.clip(z, mid[0], mid[-1])
    k = np.clip(np.searchsorted(mid, clipped, side="right") - 1, 0, len(mid) - 2)
    fraction = (clipped - mid[k]) / (mid[k + 1] - mid[k])
    mean_profile = means[:, k] * (1 - fraction) + means[:, k + 1] * fraction
    return mean_profile + amplitude[:, None] * np.exp(-z[None, :] / depth[:, None])


def _first_crossing(profile: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First 0 degC crossing going down of each row of ``profile`` (N, len(z)), and flags."""
    thawed = profile > 0
    first_frozen = np.argmax(~thawed, axis=1)
    rows = np.arange(len(profile))
    k = np.maximum(first_frozen, 1)
    t0, t1 = profile[rows, k - 1], profile[rows, k]
    with np.errstate(divide="ignore", invalid="ignore"):
        alt = z[k - 1] + (z[k] - z[k - 1]) * t0 / (t0 - t1)
    below = np.arange(len(z))[None, :] > k[:, None]
    flag = np.where((thawed & below).any(axis=1), "multiple_crossings", "ok").astype(object)
    none, every = ~thawed[:, 0], thawed.all(axis=1)
    alt = np.where(every, z[-1], np.where(none, 0.0, alt))
    flag[every], flag[none] = "all_thawed", "none_thawed"
    return alt, flag


def alt_from_monthly(monthly: np.ndarray, method: str = "profile") -> tuple[np.ndarray, np.ndarray]:
    """(N, 12, 4) monthly layer means of complete years -> (alt_m (N,), flag (N,))."""
    monthly = np.asarray(monthly, dtype=float)
    if len(monthly) == 0:
        return np.empty(0), np.empty(0, dtype=object)
    if method == "profile":
        return _first_crossing(annual_max_profile(monthly), GRID_M)
    if method == "mid_depth":
        return _alt_from_profiles(monthly.max(axis=1), np.asarray(MID_DEPTHS_M, dtype=np.float64))
    raise ValueError(f"unknown ALT method {method!r}; expected one of {METHODS}")


# --- frames ---------------------------------------------------------------------------------


def active_layer_thickness(
    frame: pl.DataFrame,
    temperature_columns: Sequence[str] = catalog.TARGETS,
    group_columns: Sequence[str] = ("band",),
    method: str = "profile",
) -> pl.DataFrame:
    """ALT per group and year: columns ``*group_columns, year, alt_m, flag, n_months``.

    ``frame`` has ``month`` (date, first of month), the temperature columns (degC, top layer
    first, one per ``catalog.SOIL_LAYERS_M`` layer) and the group columns. Rows are sorted by
    group and year. See the module docstring for the methods and flags.
    """
    temperature_columns, group_columns = list(temperature_columns), list(group_columns)
    if len(temperature_columns) != len(MID_DEPTHS_M):
        raise ValueError(
            f"{len(temperature_columns)} temperature columns given, expected one per soil layer ({len(MID_DEPTHS_M)})"
        )
    if method not in METHODS:
        raise ValueError(f"unknown ALT method {method!r}; expected one of {METHODS}")
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
            "is a grouping column (scenario, model, member) missing?"
        )
    keys = [*group_columns, "year"]
    complete = pl.all_horizontal(pl.col(c).is_not_null() & pl.col(c).is_not_nan() for c in temperature_columns)
    rows = (
        rows.with_columns(pl.col("month").dt.year().cast(pl.Int32).alias("year"), complete.alias("_complete"))
        .with_columns(pl.col("_complete").sum().over(keys).cast(pl.Int64).alias("n_months"))
        .sort(*keys, "month")
    )
    annual = rows.group_by(keys, maintain_order=True).agg(pl.col("n_months").first())
    full = rows.filter(pl.col("n_months") == MONTHS_PER_YEAR)
    monthly = full.select(temperature_columns).to_numpy().reshape(-1, MONTHS_PER_YEAR, len(temperature_columns))
    alt_full, flag_full = alt_from_monthly(monthly, method)
    is_full = annual["n_months"].to_numpy() == MONTHS_PER_YEAR
    alt = np.full(annual.height, np.nan)
    flag = np.full(annual.height, "incomplete", dtype=object)
    alt[is_full], flag[is_full] = alt_full, flag_full
    return annual.with_columns(
        pl.Series("alt_m", alt, dtype=pl.Float64).fill_nan(None),
        pl.Series("flag", flag.astype(str), dtype=pl.Utf8),
    ).select(*keys, "alt_m", "flag", "n_months")


def thickness_table(projections: pl.DataFrame, history: pl.DataFrame) -> pl.DataFrame:
    """ALT per spatial unit and year of the reanalysis (``history``: scenario "reanalysis", model
    "era5_land", member 0) and of every projection member and the ensemble mean (``projections``,
    the ``ml.projections`` frame): columns scenario, model, member, unit, band, year, alt_m, flag,
    n_months (``band`` null for a unit outside every band)."""
    projected = active_layer_thickness(projections, group_columns=("scenario", "model", "member", "unit", "band"))
    observed = (
        active_layer_thickness(history, group_columns=("unit", "band"))
        .with_columns(
            pl.lit("reanalysis").alias("scenario"),
            pl.lit("era5_land").alias("model"),
            pl.lit(0).cast(pl.Int64).alias("member"),
        )
        .select(projected.columns)
    )
    return pl.concat([observed, projected], how="vertical_relaxed")


def reanalysis_and_ensemble(table: pl.DataFrame) -> pl.DataFrame:
    """The rows a figure shows from a ``thickness_table``: the reanalysis, then the ensemble mean
    of each scenario from 2024 (without model and member)."""
    from ml.projections import ENSEMBLE_MODEL

    first_projected = catalog.PROJECTION_FIRST_MONTH.year
    return pl.concat(
        [
            table.filter(pl.col("scenario") == "reanalysis"),
            table.filter(pl.col("model") == ENSEMBLE_MODEL, pl.col("year") >= first_projected),
        ],
        how="vertical_relaxed",
    ).drop("model", "member")


def censored_share(table: pl.DataFrame, bands: Sequence[int] = CENSORED_TARGET_BANDS) -> pl.DataFrame:
    """Share of years flagged all_thawed (ALT a lower bound) per scenario and model of a
    ``thickness_table``, over ``bands``: the reanalysis and each ensemble mean (no member)."""
    return (
        table.filter(pl.col("band").is_in(list(bands)), pl.col("member").is_null() | (pl.col("model") == "era5_land"))
        .group_by("scenario", "model")
        .agg((pl.col("flag") == "all_thawed").mean().alias("censored_share"), pl.len().alias("band_years"))
        .sort("scenario", "model")
    )
