"""Bootstrap perturbations of bias-corrected scenario drivers: the sampling error of the mapping.

Quantile mapping learns each (band, calendar month) correction from ~23 years of reanalysis and
~23 years of climate-model weather: two independent samples of weather, so the correction itself
carries sampling error. In the demo's perfect-model experiment it is the largest error of a
projection (the simulator's own physics fed the corrected drivers misses the truth's
late-century level by 0.2-0.35 K), and an ensemble whose members all see the same corrected
drivers cannot know it.

``offset_perturbation`` resamples the overlap YEARS with replacement, independently for the
reanalysis and the model (their weather is independent) but jointly over bands, calendar months
and variables (which keeps their correlations), and returns the change of the mean correction
per band and calendar month: additive ``(mean_ref* - mean_mod*) - (mean_ref - mean_mod)``, or a
factor ``(mean_ref*/mean_mod*) / (mean_ref/mean_mod)`` for precipitation. ``perturb`` applies
one draw to a corrected series. Draw 0 is the unperturbed correction, and draw k depends only on
(seed, k), so the draws of a smaller ensemble are those of a larger one. Plain numpy.

``block_years`` > 1 resamples BLOCKS of consecutive years instead (a circular block bootstrap:
a block starting in the last years wraps to the first), which keeps the persistence of weather
across years: a persistent series' mean varies more than its years' spread says, and resampling
single years would not see it. ``block_years=1`` is the year bootstrap, draw for draw the same as
before blocks existed. ``persistence`` measures the lag-1 autocorrelation of the overlap's
detrended years and ``block_length`` turns it into a block length (the rule of Politis and White
2004, with the correction of Patton, Politis and White 2009, for an AR(1) series).
"""

from __future__ import annotations

import numpy as np

MULTIPLICATIVE = ("p_total", "p_snow")


def year_picks(n_years: int, rng: np.random.Generator, block_years: int = 1) -> np.ndarray:
    """(n_years,) indices of resampled years: single years with replacement (``block_years`` 1),
    or blocks of ``block_years`` consecutive years (circularly: after the last year the first)
    from random starts, concatenated and cut to ``n_years``."""
    if block_years < 1:
        raise ValueError(f"block_years must be >= 1, got {block_years}")
    if block_years == 1:
        return rng.integers(0, n_years, n_years)
    starts = rng.integers(0, n_years, -(-n_years // block_years))
    return ((starts[:, None] + np.arange(block_years)) % n_years).ravel()[:n_years]


def persistence(series: np.ndarray) -> float:
    """Lag-1 autocorrelation of years: ``series`` (years, ...) is each year's value of many
    series (calendar months, units, ...); each series is detrended linearly (a trend is no
    sampling error) and scaled to unit variance (constant ones, such as summer snowfall, are
    left out), and the products of consecutive years are pooled over all of them, less
    the bias of the lag-1 estimator on detrended years (about -(2 + 4 r) / n, measured on AR(1)
    series of 23 years)."""
    n_years = series.shape[0]
    if n_years < 4:
        raise ValueError(f"persistence needs at least 4 years, got {n_years}")
    flat = series.reshape(n_years, -1).astype(np.float64)
    flat = flat[:, np.all(np.isfinite(flat), axis=0)]
    years = np.arange(n_years) - (n_years - 1) / 2
    slope = years @ flat / (years @ years)
    residual = flat - flat.mean(axis=0) - np.outer(years, slope)
    scale = np.sqrt((residual**2).mean(axis=0))
    varying = scale > 1e-12 * np.maximum(np.abs(flat).max(axis=0), 1e-300)
    if not varying.any():
        return 0.0
    residual = residual[:, varying] / scale[varying]
    r = float((residual[1:] * residual[:-1]).sum() / (residual**2).sum())
    return float(np.clip((r * n_years + 2) / (n_years - 4), -0.99, 0.99))


def block_length(rho: float, n_years: int) -> int:
    """Block length for the circular block bootstrap of the mean of ``n_years`` of an AR(1)
    series of lag-1 autocorrelation ``rho``: (3 n / 2)^(1/3) (2 rho / (1 - rho^2))^(2/3),
    rounded, at least 1 (no persistence or anti-persistence: single years) and at most n / 2."""
    if rho <= 0:
        return 1
    rho = min(rho, 0.99)
    optimal = (1.5 * n_years) ** (1 / 3) * (2 * rho / (1 - rho**2)) ** (2 / 3)
    return int(np.clip(round(optimal), 1, max(n_years // 2, 1)))


def overlap_block_years(
    reference: dict[str, np.ndarray], model: dict[str, np.ndarray], calendar: np.ndarray
) -> tuple[float, int]:
    """(persistence, block length) of the overlap: the lag-1 autocorrelation of years pooled
    over every variable, calendar month and unit of the reanalysis and the model (their weather
    is one kind of weather), and ``block_length`` of it for the overlap's number of years."""
    n_years = len(calendar) // 12
    series = [np.asarray(values).reshape(n_years, -1) for values in (*reference.values(), *model.values())]
    rho = persistence(np.concatenate(series, axis=1))
    return rho, block_length(rho, n_years)


def offset_perturbation(
    reference: dict[str, np.ndarray],
    model: dict[str, np.ndarray],
    calendar: np.ndarray,
    draw: int,
    seed: int,
    block_years: int = 1,
) -> dict[str, np.ndarray]:
    """variable -> (12, B) perturbation of the mean correction for bootstrap ``draw``.

    ``reference`` and ``model``: variable -> (T, B) over the SAME overlap months, a whole number
    of years starting in January (``calendar`` (T,) 0..11). ``block_years``: years resampled
    together (1: the year bootstrap).
    """
    if len(calendar) % 12 or (len(calendar) and calendar[0] != 0):
        raise ValueError(f"the overlap must be whole years from January; got {len(calendar)} months")
    missing = sorted(set(reference) ^ set(model))
    if missing:
        raise ValueError(f"reference and model must hold the same variables; unmatched {missing}")
    n_years = len(calendar) // 12
    identity = {v: (np.ones if v in MULTIPLICATIVE else np.zeros)((12, reference[v].shape[1])) for v in reference}
    if draw == 0:
        return identity
    rng = np.random.default_rng([seed, draw])
    pick_reference = year_picks(n_years, rng, block_years)
    pick_model = year_picks(n_years, rng, block_years)
    out = {}
    for v in reference:
        ref = reference[v].reshape(n_years, 12, -1)
        mod = model[v].reshape(n_years, 12, -1)
        base_ref, base_mod = ref.mean(axis=0), mod.mean(axis=0)
        boot_ref, boot_mod = ref[pick_reference].mean(axis=0), mod[pick_model].mean(axis=0)
        if v in MULTIPLICATIVE:
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = (boot_ref / boot_mod) / (base_ref / base_mod)
            out[v] = np.where(np.isfinite(factor), factor, 1.0)
        else:
            out[v] = (boot_ref - boot_mod) - (base_ref - base_mod)
    return out


def perturb(series: np.ndarray, perturbation: np.ndarray, calendar: np.ndarray, variable: str) -> np.ndarray:
    """A (T, B) corrected series with one draw's (12, B) perturbation applied."""
    if variable in MULTIPLICATIVE:
        return series * perturbation[calendar]
    return series + perturbation[calendar]
