"""USGS lithology from a generated GeoPackage shaped as SIM 3340, and OpenLandMap from generated
GeoTIFFs: the real readers (pyogrio/geopandas, rasterio, regionmask) on small files."""

import warnings

import numpy as np
import polars as pl
import pytest
from dagster import materialize
from generated_files import lonlat_rectangle, write_geology, write_openlandmap_tif

from assets import raw
from dagster_project import settings
from dagster_project.resources import build_resources
from sources import catalog
from sources.base import SourceError
from sources.config import OpenLandMapGeoTiffConfig, UsgsGeologyConfig
from sources.openlandmap import read_geotiffs
from sources.usgs import load_lithology_map, read_lithology

UNITS = [
    ("S", (-168.0, 59.0, -155.0, 65.3)),  # sedimentary
    ("M", (-155.0, 59.0, -141.0, 65.3)),  # two major lithologies: half metamorphic, half melange
    ("V", (-168.0, 65.3, -141.0, 68.0)),  # volcanic (a minor sedimentary rank is ignored)
    ("Q", (-168.0, 68.0, -160.0, 72.0)),  # unconsolidated
    ("Z", (-160.0, 68.0, -141.0, 72.0)),  # a term the table does not know: unknown, with a warning
    ("S", (-140.0, 60.0, -135.0, 65.0)),  # Yukon: outside the bands' box, never counted
]
LITHOLOGY = [
    {"NSACLASS": "S", "LITH1": "Sedimentary", "LITH2": "Clastic", "RANK": "Major"},
    {"NSACLASS": "M", "LITH1": "Metamorphic", "LITH2": "Schist", "RANK": "Major"},
    {"NSACLASS": "M", "LITH1": "Melange", "LITH2": "", "RANK": "Major"},
    {"NSACLASS": "V", "LITH1": "Igneous", "LITH2": "Volcanic", "RANK": "Major"},
    {"NSACLASS": "V", "LITH1": "Sedimentary", "LITH2": "Clastic", "RANK": "Minor"},
    {"NSACLASS": "Q", "LITH1": "Unconsolidated", "LITH2": "Alluvium", "RANK": "Major"},
    {"NSACLASS": "Z", "LITH1": "Mystery rock", "LITH2": "", "RANK": "Major"},
]


def ellipsoid_area_km2(west, south, east, north) -> float:
    """Area on the GRS80 ellipsoid (EPSG:3338's), by geodesics along a finely densified outline:
    independent of the projection and overlay the reader uses."""
    from pyproj import Geod

    lon, lat = lonlat_rectangle(west, south, east, north).exterior.coords.xy
    area, _ = Geod(ellps="GRS80").polygon_area_perimeter(lon, lat)
    return abs(area) / 1.0e6


def expected_areas() -> dict[tuple[int, str], float]:
    shares = {"S": {"sedimentary": 1.0}, "M": {"metamorphic": 0.5, "melange": 0.5}, "V": {"volcanic": 1.0}}
    shares |= {"Q": {"unconsolidated": 1.0}, "Z": {"unknown": 1.0}}
    areas: dict[tuple[int, str], float] = {}
    for key, (west, south, east, north) in UNITS:
        west, east = max(west, catalog.LON_WEST), min(east, catalog.LON_EAST)
        for band in catalog.BANDS:
            lo, hi = max(south, band.south), min(north, band.north)
            if west >= east or lo >= hi:
                continue
            for klass, share in shares[key].items():
                areas[(band.index, klass)] = areas.get((band.index, klass), 0.0) + share * ellipsoid_area_km2(
                    west, lo, east, hi
                )
    return areas


@pytest.fixture
def geology(tmp_path):
    return UsgsGeologyConfig(path=write_geology(tmp_path / "AKStategeol.gpkg", UNITS, LITHOLOGY))


def test_lithology_areas_per_band_in_an_equal_area_projection(geology):
    with pytest.warns(UserWarning, match=r"counted as unknown: .*Mystery rock"):
        frame = read_lithology(geology)
    assert frame.height == catalog.N_BANDS * len(catalog.LITHOLOGY_CLASSES)
    got = {(r["band"], r["lithology"]): r["area_km2"] for r in frame.iter_rows(named=True)}
    expected = expected_areas()
    for key, area in got.items():
        # EPSG:3338 is equal-area: its areas are the ellipsoid's
        assert area == pytest.approx(expected.get(key, 0.0), rel=1e-3, abs=1e-6), key
    # band 2 (63.29-65.30 N) is split by the units at 155 W: sedimentary west, metamorphic/melange east
    assert got[(2, "metamorphic")] == pytest.approx(got[(2, "melange")])
    assert got[(2, "sedimentary")] > got[(2, "metamorphic")] > 0
    assert got[(1, "volcanic")] == 0.0 and got[(5, "volcanic")] == 0.0 and got[(5, "unknown")] > 0


def test_the_lithology_map_is_the_seed_and_names_only_product_classes():
    mapping = load_lithology_map(UsgsGeologyConfig.model_fields["lithology_map"].default)
    assert set(mapping.values()) <= set(catalog.LITHOLOGY_CLASSES)
    assert mapping[("igneous", "volcanic")] == "volcanic" and mapping[("ice", "")] == "glacier"


def test_a_missing_layer_is_named(tmp_path):
    path = write_geology(tmp_path / "geology.gpkg", UNITS, LITHOLOGY)
    config = UsgsGeologyConfig(path=path, layer="AKStategeolpoly_generalized")
    with pytest.raises(SourceError, match=r"no layer 'AKStategeolpoly_generalized'; layers \['AKStategeol_poly'"):
        read_lithology(config)


def olm_value(lat, depth_cm):
    return 100.0 + depth_cm / 4.0 + 3.0 * (lat - 65.0)


def cos_weighted_mean(depth_cm: int, band) -> float:
    """The exact area-weighted mean of olm_value over the band (it depends on latitude only)."""
    lat = np.linspace(band.south, band.north, 200001)
    weight = np.cos(np.deg2rad(lat))
    return float(np.sum(olm_value(lat, depth_cm) * weight) / np.sum(weight))


def test_openlandmap_geotiffs_give_area_weighted_band_means(tmp_path):
    one_file = write_openlandmap_tif(tmp_path / "bulk_density.tif", olm_value)
    per_depth = {
        depth: write_openlandmap_tif(tmp_path / f"oc_{depth}.tif", olm_value, depths_cm=[d])
        for depth, d in zip(catalog.OPENLANDMAP_DEPTH_COLUMNS, catalog.OPENLANDMAP_DEPTHS_CM, strict=True)
    }
    config = OpenLandMapGeoTiffConfig(kind="geotiff", bulk_density=one_file, organic_carbon=per_depth)
    frame = read_geotiffs(config)
    assert frame.height == 12
    for product in ("bulk_density", "organic_carbon"):
        rows = frame.filter(pl.col("property") == product).sort("band")
        assert rows["stored_unit"][0] == catalog.OPENLANDMAP_PRODUCTS[product]["stored_unit"]
        for depth, d in zip(catalog.OPENLANDMAP_DEPTH_COLUMNS, catalog.OPENLANDMAP_DEPTHS_CM, strict=True):
            exact = [cos_weighted_mean(d, band) for band in catalog.BANDS]
            np.testing.assert_allclose(rows[depth].to_numpy(), exact, rtol=2e-4)
    # read averaged down to under 20 000 pixels, the means barely move
    coarse = read_geotiffs(config.model_copy(update={"max_pixels": 20_000}))
    np.testing.assert_allclose(coarse["b30"].to_numpy(), frame["b30"].to_numpy(), rtol=2e-3)


def test_real_static_files_land_through_the_raw_assets(tmp_path, monkeypatch):
    geology = write_geology(tmp_path / "AKStategeol.gpkg", UNITS, LITHOLOGY)
    tif = write_openlandmap_tif(tmp_path / "soil.tif", olm_value)
    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text(
        f"static:\n  kind: files\n  geology:\n    path: {geology.name}\n"
        f"  soil:\n    kind: geotiff\n    bulk_density: {tif.name}\n    organic_carbon: {tif.name}\n"
    )
    config = settings.from_environment(
        {settings.ENV_LAKE_ROOT: str(tmp_path / "data"), settings.ENV_SOURCES_FILE: str(sources_file)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = materialize([raw.band_lithology, raw.band_soil_properties], resources=build_resources(config))
    assert result.success
    lithology = pl.read_parquet(config.lake_root / "raw" / "band_lithology.parquet")
    assert lithology.filter(pl.col("band") == 0)["area_km2"].sum() == pytest.approx(
        sum(a for (b, _), a in expected_areas().items() if b == 0), rel=5e-3
    )
    sources = {e.materialization.metadata["source"].value for e in result.get_asset_materialization_events()}
    assert sources == {"usgs AKStategeol.gpkg + openlandmap geotiff"}
