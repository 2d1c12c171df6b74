"""Scenario soil water per ERA5-Land layer from the model's total column water.

CMIP5 gives one column total (mrso, kg m-2); the four layers the soil model needs are drawn
from Dirichlet-distributed shares fitted to ERA5-Land's layer shares per band and month.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from dagster_project.catalog import N_BANDS, SOIL_LAYER_THICKNESS_M, WATER_CONTENT

SOIL_WATER_TOTAL = "soil_water_total_kg_m2"  # CMIP mrso after staging, kg m-2
WATER_DENSITY_KG_M3 = 1000.0
N_LAYERS = len(WATER_CONTENT)

# Bounds on the Dirichlet precision alpha_0 = sum_k alpha_k. A band whose layer shares barely
# move from year to year would give an unbounded moment estimate (variance -> 0); the cap
# keeps sampling finite and still practically at the mean (share sd ~ 1e-3 at most).
MIN_PRECISION = 1.0
MAX_PRECISION = 1.0e6


def layer_water_kg_m2() -> list[pl.Expr]:
    """Water mass per ERA5-Land layer (kg m-2) from volumetric content w_k (m3 m-3)."""
    return [
        pl.col(w) * (thickness * WATER_DENSITY_KG_M3)
        for w, thickness in zip(WATER_CONTENT, SOIL_LAYER_THICKNESS_M, strict=True)
    ]


def column_water_kg_m2() -> pl.Expr:
    """Total column water (kg m-2) over the four layers, 0-2.89 m: comparable with CMIP mrso."""
    return pl.sum_horizontal(layer_water_kg_m2())


@dataclass
class DirichletShares:
    """Dirichlet concentrations of the layer shares of column water mass."""

    alpha: np.ndarray  # (N_BANDS, 12, 4): band, calendar month (0 = January), layer

    @property
    def mean(self) -> np.ndarray:
        """Expected share per band, calendar month and layer (sums to 1 over layers)."""
        return self.alpha / self.alpha.sum(axis=-1, keepdims=True)


def _layer_shares(reference: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in ("band", "month", *WATER_CONTENT) if c not in reference.columns]
    if missing:
        raise ValueError(f"reference frame lacks columns {missing} needed for soil water layer shares")
    masses = layer_water_kg_m2()
    total = pl.sum_horizontal(masses)
    return reference.select(
        "band",
        pl.col("month").dt.month().alias("calendar_month"),
        *[(mass / total).alias(f"share_{k}") for k, mass in enumerate(masses)],
    ).drop_nulls()


def _precision(mean: np.ndarray, variance: np.ndarray) -> float:
    """Method-of-moments alpha_0 from one cell's share means and variances (one per layer).

    Each layer gives alpha_0 = m (1 - m) / v - 1 for the same alpha_0; the median over layers is
    robust to one layer whose share hardly varies.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        per_layer = mean * (1.0 - mean) / variance - 1.0
    per_layer = np.where(np.isfinite(per_layer), per_layer, MAX_PRECISION)
    return float(np.clip(np.median(per_layer), MIN_PRECISION, MAX_PRECISION))


def fit_layer_shares(reference: pl.DataFrame) -> DirichletShares:
    """Fit Dirichlet layer shares per band and calendar month to ERA5-Land (method of moments).

    A share is w_k * thickness_k * 1000 / column total. Every band 0..N_BANDS-1 and calendar
    month must be present.
    """
    share_columns = [f"share_{k}" for k in range(N_LAYERS)]
    stats = (
        _layer_shares(reference)
        .group_by("band", "calendar_month")
        .agg(
            pl.len().alias("n"),
            *[pl.col(c).mean().alias(f"mean_{c}") for c in share_columns],
            *[pl.col(c).var(ddof=1).fill_null(0.0).alias(f"var_{c}") for c in share_columns],
        )
    )
    alpha = np.full((N_BANDS, 12, N_LAYERS), np.nan)
    for row in stats.iter_rows(named=True):
        band, month = int(row["band"]), int(row["calendar_month"])
        if not 0 <= band < N_BANDS:
            raise ValueError(f"reference has band {band}; expected bands 0..{N_BANDS - 1}")
        mean = np.array([row[f"mean_{c}"] for c in share_columns])
        variance = np.array([row[f"var_{c}"] for c in share_columns])
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
    missing = [c for c in ("band", "month", total_column) if c not in scenario.columns]
    if missing:
        raise ValueError(f"scenario frame lacks columns {missing} needed to split soil water")
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
    return scenario.with_columns(
        pl.Series(name, water[:, k]) for k, name in enumerate(WATER_CONTENT)
    )
