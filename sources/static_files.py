"""Real static extracts: USGS lithology from the geologic map's files, OpenLandMap soil from
Earth Engine or GeoTIFF files (`FilesStaticConfig`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sources.config import EarthEngineAuth


class FilesStaticSource:
    def __init__(self, config, auth: EarthEngineAuth, weights_cache: Path | None = None, client=None):
        self.config = config
        self.auth = auth
        self.weights_cache = weights_cache
        self._client = client
        self.name = f"usgs {Path(config.geology.path).name} + openlandmap {config.soil.kind}"

    def read_lithology(self) -> pl.DataFrame:
        from sources.usgs import read_lithology

        return read_lithology(self.config.geology)

    def read_soil_properties(self) -> pl.DataFrame:
        soil = self.config.soil
        if soil.kind == "earth_engine":
            from sources.earth_engine import EarthEngineClient, read_openlandmap_earth_engine

            client = self._client or EarthEngineClient(self.auth, soil.requests)
            return read_openlandmap_earth_engine(client, soil.scale_m)
        from sources.openlandmap import read_geotiffs

        return read_geotiffs(soil, self.weights_cache)
