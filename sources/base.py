"""One interface per kind of source, so an asset never knows which source it reads.

Every source returns polars frames in its product's own raw schema (see `catalog`):
reduced to spatial units (the six bands unless a reanalysis source declares others, see
`units_of`), but with the product's names and units.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable

import polars as pl

from sources import catalog
from sources.units import SpatialUnits, band_units


class SourceError(ValueError):
    """Bad or unexpected input from a source; the message names file, variable, band, month."""


class NotPublishedError(LookupError):
    """A month was asked for that the source has not published yet."""

    def __init__(self, source: str, month: dt.date, latest: dt.date | None):
        self.source = source
        self.month = month
        self.latest = latest
        newest = latest.strftime("%Y-%m") if latest else "none"
        super().__init__(f"{source}: month {month:%Y-%m} is not published yet (newest published month: {newest})")


def published_months(source: str, months, latest: dt.date) -> list[dt.date]:
    """The distinct month starts of `months`, sorted; `NotPublishedError` for the first one after
    `latest`, the source's newest published month."""
    wanted = sorted({catalog.month_start(m) for m in months})
    late = [m for m in wanted if m > latest]
    if late:
        raise NotPublishedError(source, late[0], latest)
    return wanted


@runtime_checkable
class ReanalysisSource(Protocol):
    """ERA5-Land monthly means per spatial unit, Earth Engine MONTHLY_AGGR band names and units.

    A source whose units are not the six bands also has `units()` (`DeclaresSpatialUnits`); it is
    not a member here, so every band source stays a `ReanalysisSource` without it.
    """

    name: str

    def latest_month(self) -> dt.date:
        """Newest month the source has published, asked at run time."""
        ...

    def read_months(self, months: list[dt.date]) -> pl.DataFrame:
        """Rows `band` (0-5), `month` (first day), then `catalog.ERA5_LAND_BANDS` (and those of
        `catalog.ERA5_LAND_OPTIONAL_BANDS` the source has). A source of other units has `unit`
        (its `units()` ids) instead of `band`.

        Raises NotPublishedError for any month after `latest_month()`.
        """
        ...


@runtime_checkable
class DeclaresSpatialUnits(Protocol):
    """A reanalysis source whose rows are other units than the six bands (basins, cells)."""

    def units(self) -> SpatialUnits:
        """The units its rows stand for, one row each (`sources.units`)."""
        ...


def units_of(source: object) -> SpatialUnits:
    """The spatial units of a reanalysis source: its own `units()`, else the six bands."""
    return source.units() if isinstance(source, DeclaresSpatialUnits) else band_units()


@runtime_checkable
class ClimateModelSource(Protocol):
    """CMIP5 monthly band means, CMIP variable names and units."""

    name: str

    def experiments(self) -> tuple[str, ...]: ...

    def read_experiment(self, experiment: str) -> pl.DataFrame:
        """Rows `band`, `month` (first day), `calendar`, `model`, then `catalog.CMIP5_VARIABLES`."""
        ...


@runtime_checkable
class PerfectModelSource(Protocol):
    """A climate-model source that also knows what its own soil did: a simulator (the demo).

    Real climate models publish no soil temperature of the world they simulate, so real sources
    do not implement this; `perfect_model_truth` below answers None for them.
    """

    def perfect_model_truth(self, pathway: str) -> pl.DataFrame:
        """Rows `band`, `month` (the run's months), canonical drivers, `w_0..w_3` and
        `t_soil_0..t_soil_3` (degC): the simulator's soil under `pathway` on the model's weather
        without its bias."""
        ...

    def perfect_model_floor(self, pathway: str, drivers: pl.DataFrame) -> pl.DataFrame:
        """Rows `band`, `month`, `t_soil_0..t_soil_3`: the simulator's soil driven by `drivers`
        (canonical, e.g. the bias-corrected scenario), the best any model of them can do."""
        ...


def perfect_model_truth(source: object, pathway: str) -> pl.DataFrame | None:
    """The source's simulator truth under `pathway`, or None when it has none (a real source)."""
    return source.perfect_model_truth(pathway) if isinstance(source, PerfectModelSource) else None


@runtime_checkable
class StaticSource(Protocol):
    """Per-band static geology and soil extracts."""

    name: str

    def read_lithology(self) -> pl.DataFrame:
        """Rows `band`, `lithology` (catalog.LITHOLOGY_CLASSES), `area_km2` (EPSG:3338 areas)."""
        ...

    def read_soil_properties(self) -> pl.DataFrame:
        """Rows `band`, `property`, `asset`, `stored_unit`, then b0..b200 in stored units."""
        ...
