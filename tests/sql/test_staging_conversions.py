"""Staging conversions on hand-made raw files with known answers."""

import calendar
import datetime as dt

import duckdb
import polars as pl
import pytest
from dbt_helpers import run_dbt

from sources import catalog

SECONDS_PER_DAY = 86400.0
PR = 1.0e-5  # kg m-2 s-1
HFLS = 50.0  # W m-2, upward positive in CMIP
HFSS = -20.0  # W m-2, upward positive in CMIP: a downward flux


def _era5_rows(months, temperature_k=263.15):
    rows = []
    for month in months:
        for band in range(catalog.N_BANDS):
            row = {name: 0.5 for name in catalog.ERA5_LAND_BANDS}
            row.update(
                band=band,
                month=month,
                temperature_2m=temperature_k,
                skin_temperature=273.15,
                soil_temperature_level_1=272.15,
                total_precipitation_sum=0.01,
                surface_latent_heat_flux_sum=-3.0e7,
            )
            rows.append(row)
    return pl.DataFrame(rows)


def _cmip_rows(experiment, calendar_name, months):
    rows = []
    for month in months:
        for band in range(catalog.N_BANDS):
            rows.append(
                {
                    "experiment": experiment,
                    "band": band,
                    "month": month,
                    "calendar": calendar_name,
                    "model": "TEST-ESM",
                    "tas": 253.15,
                    "ts": 250.15,
                    "pr": PR,
                    "prsn": PR / 2,
                    "rlds": 200.0,
                    "rsds": 100.0,
                    "hfls": HFLS,
                    "hfss": HFSS,
                    "mrsos": 30.0,
                    "mrso": 600.0,
                }
            )
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    root = tmp_path_factory.mktemp("conversions")
    lake = root / "data"
    raw = lake / "raw"
    (raw / "era5_land_monthly").mkdir(parents=True)
    (raw / "cmip5_monthly").mkdir(parents=True)
    _era5_rows([dt.date(2001, 1, 1), dt.date(2001, 2, 1)]).write_parquet(raw / "era5_land_monthly" / "2001-01.parquet")
    # a daily product: two rows of one month must become one monthly row
    daily = _era5_rows([dt.date(2001, 3, 1), dt.date(2001, 3, 2)]).with_columns(
        temperature_2m=pl.when(pl.col("month") == dt.date(2001, 3, 1)).then(263.15).otherwise(283.15)
    )
    daily.write_parquet(raw / "era5_land_monthly" / "2001-03.parquet")
    months_2004 = [dt.date(2004, m, 1) for m in (1, 2, 4)]
    months_2008 = [dt.date(2008, m, 1) for m in (1, 2, 4)]
    _cmip_rows("historical", "noleap", months_2004).write_parquet(raw / "cmip5_monthly" / "historical.parquet")
    _cmip_rows("rcp45", "standard", months_2008).write_parquet(raw / "cmip5_monthly" / "rcp45.parquet")
    _cmip_rows("rcp60", "360_day", months_2004).write_parquet(raw / "cmip5_monthly" / "rcp60.parquet")
    pl.DataFrame(
        [
            {"band": b, "lithology": c, "area_km2": 1.0 + i}
            for b in range(6)
            for i, c in enumerate(catalog.LITHOLOGY_CLASSES)
        ]
    ).write_parquet(raw / "band_lithology.parquet")
    soil = []
    for product, spec in catalog.OPENLANDMAP_PRODUCTS.items():
        for b in range(6):
            # stored values rise linearly by 1 per cm down to 200 cm
            soil.append(
                {
                    "band": b,
                    "property": product,
                    "asset": spec["asset"],
                    "stored_unit": spec["stored_unit"],
                    **{f"b{d}": 100.0 + d for d in catalog.OPENLANDMAP_DEPTHS_CM},
                }
            )
    pl.DataFrame(soil).write_parquet(raw / "band_soil_properties.parquet")
    warehouse = lake / "warehouse.duckdb"
    result = run_dbt(["run", "--select", "staging", "int_soil_properties_averaged_to_layers"], lake, warehouse, root)
    assert result.returncode == 0, result.stdout[-3000:]
    con = duckdb.connect(str(warehouse), read_only=True)
    yield con
    con.close()


def _one(con, sql, params=()):
    return con.execute(sql, list(params)).fetchone()


@pytest.mark.parametrize(
    ("experiment", "month", "days"),
    [
        ("historical", "2004-01-01", 31),  # 31-day month
        ("historical", "2004-02-01", 28),  # noleap February of a leap year
        ("historical", "2004-04-01", 30),  # 30-day month
        ("rcp45", "2008-02-01", 29),  # standard calendar: a real leap February
        ("rcp45", "2008-04-01", 30),
        ("rcp60", "2004-01-01", 30),  # 360_day: every month has 30 days
    ],
)
def test_cmip_fluxes_become_monthly_totals_in_the_models_calendar(staged, experiment, month, days):
    seconds = days * SECONDS_PER_DAY
    row = _one(
        staged,
        "select days_in_month, p_total, p_snow, r_thermal, r_solar from staging.stg_cmip5__monthly "
        "where experiment = ? and month = cast(? as date) and band = 2",
        (experiment, month),
    )
    assert row[0] == days
    assert row[1] == pytest.approx(PR * seconds / 1000.0)  # m of water
    assert row[2] == pytest.approx(PR / 2 * seconds / 1000.0)
    assert row[3] == pytest.approx(200.0 * seconds)
    assert row[4] == pytest.approx(100.0 * seconds)


def test_cmip_turbulent_fluxes_flip_to_positive_downwards(staged):
    q_latent, q_sensible = _one(
        staged,
        "select q_latent, q_sensible from staging.stg_cmip5__monthly where experiment = 'historical' "
        "and month = date '2004-01-01' and band = 0",
    )
    seconds = 31 * SECONDS_PER_DAY
    assert q_latent == pytest.approx(-HFLS * seconds)  # evaporation: upward in CMIP, negative here
    assert q_sensible == pytest.approx(-HFSS * seconds)  # downward in CMIP (negative), positive here
    assert q_latent < 0 < q_sensible


def test_kelvin_to_celsius(staged):
    t_air, t_surface = _one(
        staged, "select t_air, t_surface from staging.stg_cmip5__monthly where experiment = 'rcp45' limit 1"
    )
    assert (t_air, t_surface) == (pytest.approx(-20.0), pytest.approx(-23.0))
    t_air, t_surface, t_soil_0 = _one(
        staged,
        "select t_air, t_surface, t_soil_0 from staging.stg_era5_land__monthly "
        "where month = date '2001-01-01' and band = 0",
    )
    assert (t_air, t_surface, t_soil_0) == (pytest.approx(-10.0), pytest.approx(0.0), pytest.approx(-1.0))


def test_era5_accumulations_keep_their_monthly_totals_and_sign(staged):
    p_total, q_latent, n = _one(
        staged,
        "select p_total, q_latent, n_source_rows from staging.stg_era5_land__monthly "
        "where month = date '2001-02-01' and band = 4",
    )
    assert (p_total, q_latent, n) == (pytest.approx(0.01), pytest.approx(-3.0e7), 1)


def test_daily_rows_aggregate_to_months_mean_for_states_sum_for_accumulations(staged):
    month, t_air, p_total, n = _one(
        staged,
        "select month, t_air, p_total, n_source_rows from staging.stg_era5_land__monthly "
        "where month = date '2001-03-01' and band = 1",
    )
    assert month == dt.date(2001, 3, 1)
    assert n == 2
    assert t_air == pytest.approx(0.0)  # mean of -10 and +10 degC
    assert p_total == pytest.approx(0.02)  # sum of two days of 0.01 m


def test_lithology_fractions_of_the_band_area(staged):
    fractions = staged.execute(
        "select lithology, fraction from staging.stg_usgs__lithology where band = 3 order by lithology"
    ).fetchall()
    total = sum(1.0 + i for i in range(len(catalog.LITHOLOGY_CLASSES)))
    expected = {c: (1.0 + i) / total for i, c in enumerate(catalog.LITHOLOGY_CLASSES)}
    assert {name: pytest.approx(value) for name, value in fractions} == expected


def test_soil_properties_scaled_and_averaged_onto_layers(staged):
    rows = dict(
        staged.execute(
            "select layer, value from intermediate.int_soil_properties_averaged_to_layers "
            "where band = 0 and property = 'bulk_density' order by layer"
        ).fetchall()
    )
    # stored profile 100 + depth_cm, x 10 kg m-3; linear to 200 cm, constant (300) below
    assert rows[0] == pytest.approx(10 * (100 + 3.5))  # mean over 0-7 cm
    assert rows[1] == pytest.approx(10 * (100 + 17.5))  # 7-28 cm
    assert rows[2] == pytest.approx(10 * (100 + 64.0))  # 28-100 cm
    deep = (100 * (100 + 150) + 89 * 300) / 189  # 100-200 cm linear, 200-289 cm constant
    assert rows[3] == pytest.approx(10 * deep)
    carbon = _one(
        staged,
        "select value from intermediate.int_soil_properties_averaged_to_layers "
        "where band = 0 and property = 'organic_carbon' and layer = 0",
    )[0]
    assert carbon == pytest.approx(5 * (100 + 3.5))  # stored in 5 g kg-1


def test_noleap_and_standard_february_differ_by_a_day(staged):
    noleap = _one(
        staged,
        "select p_total from staging.stg_cmip5__monthly "
        "where experiment='historical' and month = date '2004-02-01' and band = 0",
    )[0]
    standard = _one(
        staged,
        "select p_total from staging.stg_cmip5__monthly "
        "where experiment='rcp45' and month = date '2008-02-01' and band = 0",
    )[0]
    assert standard / noleap == pytest.approx(29 / 28)
    assert calendar.isleap(2004)  # the noleap calendar ignores a real leap year
