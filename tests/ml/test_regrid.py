"""Band scenarios regridded onto cells: exact on a field linear in latitude, clamped at the outer
band centroids, amounts kept non-negative, bilinear on a lat/lon grid, and bad input refused
naming the variable, band and month."""

import numpy as np
import polars as pl
import pytest

from ml.regrid import BAND_CENTROID_LATITUDES, band_latitudes, regrid_bands, regrid_points
from sources import catalog

MONTHS = np.arange(np.datetime64("2050-01"), np.datetime64("2050-04") + 1)


def _bands(values) -> pl.DataFrame:
    """Rows band, month, each variable of ``values`` (name -> (band, month) -> value)."""
    rows = []
    for band in range(catalog.N_BANDS):
        for t, month in enumerate(MONTHS):
            row = {"band": band, "month": month.astype("datetime64[D]").item()}
            rows.append(row | {name: f(band, t) for name, f in values.items()})
    return pl.DataFrame(rows)


def test_band_centroids_are_the_mid_latitudes_of_the_band_edges():
    assert band_latitudes([0, 5]).tolist() == [
        pytest.approx((59.2632802 + 61.275545) / 2),
        pytest.approx((69.3246517 + 71.336926) / 2),
    ]
    assert np.all(np.diff(BAND_CENTROID_LATITUDES) > 0)
    with pytest.raises(ValueError, match="band 6 is not one of the 6 bands"):
        band_latitudes([6])


def test_a_field_linear_in_latitude_is_exact_between_centroids_and_clamped_outside():
    lat = BAND_CENTROID_LATITUDES
    field = _bands({"t_air": lambda b, t: 40.0 - 0.8 * lat[b] + t, "p_snow": lambda b, t: 0.01 * b})
    cells = np.array([11, 7, 3, 20, 5])
    cell_lat = np.array([60.3, 64.123, lat[2], 71.2, 58.0])  # inside, inside, on a centroid, north, south
    out = regrid_bands(field, ("t_air", "p_snow"), cells, cell_lat)
    assert out.columns == ["unit", "month", "t_air", "p_snow"]
    assert out.height == cells.size * MONTHS.size
    assert out["unit"].to_list() == np.repeat(cells, MONTHS.size).tolist()
    assert out["month"].head(MONTHS.size).to_list() == [m.astype("datetime64[D]").item() for m in MONTHS]
    clamped = np.clip(cell_lat, lat[0], lat[-1])
    t_air = out["t_air"].to_numpy().reshape(cells.size, MONTHS.size)
    expected = 40.0 - 0.8 * clamped[:, None] + np.arange(MONTHS.size)[None]
    np.testing.assert_allclose(t_air, expected, rtol=0, atol=1e-10)
    # clamped: the northernmost cell equals band 5 exactly, the southernmost band 0; no extrapolation
    assert t_air[3, 0] == pytest.approx(40.0 - 0.8 * lat[5]) and t_air[4, 0] == pytest.approx(40.0 - 0.8 * lat[0])
    p_snow = out["p_snow"].to_numpy().reshape(cells.size, MONTHS.size)
    # between band 2's and band 3's centroids: the weight of band 3 is the distance travelled
    weight = (64.123 - lat[1]) / (lat[2] - lat[1])
    assert p_snow[1, 0] == pytest.approx(0.01 * (1 + weight))


def test_amounts_stay_non_negative_and_snowfall_below_precipitation():
    # a dry band next to a wet one; a temperature may be negative, an amount may not
    field = _bands(
        {
            "p_total": lambda b, t: 0.0 if b % 2 else 0.03 + 0.01 * t,
            "p_snow": lambda b, t: 0.0 if b % 2 else 0.02,
            "t_air": lambda b, t: -25.0 + b,
        }
    )
    cell_lat = np.linspace(58.0, 72.0, 57)
    out = regrid_bands(field, ("p_total", "p_snow", "t_air"), np.arange(57), cell_lat)
    assert (out["p_total"] >= 0).all() and (out["p_snow"] >= 0).all()
    assert (out["p_snow"] <= out["p_total"] + 1e-15).all()
    assert (out["t_air"] < 0).all()
    # the source's own negative amounts (rounding in a converted table) come out clipped at 0
    values = np.full((1, 2, 1), -1e-18)
    assert regrid_points(values, ("p_total",), MONTHS[:1], np.array([60.0, 61.0]), np.array([60.5]))[0, 0, 0] == 0.0


def test_a_lat_lon_grid_is_interpolated_bilinearly_and_clamped():
    lat, lon = np.array([60.0, 62.0, 64.0]), np.array([-160.0, -150.0])
    plane = 3.0 * lat[:, None] - 0.5 * lon[None, :]  # bilinear interpolation is exact on a plane
    values = np.stack([plane, plane + 1.0])[..., None]  # (T 2, lat, lon, V 1)
    cell_lat, cell_lon = np.array([61.0, 63.5, 70.0]), np.array([-155.0, -159.0, -140.0])
    out = regrid_points(values, ("t_air",), MONTHS[:2], lat, cell_lat, lon=lon, cell_lon=cell_lon)
    assert out.shape == (2, 3, 1)
    inside = 3.0 * cell_lat[:2] - 0.5 * cell_lon[:2]
    np.testing.assert_allclose(out[0, :2, 0], inside, atol=1e-10)
    assert out[1, 2, 0] == pytest.approx(3.0 * 64.0 - 0.5 * -150.0 + 1.0)  # clamped to the north-east corner


def test_one_band_gives_every_cell_its_values():
    field = _bands({"t_air": lambda b, t: float(10 * b + t)}).filter(pl.col("band") == 4)
    out = regrid_bands(field, ("t_air",), np.array([1, 2]), np.array([60.0, 70.0]))
    assert out["t_air"].to_list() == [40.0, 41.0, 42.0, 43.0] * 2


def test_bad_input_names_the_variable_band_and_month():
    field = _bands({"t_air": lambda b, t: 1.0, "p_snow": lambda b, t: 0.01})
    cells, cell_lat = np.array([1]), np.array([64.0])
    with pytest.raises(ValueError, match=r"rcp85 bands: missing column\(s\) \['p_total'\]"):
        regrid_bands(field, ("t_air", "p_total"), cells, cell_lat, where="rcp85 bands")
    holed = field.with_columns(
        pl.when((pl.col("band") == 3) & (pl.col("month") == pl.date(2050, 3, 1)))
        .then(float("nan"))
        .otherwise(pl.col("p_snow"))
        .alias("p_snow")
    )
    with pytest.raises(ValueError, match=r"rcp85 bands: p_snow is missing or not finite in band 3, month 2050-03"):
        regrid_bands(holed, ("t_air", "p_snow"), cells, cell_lat, where="rcp85 bands")
    gap = field.filter(~((pl.col("band") == 2) & (pl.col("month") == pl.date(2050, 2, 1))))
    with pytest.raises(ValueError, match=r"rcp85 bands: band 2 is missing in month 2050-02"):
        regrid_bands(gap, ("t_air",), cells, cell_lat, where="rcp85 bands")
    values = np.ones((2, 3, 1))
    values[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"grid: t_air is missing or not finite at latitude 64.0000, month 2050-02"):
        regrid_points(values, ("t_air",), MONTHS[:2], np.array([60.0, 62.0, 64.0]), cell_lat, where="grid")
