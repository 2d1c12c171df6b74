"""Synthetic monthly series per grid cell for the grid-mode tests and benchmarks: a smooth
seasonal cycle that cools and widens with latitude, with noise; soil layers follow the surface
damped and lagged with depth. A cell's series depend only on its id, latitude and the seed, so
the same cell gets the same data whichever tile or run it is in."""

import numpy as np

from ml.tiles import CORE_VARIABLES, TileSeries
from sources import catalog

DAMPING = np.array([0.9, 0.7, 0.45, 0.2])  # share of the surface's seasonal amplitude per layer
LAG_MONTHS = np.array([0.1, 0.4, 1.0, 2.0])
OFFSET = np.array([1.5, 1.2, 0.8, 0.5])  # degC above the mean skin temperature (snow insulates)


def cell_series(cells, lat, months, seed: int = 0, noise: float = 1.0) -> np.ndarray:
    """(T, cell, CORE_VARIABLES) float32 for cells (ids) at latitudes ``lat`` over ``months``."""
    cells, lat = np.asarray(cells), np.asarray(lat, dtype=float)
    phase = 2 * np.pi * (months.astype(np.int64) % 12 - 0.5)[:, None] / 12  # coldest in mid January
    mean = 1.0 - 0.7 * (lat - 59.0)  # degC: +1 in the south, about -8 in the north
    amplitude = 12.0 + 0.5 * (lat - 59.0)
    weather = np.stack([np.random.default_rng([seed, int(c)]).normal(0, noise, len(months)) for c in cells], 1)
    t_surface = mean - amplitude * np.cos(phase) + weather
    t_air = t_surface - 0.8 + 0.3 * weather
    p_snow = np.where(t_air < 0.0, 0.025, 0.002)
    water = 0.3 + 0.05 * np.sin(phase)[..., None] * np.ones((1, len(cells), 4))
    soil = np.stack(
        [mean + OFFSET[k] - DAMPING[k] * amplitude * np.cos(phase - 2 * np.pi * LAG_MONTHS[k] / 12) for k in range(4)],
        axis=-1,
    )
    soil = soil + 0.2 * np.stack([weather] * 4, axis=-1)
    values = {"t_surface": t_surface, "t_air": t_air, "p_snow": p_snow}
    values |= {f"w_{k}": water[..., k] for k in range(4)}
    values |= {name: soil[..., k] for k, name in enumerate(catalog.TARGETS)}
    return np.stack([values[name] for name in CORE_VARIABLES], axis=-1).astype(np.float32)


def tile_series(tile, grid, first: str = "2001-01", last: str = "2023-12", seed: int = 0) -> TileSeries:
    """The synthetic series of one tile (``sources.grid.Tile``) of ``grid``."""
    months = np.arange(np.datetime64(first, "M"), np.datetime64(last, "M") + 1)
    lat = grid.spec.lat[tile.cells // grid.spec.shape[1]]
    return TileSeries(tile.key, tile.cells, months, cell_series(tile.cells, lat, months, seed), CORE_VARIABLES)


def network_series(cells, lat, months, seed: int = 0, noise: float = 1.0) -> np.ndarray:
    """(T, cell, ml.cell_training.CELL_VARIABLES) float32: ``cell_series`` plus the other drivers
    (seasonal, by latitude) and static features (by latitude), for the cell network's tests. The
    soil's anomalies follow the surface's weather, so a network can learn them."""
    from ml.cell_training import CELL_VARIABLES

    core = cell_series(cells, lat, months, seed, noise)
    values = {name: core[..., k] for k, name in enumerate(CORE_VARIABLES)}
    lat = np.asarray(lat, dtype=float)
    phase = 2 * np.pi * (months.astype(np.int64) % 12 - 0.5)[:, None] / 12
    season = -np.cos(phase) * np.ones((1, len(cells)))
    values["p_total"] = 0.04 + 0.02 * season + 0.001 * (lat - 59.0)
    values["r_thermal"] = 6e8 + 3e8 * season - 1e7 * (lat - 59.0)
    values["r_solar"] = 3e8 + 3e8 * season - 2e7 * (lat - 59.0)
    values["q_latent"] = -5e7 - 4e7 * season
    values["q_sensible"] = -2e7 - 2e7 * season + 1e6 * (values["t_surface"] - values["t_air"])
    for k, name in enumerate(catalog.STATIC_FEATURES):
        values[name] = np.broadcast_to(0.1 * k + 0.01 * (lat - 59.0), season.shape)
    return np.stack([np.asarray(values[name], dtype=np.float64) for name in CELL_VARIABLES], axis=-1).astype(np.float32)
