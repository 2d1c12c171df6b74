"""OpenLandMap soil properties from GeoTIFF files (EPSG:4326), in their stored units.

Bulk density of the fine earth (x10 kg m-3) and organic carbon (x5 g kg-1) at b0, b10, b30, b60,
b100 and b200 cm: per property one file with six bands in depth order, or one file per depth.
Only the window over the bands is read (rasterio), averaged down when it exceeds `max_pixels`;
the band means are area-weighted like every gridded field (`sources.regions`). The Earth Engine
path is `sources.earth_engine.read_openlandmap_earth_engine`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from sources import catalog
from sources.base import SourceError
from sources.regions import MARGIN_DEG, band_means, band_weights


def _read_window(path: Path, band_index: int, max_pixels: int, depth: str):
    """(values, lat, lon) of one raster band over the Alaska bands, NaN where nodata."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import from_bounds

    try:
        dataset = rasterio.open(path)
    except rasterio.errors.RasterioIOError as error:
        raise SourceError(f"{path}: cannot read this GeoTIFF: {error}") from None
    with dataset:
        if dataset.crs is None or dataset.crs.to_epsg() != 4326:
            raise SourceError(f"{path}: coordinate reference system {dataset.crs} is not EPSG:4326 (OpenLandMap's)")
        if band_index > dataset.count:
            raise SourceError(f"{path}: depth {depth} needs band {band_index}, the file has {dataset.count}")
        south = catalog.BANDS[0].south - MARGIN_DEG
        north = catalog.BANDS[-1].north + MARGIN_DEG
        window = from_bounds(
            catalog.LON_WEST - MARGIN_DEG, south, catalog.LON_EAST + MARGIN_DEG, north, dataset.transform
        )
        window = window.intersection(rasterio.windows.Window(0, 0, dataset.width, dataset.height))
        rows, cols = int(round(window.height)), int(round(window.width))
        factor = max(1, int(np.ceil(np.sqrt(rows * cols / max_pixels))))
        shape = (max(1, rows // factor), max(1, cols // factor))
        values = dataset.read(
            band_index, window=window, out_shape=shape, resampling=Resampling.average, masked=True
        ).astype(np.float64)
        transform = dataset.window_transform(window) @ rasterio.Affine.scale(cols / shape[1], rows / shape[0])
    lon = transform.c + transform.a * (np.arange(shape[1]) + 0.5)
    lat = transform.f + transform.e * (np.arange(shape[0]) + 0.5)
    return np.ma.filled(values, np.nan), lat, lon


def read_geotiffs(config, weights_cache: Path | None = None) -> pl.DataFrame:
    """Rows band, property, asset, stored_unit, b0..b200 (`OpenLandMapGeoTiffConfig`)."""
    rows = []
    for product, spec in catalog.OPENLANDMAP_PRODUCTS.items():
        files = getattr(config, product)
        depths = {}
        for i, depth in enumerate(catalog.OPENLANDMAP_DEPTH_COLUMNS):
            path, band_index = (Path(files[depth]), 1) if isinstance(files, dict) else (Path(files), i + 1)
            values, lat, lon = _read_window(path, band_index, config.max_pixels, depth)
            weights = band_weights(lat, lon, where=str(path), cache_dir=weights_cache)
            depths[depth] = band_means(values, weights, str(path), f"{product} {depth}")[0]
        for band in catalog.BANDS:
            rows.append(
                {
                    "band": band.index,
                    "property": product,
                    "asset": str(spec["asset"]),
                    "stored_unit": str(spec["stored_unit"]),
                    **{depth: float(depths[depth][band.index]) for depth in catalog.OPENLANDMAP_DEPTH_COLUMNS},
                }
            )
    schema = {"band": pl.Int32, "property": pl.Utf8, "asset": pl.Utf8, "stored_unit": pl.Utf8}
    schema.update({depth: pl.Float64 for depth in catalog.OPENLANDMAP_DEPTH_COLUMNS})
    return pl.DataFrame(rows, schema=schema)
