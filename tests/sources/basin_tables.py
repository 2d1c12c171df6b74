"""Small basin tables shaped as the published `monthly_by_basin.csv` and `basin_attributes.csv`:
a few basins (one outside the bands, two sharing a series), a few years, known values."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from sources import catalog

# station id, latitude, longitude, area km2, name; 5 lies in 3's ERA5-Land cells (same series),
# 308 outside the bands' box (longitude -134.7), 15 in band 2
BASINS = (
    (3, 61.56894, -149.759, 115.5185, "Little Meadow Creek"),
    (5, 61.56894, -149.761, 106.4167, "Troublesome Creek"),
    (15, 64.2, -147.0, 40.0, "Goldstream Creek"),
    (308, 56.827, -134.693, 16.4808, "Falls Creek"),
)
SAME_SERIES = {5: 3}  # basin -> the basin whose series it repeats
FIRST_MONTH = dt.date(2001, 1, 1)
LAST_MONTH = dt.date(2005, 4, 1)  # partial in the published layout (n_days 25)
PARTIAL_DAYS = 25


def _series(station: int, month: dt.date) -> dict[str, float]:
    """Every value column of one basin and month, in the table's units: seasonal, offset by basin."""
    offset = {3: 0.0, 15: -4.0, 308: 3.0}[SAME_SERIES.get(station, station)]
    season = np.cos(2 * np.pi * (month.month - 7) / 12)  # +1 in July
    air = -2.0 + offset + 14.0 * season
    row = {
        "snow_depth_water_equivalent_mean": max(0.0, -120.0 * season),
        "surface_net_solar_radiation_mean": 80.0 + 70.0 * season,
        "surface_net_thermal_radiation_mean": -40.0 + 5.0 * season,
        "surface_pressure_mean": 96.0 + 0.1 * offset,
        "temperature_2m_mean": air,
        "dewpoint_temperature_2m_mean": air - 3.0,
        "u_component_of_wind_10m_mean": -0.5,
        "v_component_of_wind_10m_mean": 0.25,
        **{f"volumetric_soil_water_layer_{i}_mean": 0.30 + 0.01 * i for i in range(1, 5)},
        **{f"soil_temperature_level_{i}_mean": 1.0 + offset / 2 + (10.0 / i**1.5) * season for i in range(1, 5)},
        "total_precipitation_sum": 60.0 + 20.0 * season,
        "potential_evaporation_sum": 40.0 + 40.0 * season,
        "surface_runoff_sum": 5.0,
        "sub_surface_runoff_sum": 30.0,
    }
    return {name: round(value, 4) for name, value in row.items()}


def basin_rows(first: dt.date = FIRST_MONTH, last: dt.date = LAST_MONTH, partial_last: bool = True) -> pl.DataFrame:
    rows = []
    for station, latitude, longitude, area, _ in BASINS:
        for month in catalog.month_range(first, last):
            days = catalog.days_in_month(month)
            rows.append(
                {
                    "station_id": station,
                    "latitude": latitude,
                    "longitude": longitude,
                    "area_km2": area,
                    "year": month.year,
                    "month": month.month,
                    "n_days": PARTIAL_DAYS if partial_last and month == last else days,
                    **_series(station, month),
                }
            )
    return pl.DataFrame(rows)


def write_basin_table(path: Path, rows: pl.DataFrame | None = None) -> Path:
    """`rows` (default `basin_rows()`) as CSV, or Parquet where `path` ends in .parquet."""
    rows = basin_rows() if rows is None else rows
    if path.suffix == ".parquet":
        rows.write_parquet(path)
    else:
        rows.write_csv(path)
    return path


def write_basin_attributes(path: Path) -> Path:
    pl.DataFrame(
        {
            "station_id": [b[0] for b in BASINS],
            "waterbody_name": [b[4] for b in BASINS],
            "latitude": [b[1] for b in BASINS],
            "longitude": [b[2] for b in BASINS],
            "area_km2": [b[3] for b in BASINS],
        }
    ).write_csv(path)
    return path
