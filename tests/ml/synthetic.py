"""Synthetic windows for the model tests: every layer follows one driver's last two months."""

import numpy as np

from ml.windows import NormalizationStats, WindowSet

TARGETS = ("t_soil_0", "t_soil_1", "t_soil_2", "t_soil_3")
LAYER_MEAN = np.array([10.0, 5.0, 2.0, 1.0])  # degC
LAYER_AMPLITUDE = np.array([5.0, 3.0, 2.0, 1.0])  # degC per unit of the driver


def synthetic_windows(
    features: tuple[str, ...], n_months: int, first: str = "2000-01", seed: int = 0, n_bands: int = 2, noise=0.1
) -> WindowSet:
    """Normalised random windows, band by band; feature 1 is the driver, the others are noise."""
    rng = np.random.default_rng(seed)
    n = n_months * n_bands
    x = rng.standard_normal((n, 24, len(features))).astype(np.float32)
    driver = x[:, -1, 1] + 0.5 * x[:, -2, 1]
    y = LAYER_MEAN + LAYER_AMPLITUDE * driver[:, None] + noise * rng.standard_normal((n, 4))
    return WindowSet(
        x=x,
        unit=np.repeat(np.arange(n_bands), n_months).astype(np.int32),
        y=y.astype(np.float32),
        target_month=np.tile(np.datetime64(first, "M") + np.arange(n_months), n_bands),
        feature_names=features,
    )


def statistics_of(train: WindowSet) -> NormalizationStats:
    """Inputs are already z-scores; target statistics from the training windows only."""
    features = train.feature_names
    return NormalizationStats(
        feature_names=features,
        mean=np.zeros(len(features)),
        std=np.ones(len(features)),
        target_names=TARGETS,
        target_mean=train.y.mean(axis=0),
        target_std=train.y.std(axis=0),
        r_thermal_mean=0.0,
        r_thermal_std=1.0,
    )
