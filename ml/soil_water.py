"""Scenario soil water per ERA5-Land layer from the model's total column water.

CMIP5 gives one column total (mrso, kg m-2); the four layers the soil model needs are drawn
from Dirichlet-distributed shares fitted to ERA5-Land's layer shares per band and month.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from sources.catalog import N_BANDS, SOIL_LAYER_THICKNESS_M, WATER_CONTENT, require_columns

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
    variance over the years; null for a single year) for k = 0..3. Every band 0..N_BANDS-1 and
    calendar month must be present.
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
    empty = np.argwhere(np.isnan(alpha[..., 0]))
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
    row, drawn in row order from numpy's default_rng(seed), so a seed reproduces the split.
    """
    require_columns(scenario, ("band", "month", total_column), "scenario frame to split soil water")
    total = scenario[total_column].cast(pl.Float64).to_numpy()
    if np.isnan(total).any() or scenario[total_column].null_count():
        raise ValueError(f"scenario column {total_column} has missing values; cannot split soil water")
    band = scenario["band"].to_numpy().astype(int)
    if band.min() < 0 or band.max() >= N_BANDS:
        raise ValueError(f"scenario has bands outside 0..{N_BANDS - 1}")
    calendar_month = scenario["month"].dt.month().to_numpy().astype(int) - 1

    # Dirichlet draws as normalised gamma draws: vectorised over rows with per-row alphas.
    gamma = np.random.default_rng(seed).standard_gamma(shares.alpha[band, calendar_month])
    fraction = gamma / gamma.sum(axis=1, keepdims=True)

    thickness = np.asarray(SOIL_LAYER_THICKNESS_M)
    water = fraction * total[:, None] / (WATER_DENSITY_KG_M3 * thickness)
    water = np.clip(water, 0.0, 1.0)
    return scenario.with_columns(pl.Series(name, water[:, k]) for k, name in enumerate(WATER_CONTENT))
