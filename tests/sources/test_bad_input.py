"""Bad input, one case each, through a real materialization of the raw asset: the run fails with
an error naming the file, variable, band or month, and every file of the lake (Parquet and the
DuckDB warehouse) is byte-for-byte what it was before."""

import csv
import datetime as dt
import hashlib
import warnings
from pathlib import Path

import fake_ee
import numpy as np
import pytest
from dagster import materialize
from error_chain import error_text
from generated_files import cds_field, write_cds_netcdf, write_cds_zip, write_cmip5
from instances import instance_knowing_months

from assets import raw
from dagster_project import settings
from dagster_project.resources import build_resources
from sources import catalog

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
MONTHS = [dt.date(2020, m, 1) for m in (1, 2, 3)]
RANGE = {"dagster/asset_partition_range_start": "2020-01-01", "dagster/asset_partition_range_end": "2020-03-01"}
KNOWN_MONTHS = instance_knowing_months()  # the reanalysis months a test asks for are partitions


def checksums(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """A lake holding demo data of every raw asset (the state a bad run must not touch)."""
    root = tmp_path_factory.mktemp("bad_input")
    config = settings.from_environment(
        {settings.ENV_LAKE_ROOT: str(root / "data"), settings.ENV_DEMO_LATEST_MONTH: "2020-03"}
    )
    resources = build_resources(config)
    assert materialize([raw.band_lithology, raw.band_soil_properties], resources=resources).success
    assert materialize([raw.era5_land_monthly], resources=resources, instance=KNOWN_MONTHS, tags=RANGE).success
    assert materialize([raw.cmip5_monthly], resources=resources, partition_key="rcp45").success
    return root


def run_with(lake: Path, tmp_path: Path, sources_yaml: str, asset, **run) -> str:
    """Materialize `asset` with the given sources file; return the error text, check the lake."""
    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text(sources_yaml)
    config = settings.from_environment(
        {settings.ENV_LAKE_ROOT: str(lake / "data"), settings.ENV_SOURCES_FILE: str(sources_file)}
    )
    before = checksums(lake / "data")
    resources = build_resources(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(Exception) as failed:
            materialize([asset], resources=resources, instance=KNOWN_MONTHS, **run)
    assert checksums(lake / "data") == before
    return error_text(failed.value)


def run_table(lake: Path, tmp_path: Path, header: list[str], rows: list[list[str]]) -> str:
    """`run_with` the published band table `rows` as the rcp45 run of the climate model."""
    sources_yaml = table_yaml(write_table(tmp_path / "rcp45.csv", header, rows))
    return run_with(lake, tmp_path, sources_yaml, raw.cmip5_monthly, partition_key="rcp45")


def cds_yaml(*paths: Path) -> str:
    return "reanalysis:\n  kind: cds\n  paths:\n" + "".join(f"    - {p}\n" for p in paths)


def esgf_yaml(folder: Path) -> str:
    return f"climate_model:\n  kind: esgf\n  paths: ['{folder}/*.nc']\n"


def table_yaml(path: Path) -> str:
    return (
        "climate_model:\n  kind: band_table\n  model: GFDL-ESM2M\n  calendar: noleap\n"
        f"  files: {{rcp45: {path}}}\n  columns: {{avg_volumetric_water_content: mrsos}}\n  absent: [mrso]\n"
    )


def published_rows(limit_months: int = 24) -> tuple[list[str], list[list[str]]]:
    """The first months of the real RCP4.5 table, as text rows."""
    with open(REAL / "RCP45_df.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1 : 1 + 6 * limit_months]


def write_table(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


def esgf_run(folder: Path, skip: str | None = None, **overrides) -> Path:
    folder.mkdir(exist_ok=True)
    for variable in catalog.CMIP5_VARIABLES:
        if variable == skip:
            continue
        kwargs = overrides.get(variable, {})
        write_cmip5(folder, variable, "rcp45", (2006, 1), (2010, 12), **kwargs)
    return folder


needs_real = pytest.mark.skipif(not (REAL / "RCP45_df.csv").is_file(), reason="real published tables absent")


def test_missing_variable(lake, tmp_path):
    path = write_cds_netcdf(
        tmp_path / "era5_land.nc", MONTHS, names=[n for n in catalog.ERA5_LAND_CDS_NAMES if n != "sshf"]
    )
    text = run_with(lake, tmp_path, cds_yaml(path), raw.era5_land_monthly, tags=RANGE)
    assert "variable sshf" in text and "is missing" in text and str(path) in text


def test_a_unit_that_cannot_be_right(lake, tmp_path):
    folder = esgf_run(tmp_path / "esgf", tas={"units": "m s-1"})
    text = run_with(lake, tmp_path, esgf_yaml(folder), raw.cmip5_monthly, partition_key="rcp45")
    assert "tas_Amon_TEST-ESM1_rcp45_r1i1p1_200601-201012.nc: variable tas is in 'm s-1'" in text


@needs_real
def test_duplicated_month(lake, tmp_path):
    header, rows = published_rows()
    rows.append(list(rows[14]))  # band_3 of 2021-03 once more
    text = run_table(lake, tmp_path, header, rows)
    assert "rcp45.csv" in text and "band 2, month 2021-03: duplicate month" in text


def test_gap(lake, tmp_path):
    folder = tmp_path / "esgf"
    folder.mkdir()
    for variable in catalog.CMIP5_VARIABLES:
        write_cmip5(folder, variable, "rcp45", (2006, 1), (2010, 12))
        write_cmip5(folder, variable, "rcp45", (2011, 6), (2012, 12))  # 2011-01..2011-05 never published
    text = run_with(lake, tmp_path, esgf_yaml(folder), raw.cmip5_monthly, partition_key="rcp45")
    assert "month 2011-01 is missing (the run jumps from 2010-12 to 2011-06)" in text and "201106-201212.nc" in text


def test_nan_band(lake, tmp_path):
    from generated_files import CDS_LAT

    values = cds_field("t2m", MONTHS)
    band = catalog.BANDS[2]
    values[1][(band.south - 0.25 <= CDS_LAT) & (band.north + 0.25 >= CDS_LAT)] = np.nan  # February, band 2
    path = write_cds_netcdf(tmp_path / "era5_land.nc", MONTHS, fields={"t2m": values})
    text = run_with(lake, tmp_path, cds_yaml(path), raw.era5_land_monthly, tags=RANGE)
    assert "era5_land.nc: variable t2m, band 2, month 2020-02: all NaN" in text


def test_truncated_netcdf(lake, tmp_path):
    path = write_cds_netcdf(tmp_path / "era5_land.nc", MONTHS)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    text = run_with(lake, tmp_path, cds_yaml(path), raw.era5_land_monthly, tags=RANGE)
    assert f"{path}: cannot read this netCDF file (truncated or not netCDF?)" in text


@needs_real
def test_unknown_band_name(lake, tmp_path):
    header, rows = published_rows()
    band = header.index("band")
    rows[20][band] = "band_7"
    text = run_table(lake, tmp_path, header, rows)
    assert "rcp45.csv: unknown band name 'band_7', month 2021-04; expected band_1..band_6" in text


def test_unsupported_calendar(lake, tmp_path):
    folder = esgf_run(tmp_path / "esgf")
    bad = next(folder.glob("rsds_*.nc"))
    import xarray as xr

    with xr.open_dataset(bad, decode_times=False) as dataset:
        dataset = dataset.load()
    dataset["time"].attrs["calendar"] = "mars_sol"
    bad.unlink()
    dataset.to_netcdf(bad)
    text = run_with(lake, tmp_path, esgf_yaml(folder), raw.cmip5_monthly, partition_key="rcp45")
    assert f"{bad}: unsupported calendar 'mars_sol'" in text


@needs_real
def test_wrong_band_count(lake, tmp_path):
    header, rows = published_rows()
    band = header.index("band")
    rows = [row for i, row in enumerate(rows) if not (i // 6 == 7 and row[band] == "band_6")]  # 2021-08 loses band 5
    text = run_table(lake, tmp_path, header, rows)
    assert "rcp45.csv" in text and "month 2021-08: 5 bands, expected 6" in text


@needs_real
def test_text_in_a_numeric_column(lake, tmp_path):
    header, rows = published_rows()
    column = header.index("temperature_2m")
    rows[9][column] = "n/a"  # 2021-02, band_4
    text = run_table(lake, tmp_path, header, rows)
    assert "rcp45.csv: variable tas (column 'temperature_2m'), band 3, month 2021-02: 'n/a' is not a number" in text


def test_zip_with_a_member_missing(lake, tmp_path):
    path = write_cds_zip(tmp_path / "era5_land.zip", MONTHS, step_types=("avgua",))
    text = run_with(lake, tmp_path, cds_yaml(path), raw.era5_land_monthly, tags=RANGE)
    assert f"{path}: ZIP has no member for step type avgad (variables tp, sf, strd, ssrd, slhf, sshf)" in text


def test_credentials_absent(lake, tmp_path, monkeypatch):
    server = fake_ee.Server(*fake_ee.grid())
    server.has_stored_credentials = False
    fake_ee.install(monkeypatch, server)
    yaml_text = "reanalysis:\n  kind: earth_engine\nearth_engine:\n  project: permafrost-test\n"
    text = run_with(lake, tmp_path, yaml_text, raw.era5_land_monthly, tags=RANGE)
    assert "Earth Engine could not authenticate" in text and "earthengine authenticate" in text
    assert "PERMAFROST_EE_SERVICE_ACCOUNT" in text  # says what to set
    assert server.network_calls == 0
