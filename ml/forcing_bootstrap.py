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
"""

from __future__ import annotations

import numpy as np

MULTIPLICATIVE = ("p_total", "p_snow")


def offset_perturbation(
    reference: dict[str, np.ndarray], model: dict[str, np.ndarray], calendar: np.ndarray, draw: int, seed: int
) -> dict[str, np.ndarray]:
    """variable -> (12, B) perturbation of the mean correction for bootstrap ``draw``.

    ``reference`` and ``model``: variable -> (T, B) over the SAME overlap months, a whole number
    of years starting in January (``calendar`` (T,) 0..11).
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
    pick_reference = rng.integers(0, n_years, n_years)
    pick_model = rng.integers(0, n_years, n_years)
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
