"""Build the configured source of each kind from a validated `SourcesConfig`.

Connectors are imported only when chosen: Earth Engine, cfgrib, regionmask and geopandas are
heavy, and the demo needs none of them.
"""

from __future__ import annotations

from sources.base import ClimateModelSource, ReanalysisSource, StaticSource
from sources.config import SourcesConfig


def reanalysis_source(config: SourcesConfig, demo_settings) -> ReanalysisSource:
    chosen = config.reanalysis
    if chosen.kind == "earth_engine":
        from sources.earth_engine import EarthEngineReanalysisSource

        return EarthEngineReanalysisSource(chosen, config.earth_engine)
    if chosen.kind == "cds":
        from sources.cds import CdsReanalysisSource

        return CdsReanalysisSource(chosen, weights_cache=config.weights_cache)
    if chosen.kind == "band_table":
        from sources.band_table import BandTableReanalysisSource

        return BandTableReanalysisSource(chosen)
    if chosen.kind == "basin_table":
        from sources.basin_table import BasinTableReanalysisSource

        return BasinTableReanalysisSource(chosen)
    if chosen.units == "cell":
        from sources.demo_grid import DemoCellReanalysisSource

        return DemoCellReanalysisSource(demo_settings)
    from sources.demo import DemoReanalysisSource

    return DemoReanalysisSource(demo_settings)


def reanalysis_grid(config: SourcesConfig):
    """The `sources.grid.Grid` whose land cells the configured reanalysis delivers (grid mode), or
    None when its units are not the cells of a grid (bands, basins). Today: the demo's synthetic
    grid (`reanalysis: {kind: demo, units: cell}`)."""
    chosen = config.reanalysis
    if chosen.kind == "demo" and chosen.units == "cell":
        from sources.simulator.grid import synthetic_grid

        return synthetic_grid().grid
    return None


def climate_model_source(config: SourcesConfig, demo_settings) -> ClimateModelSource:
    chosen = config.climate_model
    if chosen.kind == "esgf":
        from sources.esgf import EsgfClimateModelSource

        return EsgfClimateModelSource(chosen, weights_cache=config.weights_cache)
    if chosen.kind == "band_table":
        from sources.band_table import BandTableClimateModelSource

        return BandTableClimateModelSource(chosen)
    from sources.demo import DemoClimateModelSource

    return DemoClimateModelSource(demo_settings)


def static_source(config: SourcesConfig, demo_settings) -> StaticSource:
    chosen = config.static
    if chosen.kind == "files":
        from sources.static_files import FilesStaticSource

        return FilesStaticSource(chosen, config.earth_engine, weights_cache=config.weights_cache)
    from sources.demo import DemoStaticSource

    return DemoStaticSource(demo_settings)
