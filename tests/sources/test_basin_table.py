"""Basin tables (monthly_by_basin.csv) as a reanalysis of basins: conversions, units, absent
variables, the partial newest month, and bad input named by file, variable, basin and month."""

import datetime as dt
import shutil
import warnings
from pathlib import Path

import polars as pl
import pytest
from basin_tables import BASINS, LAST_MONTH, basin_rows, write_basin_attributes, write_basin_table

from sources import catalog
from sources.base import NotPublishedError, SourceError, units_of
from sources.basin_table import FORMAT_ABSENT, BasinTableReanalysisSource
from sources.config import BasinTableReanalysisConfig, SourcesConfigError, load_sources
from sources.registry import reanalysis_source

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "era5_land_basins"
COMPLETE = catalog.month_range(dt.date(2003, 1, 1), dt.date(2005, 3, 1))


def _source(path, **config) -> BasinTableReanalysisSource:
    return BasinTableReanalysisSource(BasinTableReanalysisConfig(kind="basin_table", path=path, **config))


def _quiet(source: BasinTableReanalysisSource):
    """The source, read once with its warning about absent variables caught."""
    with pytest.warns(UserWarning, match="landed as null columns"):
        source.units()
    return source


@pytest.fixture
def table(tmp_path) -> Path:
    return write_basin_table(tmp_path / "monthly_by_basin.csv")


def test_values_become_earth_engine_names_and_units(table):
    source = _quiet(_source(table))
    frame = source.read_months(COMPLETE)
    assert frame.columns[:3] == ["unit", "month", "date"]
    assert frame.height == len(COMPLETE) * len(BASINS)
    rows = basin_rows()
    published = rows.filter((pl.col("station_id") == 15) & (pl.col("year") == 2004) & (pl.col("month") == 2))
    row = frame.filter((pl.col("unit") == 15) & (pl.col("month") == dt.date(2004, 2, 1))).row(0, named=True)
    seconds = 29 * 86400.0  # February of a leap year
    expected = {
        "temperature_2m": published["temperature_2m_mean"][0] + 273.15,
        "soil_temperature_level_4": published["soil_temperature_level_4_mean"][0] + 273.15,
        "dewpoint_temperature_2m": published["dewpoint_temperature_2m_mean"][0] + 273.15,
        "total_precipitation_sum": published["total_precipitation_sum"][0] / 1000.0,
        "snow_depth_water_equivalent": published["snow_depth_water_equivalent_mean"][0] / 1000.0,
        "surface_runoff_sum": 0.005,
        "sub_surface_runoff_sum": 0.030,
        "surface_net_solar_radiation_sum": published["surface_net_solar_radiation_mean"][0] * seconds,
        "surface_net_thermal_radiation_sum": published["surface_net_thermal_radiation_mean"][0] * seconds,
        "surface_pressure": published["surface_pressure_mean"][0] * 1000.0,
        "volumetric_soil_water_layer_2": 0.32,
        "u_component_of_wind_10m": -0.5,
    }
    assert {name: row[name] for name in expected} == pytest.approx(expected, rel=1e-12)
    # what the format never has is null, every row, and declared absent
    assert source.absent_variables == FORMAT_ABSENT
    assert set(FORMAT_ABSENT) == {
        "skin_temperature",
        "snowfall_sum",
        "surface_thermal_radiation_downwards_sum",
        "surface_solar_radiation_downwards_sum",
        "surface_latent_heat_flux_sum",
        "surface_sensible_heat_flux_sum",
    }
    assert all(frame[name].null_count() == frame.height for name in FORMAT_ABSENT)
    # every optional band the table has, none it does not (potential evaporation is left out)
    assert set(frame.columns) == {"unit", "month", "date", *catalog.ERA5_LAND_BANDS, *catalog.ERA5_LAND_OPTIONAL_BANDS}


def test_csv_and_parquet_read_the_same(tmp_path, table):
    parquet = write_basin_table(tmp_path / "monthly_by_basin.parquet")
    from_csv = _quiet(_source(table)).read_months(COMPLETE)
    from_parquet = _quiet(_source(parquet)).read_months(COMPLETE)
    assert from_parquet.equals(from_csv)


def test_a_partial_newest_month_is_not_published(table):
    source = _quiet(_source(table))
    assert source.latest_month() == dt.date(2005, 3, 1)
    with pytest.raises(NotPublishedError, match="2005-04 is not published yet"):
        source.read_months([LAST_MONTH])
    complete = write_basin_table(table.with_name("complete.csv"), basin_rows(partial_last=False))
    assert _quiet(_source(complete)).latest_month() == LAST_MONTH


def test_the_basins_are_the_units(tmp_path, table):
    attributes = write_basin_attributes(tmp_path / "basin_attributes.csv")
    source = _quiet(_source(table, attributes=attributes))
    units = units_of(source)
    assert units.kind == "basin" and units.key_column == "unit"
    frame = units.frame
    assert frame["unit"].to_list() == [3, 5, 15, 308]
    assert frame["name"].to_list() == [b[4] for b in BASINS]
    assert frame["band"].to_list() == [1, 1, 2, None]  # 308 lies east of the bands' box
    assert frame["nearest_band"].to_list() == [1, 1, 2, 0]
    assert frame["series_group"].to_list() == [3, 3, 15, 308]  # 5 repeats 3's series
    assert frame["area_km2"].to_list() == pytest.approx([b[3] for b in BASINS])
    # without an attributes file, the names are the ids
    assert _quiet(_source(table)).units().frame["name"][0] == "basin 3"


def test_a_subset_of_basins(table):
    source = _quiet(_source(table, basins=[15, 308]))
    assert source.units().ids.tolist() == [15, 308]
    assert set(source.read_months(COMPLETE[:2])["unit"].to_list()) == {15, 308}
    with pytest.raises(SourceError, match=r"basin\(s\) \[7\] asked for are not in the table"):
        _source(table, basins=[15, 7]).units()


def test_a_band_the_table_lacks_can_be_declared_absent(table):
    rows = basin_rows().drop("surface_pressure_mean", "volumetric_soil_water_layer_4_mean")
    path = write_basin_table(table.with_name("fewer.csv"), rows)
    with pytest.raises(SourceError, match=r"column\(s\) \['volumetric_soil_water_layer_4_mean', 'surface_press"):
        _source(path).units()
    source = _quiet(_source(path, absent=["surface_pressure", "volumetric_soil_water_layer_4"]))
    assert "volumetric_soil_water_layer_4" in source.absent_variables
    frame = source.read_months(COMPLETE[:1])
    assert frame["volumetric_soil_water_layer_4"].null_count() == frame.height
    assert "surface_pressure" not in frame.columns  # an optional band it lacks is simply not landed


def _fault(rows: pl.DataFrame, station: int, year: int, month: int, column: str, value) -> pl.DataFrame:
    """`value` in `column` of one basin and month (the column as text where `value` is text)."""
    hit = (pl.col("station_id") == station) & (pl.col("year") == year) & (pl.col("month") == month)
    if isinstance(value, str):
        rows = rows.with_columns(pl.col(column).cast(pl.Utf8))
    return rows.with_columns(pl.when(hit).then(pl.lit(value)).otherwise(pl.col(column)).alias(column))


BAD_TABLES = {
    "kelvin where degC is expected": (
        lambda r: _fault(r, 15, 2004, 7, "temperature_2m_mean", 290.0),
        r"variable temperature_2m, basin 15 \(band 2\), month 2004-07: value 563.15 outside .* K",
    ),
    "pascal where kPa is expected": (
        lambda r: r.with_columns(pl.col("surface_pressure_mean") * 1000.0),
        r"variable surface_pressure, basin 3 \(band 1\), month 2003-01: value .* outside .* Pa",
    ),
    "precipitation in m": (
        lambda r: r.with_columns(pl.col("total_precipitation_sum") / 1000.0),
        r"variable total_precipitation_sum, basin 3: mean .* mm per month, implausibly little for mm",
    ),
    "a missing value": (
        lambda r: _fault(r, 308, 2004, 3, "soil_temperature_level_2_mean", None),
        r"column soil_temperature_level_2_mean, basin 308, month 2004-03: value is missing",
    ),
    "NaN": (
        lambda r: _fault(r, 5, 2003, 11, "volumetric_soil_water_layer_1_mean", "NaN"),
        r"column volumetric_soil_water_layer_1_mean, basin 5, month 2003-11: value is missing",
    ),
    "a word in a number column": (
        lambda r: _fault(r, 3, 2004, 1, "total_precipitation_sum", "n/a"),
        r"column total_precipitation_sum, basin 3, month 2004-01: 'n/a' is not a number",
    ),
    "a gap month": (
        lambda r: r.filter(~((pl.col("year") == 2004) & (pl.col("month") == 6))),
        r"month 2004-06 is missing for every basin",
    ),
    "a duplicate month": (
        lambda r: pl.concat([r, r.filter((pl.col("station_id") == 15) & (pl.col("year") == 2003))]),
        r"basin 15, month 2003-01: duplicate month for this basin",
    ),
    "a basin missing in a month": (
        lambda r: r.filter(~((pl.col("station_id") == 308) & (pl.col("year") == 2004) & (pl.col("month") == 9))),
        r"basin 308, month 2004-09: missing \(3 of 4 basins there\)",
    ),
    "a partial month inside the series": (
        lambda r: _fault(r, 5, 2004, 5, "n_days", 20),
        r"basin 5, month 2004-05: n_days 20 of 31: a partial month inside the series",
    ),
    "a centroid that moves": (
        lambda r: _fault(r, 15, 2004, 2, "latitude", 64.3),
        r"basin 15, month 2004-02: latitude 64.3 differs from the basin's first month",
    ),
    "a missing column": (
        lambda r: r.drop("soil_temperature_level_3_mean"),
        r"column\(s\) \['soil_temperature_level_3_mean'\] missing \(variables \['soil_temperature_level_3'\]",
    ),
}


@pytest.mark.parametrize("fault", BAD_TABLES)
def test_bad_input_is_named_by_file_variable_basin_and_month(tmp_path, fault):
    spoil, message = BAD_TABLES[fault]
    path = write_basin_table(tmp_path / "monthly_by_basin.csv", spoil(basin_rows()))
    source = _source(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(SourceError, match=message) as error:
            source.read_months(COMPLETE)
    assert str(path) in str(error.value)


def test_a_truncated_file_is_refused(tmp_path, table):
    text = table.read_text()
    cut = tmp_path / "cut.csv"
    cut.write_text(text[: text.rindex(",", 0, len(text) - 40)])  # the last row ends mid-way
    with pytest.raises(SourceError, match=r"basin 308, month 2005-04: value is missing \(the last row: is the file"):
        _source(cut).units()
    whole_rows = tmp_path / "rows.csv"
    whole_rows.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 1])  # the last row gone whole
    with pytest.raises(SourceError, match=r"basin 308, month 2005-04: missing \(3 of 4 basins there\)"):
        _source(whole_rows).units()


def test_the_sources_file_chooses_basin_tables(tmp_path, table):
    shutil.copy(table, tmp_path / "basins.csv")
    write_basin_attributes(tmp_path / "attributes.csv")
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        "reanalysis:\n  kind: basin_table\n  path: basins.csv\n  attributes: attributes.csv\n  basins: [3, 15]\n"
    )
    config = load_sources(sources)
    source = _quiet(reanalysis_source(config, demo_settings=None))
    assert isinstance(source, BasinTableReanalysisSource)
    assert source.units().frame["name"].to_list() == ["Little Meadow Creek", "Goldstream Creek"]
    sources.write_text("reanalysis:\n  kind: basin_table\n  path: basins.csv\n  absent: [snow_depth]\n")
    with pytest.raises(SourcesConfigError, match=r"reanalysis.absent: unknown ERA5-Land band\(s\) \['snow_depth'\]"):
        load_sources(sources)
    sources.write_text("reanalysis:\n  kind: basin_table\n  path: basins.csv\n  attributes: nowhere.csv\n")
    with pytest.raises(SourcesConfigError, match=r"reanalysis.attributes: no such file: .*nowhere.csv"):
        load_sources(sources)


@pytest.mark.skipif(not (REAL / "monthly_by_basin.csv").is_file(), reason="no real basin tables beside the repo")
def test_the_real_basin_tables():
    source = _quiet(_source(REAL / "monthly_by_basin.csv", attributes=REAL / "basin_attributes.csv"))
    assert source.latest_month() == dt.date(2023, 3, 1)  # April 2023 is partial (25 days)
    units = source.units().frame
    assert units.height == 96
    assert units["band"].null_count() == 13  # south of band 0 or east of the box
    assert units.filter(pl.col("unit") == 308)["nearest_band"].to_list() == [0]
    groups = units.group_by("series_group").agg(pl.col("unit")).filter(pl.col("unit").list.len() > 1)
    assert sorted(sorted(g) for g in groups["unit"].to_list())[-1] == [184, 185]
    assert units.filter(pl.col("series_group") == 170)["unit"].to_list() == [170, 171, 172]
    assert groups.height == 9
    frame = source.read_months(catalog.month_range(dt.date(2001, 1, 1), dt.date(2001, 2, 1)))
    first = frame.filter((pl.col("unit") == 3) & (pl.col("month") == dt.date(2001, 1, 1))).row(0, named=True)
    assert first["temperature_2m"] == pytest.approx(-5.9581 + 273.15)
    assert first["total_precipitation_sum"] == pytest.approx(0.13143)
    assert first["surface_net_thermal_radiation_sum"] == pytest.approx(-23.751 * 31 * 86400)
    assert first["surface_pressure"] == pytest.approx(97185.2)


def test_the_raw_assets_land_basins_and_their_units(tmp_path, table):
    from dagster import materialize
    from instances import instance_knowing_months

    from assets import raw
    from dagster_project import settings
    from dagster_project.resources import build_resources
    from sources.units import SpatialUnits

    write_basin_attributes(tmp_path / "basin_attributes.csv")
    sources = tmp_path / "sources.yaml"
    sources.write_text(f"reanalysis:\n  kind: basin_table\n  path: {table}\n  attributes: basin_attributes.csv\n")
    config = settings.from_environment(
        {settings.ENV_LAKE_ROOT: str(tmp_path / "data"), settings.ENV_SOURCES_FILE: str(sources)}
    )
    tags = {"dagster/asset_partition_range_start": "2003-01-01", "dagster/asset_partition_range_end": "2003-03-01"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        months = materialize(
            [raw.era5_land_monthly], resources=build_resources(config), instance=instance_knowing_months(), tags=tags
        )
        units = materialize([raw.spatial_units], resources=build_resources(config))
    assert months.success and units.success
    metadata = months.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["basins"].value == len(BASINS)
    assert metadata["absent_variables"].value == ", ".join(FORMAT_ABSENT)
    schema = {c.name: (c.type, c.description) for c in metadata["dagster/column_schema"].schema.columns}
    assert schema["unit"] == ("int64", "key") and schema["surface_pressure"] == ("float64", "Pa")
    landed = pl.read_parquet(config.lake_root / "raw" / "era5_land_monthly" / "2003-02.parquet")
    assert landed.columns[:3] == ["unit", "month", "date"] and landed["unit"].to_list() == [3, 5, 15, 308]
    units_file = config.lake_root / "raw" / "spatial_units.parquet"
    landed_units = SpatialUnits.from_table(pl.read_parquet(units_file))
    assert landed_units.kind == "basin" and landed_units.frame["name"][0] == "Little Meadow Creek"
    units_metadata = units.get_asset_materialization_events()[0].materialization.metadata
    assert units_metadata["units"].value == 4 and units_metadata["outside_the_bands"].value == 1
    assert units_metadata["series_groups"].value == 3
