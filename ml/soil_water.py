"""Scenario soil water per ERA5-Land layer from the model's total column water.

CMIP5 gives one column total (mrso, kg m-2); the four ERA5-Land layers respond to it with their
own memory (the top layer within a month, the 1-2.89 m layer over a year). Two splits:

* ``split_soil_water_lagged`` (default, ``LaggedLayerSplit``): every layer keeps the
  reanalysis' climatology (unit x calendar month) and follows the ANOMALY of the total through
  an exponential filter of its own time constant, weighted by the layer's climatological share
  of the column's water (the deepest layer, which holds two thirds of the column, by its
  regression on the total instead). Fitted on the reanalysis; no noise is added, so a layer
  varies month to month as the reanalysis' does.
* ``split_soil_water`` (the paper's): each month's total split by shares drawn from Dirichlet
  distributions fitted to the reanalysis' layer shares per band and calendar month (a unit takes
  its nearest band's: the shares pool the units near a band). Sampling
  gives the deep layer the month-to-month noise of the top one (three times the reanalysis'
  variability, and a quarter of the scenario months outside the historical range).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.signal import lfilter

from sources.catalog import N_BANDS, PROJECTION_FIRST_MONTH, SOIL_LAYER_THICKNESS_M, WATER_CONTENT, require_columns

SOIL_WATER_TOTAL = "soil_water_total_kg_m2"  # CMIP mrso after staging, kg m-2
WATER_DENSITY_KG_M3 = 1000.0
N_LAYERS = len(WATER_CONTENT)

# Bounds on the Dirichlet precision alpha_0 = sum_k alpha_k. A band whose layer shares barely
# move from year to year would give an unbounded moment estimate (variance -> 0); the cap
# keeps sampling finite and still practically at the mean (share sd ~ 1e-3 at most).
MIN_PRECISION = 1.0
MAX_PRECISION = 1.0e6


def column_water_kg_m2() -> pl.Expr:
    """Total column water (kg m-2) over the four layers, 0-2.89 m, from volumetric content w_k
    (m3 m-3) x layer thickness x water density: comparable with CMIP mrso."""
    return pl.sum_horizontal(
        pl.col(w) * (thickness * WATER_DENSITY_KG_M3)
        for w, thickness in zip(WATER_CONTENT, SOIL_LAYER_THICKNESS_M, strict=True)
    )


@dataclass
class DirichletShares:
    """Dirichlet concentrations of the layer shares of column water mass."""

    alpha: np.ndarray  # (N_BANDS, 12, 4): band, calendar month (0 = January), layer

    @property
    def mean(self) -> np.ndarray:
        """Expected share per band, calendar month and layer (sums to 1 over layers)."""
        return self.alpha / self.alpha.sum(axis=-1, keepdims=True)


def _precision(mean: np.ndarray, variance: np.ndarray) -> float:
    """Method-of-moments alpha_0 from one cell's share means and variances (one per layer).

    Each layer gives alpha_0 = m (1 - m) / v - 1 for the same alpha_0; the median over layers is
    robust to one layer whose share hardly varies.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        per_layer = mean * (1.0 - mean) / variance - 1.0
    per_layer = np.where(np.isfinite(per_layer), per_layer, MAX_PRECISION)
    return float(np.clip(np.median(per_layer), MIN_PRECISION, MAX_PRECISION))


def fit_layer_shares(moments: pl.DataFrame) -> DirichletShares:
    """Fit Dirichlet layer shares per band and calendar month (method of moments).

    ``moments`` is the reanalysis' share of column water per layer, as the dbt model
    ``int_era5_land_soil_water_shares`` computes it (the one place it is computed): one row per
    ``band`` and ``calendar_month`` (1-12) with ``share_k_mean`` and ``share_k_variance`` (sample
    variance over the years; null for a single year) for k = 0..3. Every calendar month of a
    band present must be there; a band absent (no spatial unit near it) has no shares (NaN), and
    splitting a row of it is an error.
    """
    mean_columns = [f"share_{k}_mean" for k in range(N_LAYERS)]
    variance_columns = [f"share_{k}_variance" for k in range(N_LAYERS)]
    require_columns(moments, ("band", "calendar_month", *mean_columns, *variance_columns), "soil-water share moments")
    alpha = np.full((N_BANDS, 12, N_LAYERS), np.nan)
    for row in moments.iter_rows(named=True):
        band, month = int(row["band"]), int(row["calendar_month"])
        if not 0 <= band < N_BANDS:
            raise ValueError(f"soil-water share moments have band {band}; expected bands 0..{N_BANDS - 1}")
        mean = np.array([row[c] for c in mean_columns], dtype=np.float64)
        variance = np.array([0.0 if row[c] is None else row[c] for c in variance_columns], dtype=np.float64)
        alpha[band, month - 1] = mean * _precision(mean, variance)
    present = np.unique(moments["band"].to_numpy().astype(int))
    empty = np.argwhere(np.isnan(alpha[present, :, 0]))
    empty[:, 0] = present[empty[:, 0]]
    if len(empty):
        cells = ", ".join(f"band {b} month {m + 1}" for b, m in empty[:6])
        raise ValueError(f"reference has no soil water for {len(empty)} band/month cells ({cells}...)")
    return DirichletShares(alpha=alpha)


def split_soil_water(
    scenario: pl.DataFrame,
    shares: DirichletShares,
    seed: int,
    total_column: str = SOIL_WATER_TOTAL,
) -> pl.DataFrame:
    """Replace w_0..w_3 (m3 m-3) by the total column water split with sampled layer shares.

    w_k = fraction_k * total / (1000 * thickness_k), clipped to [0, 1]; one fraction vector per
    row (with the shares of the row's ``nearest_band``), drawn in row order from numpy's
    default_rng(seed), so a seed reproduces the split.
    """
    require_columns(scenario, ("nearest_band", "month", total_column), "scenario frame to split soil water")
    total = scenario[total_column].cast(pl.Float64).to_numpy()
    if np.isnan(total).any() or scenario[total_column].null_count():
        raise ValueError(f"scenario column {total_column} has missing values; cannot split soil water")
    band = scenario["nearest_band"].to_numpy().astype(int)
    if band.min() < 0 or band.max() >= N_BANDS:
        raise ValueError(f"scenario has bands outside 0..{N_BANDS - 1}")
    unshared = sorted(set(band[np.isnan(shares.alpha[band, 0, 0])].tolist()))
    if unshared:
        raise ValueError(f"the reanalysis has no soil-water shares for band(s) {unshared} of the scenario")
    calendar_month = scenario["month"].dt.month().to_numpy().astype(int) - 1

    # Dirichlet draws as normalised gamma draws: vectorised over rows with per-row alphas.
    gamma = np.random.default_rng(seed).standard_gamma(shares.alpha[band, calendar_month])
    fraction = gamma / gamma.sum(axis=1, keepdims=True)

    thickness = np.asarray(SOIL_LAYER_THICKNESS_M)
    water = fraction * total[:, None] / (WATER_DENSITY_KG_M3 * thickness)
    water = np.clip(water, 0.0, 1.0)
    return scenario.with_columns(pl.Series(name, water[:, k]) for k, name in enumerate(WATER_CONTENT))


# --- the lagged split ------------------------------------------------------------------------

# Candidate time constants (months) of a layer's response to the column's water anomaly.
TIME_CONSTANTS: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 9.0, 12.0, 18.0, 24.0)
REGRESSED_LAYERS: tuple[int, ...] = (3,)  # layers weighted by their fitted regression, not their share
SPIN_UP_MONTHS = 24  # filter months left out of the fit


def exponential_filter(values: np.ndarray, tau: float) -> np.ndarray:
    """Exponential moving average along axis 0 with time constant ``tau`` (months), from 0."""
    decay = np.exp(-1.0 / tau)
    return lfilter([1.0 - decay], [1.0, -decay], values, axis=0)


@dataclass
class LaggedLayerSplit:
    """Per spatial unit and layer: the reanalysis climatology, a time constant and a weight.

    ``clim_w`` (12, U, 4) m3 m-3 and ``clim_total`` (12, U) kg m-2 per calendar month; ``tau``
    (U, 4) months and ``beta`` (U, 4), the least-squares fit of each layer's water-mass anomaly
    on the filtered anomaly of the total (``fit``).
    """

    clim_w: np.ndarray
    clim_total: np.ndarray
    tau: np.ndarray
    beta: np.ndarray

    @classmethod
    def fit(cls, water: np.ndarray, calendar: np.ndarray) -> LaggedLayerSplit:
        """water (T, U, 4) reanalysis w_0..w_3 of consecutive months; calendar (T,) 0..11."""
        thickness = np.asarray(SOIL_LAYER_THICKNESS_M)
        if len(water) <= SPIN_UP_MONTHS + 12:
            raise ValueError(f"the lagged split needs more than {SPIN_UP_MONTHS + 12} months of reanalysis water")
        mass = water * thickness * WATER_DENSITY_KG_M3
        total = mass.sum(axis=-1)
        clim_w = np.stack([water[calendar == m].mean(axis=0) for m in range(12)])
        clim_total = np.stack([total[calendar == m].mean(axis=0) for m in range(12)])
        anomaly = total - clim_total[calendar]
        target = (mass - (clim_w * thickness * WATER_DENSITY_KG_M3)[calendar])[SPIN_UP_MONTHS:]  # (T', U, 4)
        best = np.full(target.shape[1:], np.inf)
        tau = np.ones(target.shape[1:])
        beta = np.zeros(target.shape[1:])
        for candidate in TIME_CONSTANTS:
            filtered = exponential_filter(anomaly, candidate)[SPIN_UP_MONTHS:, :, None]  # (T', U, 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                weight = np.nan_to_num((filtered * target).sum(axis=0) / (filtered**2).sum(axis=0))
            error = ((target - weight * filtered) ** 2).mean(axis=0)
            better = error < best
            best, tau, beta = (
                np.where(better, error, best),
                np.where(better, candidate, tau),
                np.where(better, weight, beta),
            )
        return cls(clim_w, clim_total, tau, beta)

    def split(self, total: np.ndarray, calendar: np.ndarray) -> np.ndarray:
        """Column water (T, U) kg m-2 of consecutive months -> (T, U, 4) w_0..w_3 in m3 m-3.

        Each layer gets its climatology plus its weight times its filtered anomaly of the total;
        the weights are the climatological mass shares (which sum to one), except for
        ``REGRESSED_LAYERS``. Values are clipped to [0, 1]."""
        thickness = np.asarray(SOIL_LAYER_THICKNESS_M)
        anomaly = total - self.clim_total[calendar]
        shares = self.clim_w * thickness * WATER_DENSITY_KG_M3 / self.clim_total[..., None]  # (12, U, 4)
        out = np.empty((*total.shape, N_LAYERS))
        for k in range(N_LAYERS):
            weight = self.beta[:, k] if k in REGRESSED_LAYERS else shares[calendar, :, k]
            filtered = np.stack(
                [exponential_filter(anomaly[:, b], self.tau[b, k]) for b in range(total.shape[1])], axis=1
            )
            out[..., k] = self.clim_w[calendar, :, k] + weight * filtered / (WATER_DENSITY_KG_M3 * thickness[k])
        return np.clip(out, 0.0, 1.0)


def split_soil_water_lagged(
    scenario: pl.DataFrame, history: pl.DataFrame, total_column: str = SOIL_WATER_TOTAL
) -> pl.DataFrame:
    """Replace w_0..w_3 of ``scenario`` (every unit of the history, consecutive months: the whole
    run, so the filters are spun up by the projection years) by the lagged split of
    ``total_column``, fitted on the reanalysis ``history`` (w_0..w_3 per unit and month)."""
    from ml.unit_arrays import unit_grid

    reference = unit_grid(history, WATER_CONTENT, "reanalysis soil water")
    grid = unit_grid(scenario, (total_column,), "scenario column water", reference.units)
    split = LaggedLayerSplit.fit(reference.values, reference.calendar_month)
    water = split.split(grid.values[..., 0], grid.calendar_month)
    n_units = len(grid.units)
    months = pl.Series("month", grid.months.astype("datetime64[D]")).cast(pl.Date)
    split_frame = pl.DataFrame(
        {
            "unit": np.tile(grid.units, len(grid.months)),
            "month": months.gather(np.repeat(np.arange(len(grid.months)), n_units)),
            **{name: water[..., k].ravel() for k, name in enumerate(WATER_CONTENT)},
        }
    )
    joined = scenario.drop(WATER_CONTENT, strict=False).join(
        split_frame.with_columns(pl.col("unit").cast(scenario.schema["unit"])), on=["unit", "month"], how="left"
    )
    return joined.select(scenario.columns)


def water_tails(reference: np.ndarray, scenario: np.ndarray) -> dict[str, dict[str, float]]:
    """Per layer: the share of scenario (T', U, 4) values outside the reference's (T, U, 4)
    range of the same unit and layer, and the ratio of their month-to-month variability
    (standard deviation of consecutive differences, pooled over units)."""
    low, high = reference.min(axis=0), reference.max(axis=0)  # (U, 4)
    outside = ((scenario < low) | (scenario > high)).mean(axis=(0, 1))
    noise = np.diff(scenario, axis=0).std(axis=(0, 1)) / np.diff(reference, axis=0).std(axis=(0, 1))
    return {
        name: {"outside_range": float(outside[k]), "noise_ratio": float(noise[k])}
        for k, name in enumerate(WATER_CONTENT)
    }


def projected_water_tails(reference: pl.DataFrame, scenario: pl.DataFrame, what: str) -> dict[str, dict[str, float]]:
    """``water_tails`` of the projection months (2024 on) of ``scenario``'s w_0..w_3 against the
    reanalysis ``reference`` (unit-month frames; ``what`` names the scenario in errors)."""
    from ml.unit_arrays import unit_grid

    history = unit_grid(reference, WATER_CONTENT, "reanalysis soil water")
    projected = scenario.filter(pl.col("month") >= PROJECTION_FIRST_MONTH)
    return water_tails(history.values, unit_grid(projected, WATER_CONTENT, what, history.units).values)
