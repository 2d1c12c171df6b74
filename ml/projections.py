"""Soil-temperature projections 2024-2100: long frames, ensemble statistics, CF-netCDF export.

A projection frame is long, one row per scenario, model, band and month::

    scenario  str   RCP experiment (catalog.RCP_EXPERIMENTS: rcp26, rcp45, rcp60, rcp85)
    model     str   architecture (or architecture + seed) that produced it, e.g. "gru";
                    ENSEMBLE_MODEL ("ensemble_mean") for the rows added by ``with_ensemble``
    band      i64   latitude band 0-5 (catalog.BANDS)
    month     date  first day of the month predicted (normally 2024-01-01 .. 2100-12-01)
    t_soil_0..t_soil_3  f64  degC, one per soil layer (catalog.SOIL_LAYERS_M, top first)

``with_ensemble`` adds the ensemble rows and the ``t_soil_k_spread`` columns (standard
deviation across models). ``to_cf_netcdf`` writes the frame as a CF-1.8 netCDF file and
``late_century_difference`` compares two scenarios over a period (rcp85 minus rcp26 over
2081-2100 by default: positive where rcp85 is warmer).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from ml.active_layer import MID_DEPTHS_M
from sources import catalog

ENSEMBLE_MODEL = "ensemble_mean"
SPREAD_SUFFIX = "_spread"
SPREAD_COLUMNS: tuple[str, ...] = tuple(f"{c}{SPREAD_SUFFIX}" for c in catalog.TARGETS)
KEYS: tuple[str, ...] = ("scenario", "model", "band", "month")
TIME_UNITS = f"days since {catalog.PROJECTION_FIRST_MONTH.isoformat()}"
TIME_CALENDAR = "standard"
PRODUCER = "permafrost lakehouse"

SCHEMA: dict[str, pl.DataType] = {
    "scenario": pl.Utf8,
    "model": pl.Utf8,
    "band": pl.Int64,
    "month": pl.Date,
    **{c: pl.Float64 for c in catalog.TARGETS},
}


def projection_frame(
    scenario: str,
    model: str,
    band: np.ndarray,
    target_month: np.ndarray,
    predictions: np.ndarray,
) -> pl.DataFrame:
    """Long projection frame of one scenario and model from a model's window predictions.

    ``band`` (n,) integer band index, ``target_month`` (n,) the month each window predicts
    (datetime64[M], or anything numpy turns into it: dates, 'YYYY-MM' strings),
    ``predictions`` (n, 4) degC, one column per soil layer. Rows are sorted by band and month.
    Raises on an unknown scenario or band, mismatched shapes, a non-finite prediction (a
    model that diverged must not pass silently into the ensemble) or two rows for the same
    band and month.
    """
    if scenario not in catalog.RCP_EXPERIMENTS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {catalog.RCP_EXPERIMENTS}")
    if not model or model == ENSEMBLE_MODEL:
        raise ValueError(f"model name {model!r} is empty or reserved for with_ensemble")
    band = np.asarray(band)
    months = np.asarray(target_month).astype("datetime64[M]")
    values = np.asarray(predictions, dtype=np.float64)
    n = band.shape[0] if band.ndim == 1 else -1
    if band.ndim != 1 or months.shape != (n,) or values.shape != (n, len(catalog.TARGETS)):
        raise ValueError(
            f"band {band.shape}, target_month {months.shape} and predictions {values.shape} "
            f"must be (n,), (n,) and (n, {len(catalog.TARGETS)})"
        )
    if n and not np.issubdtype(band.dtype, np.integer) and not np.all(np.equal(np.mod(band, 1), 0)):
        raise ValueError("band must hold integer band indices")
    band = band.astype(np.int64)
    known = {b.index for b in catalog.BANDS}
    unknown = sorted(set(band.tolist()) - known)
    if unknown:
        raise ValueError(f"unknown bands {unknown}; bands are {sorted(known)}")
    if np.isnat(months).any():
        raise ValueError("target_month holds NaT")
    if not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))[0]
        raise ValueError(
            f"{(~np.isfinite(values)).sum()} non-finite predictions for {scenario}/{model}, "
            f"first at band {band[bad[0]]}, month {months[bad[0]]}, layer {bad[1]}"
        )
    frame = pl.DataFrame(
        {
            "scenario": pl.Series([scenario] * n, dtype=pl.Utf8),
            "model": pl.Series([model] * n, dtype=pl.Utf8),
            "band": pl.Series(band, dtype=pl.Int64),
            "month": pl.Series(months.astype("datetime64[D]")).cast(pl.Date),
            **{c: pl.Series(values[:, k], dtype=pl.Float64) for k, c in enumerate(catalog.TARGETS)},
        }
    )
    _check_unique(frame)
    return frame.sort("band", "month")


def _check_unique(frame: pl.DataFrame) -> None:
    duplicated = frame.select(KEYS).is_duplicated()
    if duplicated.any():
        example = frame.filter(duplicated).select(KEYS).row(0, named=True)
        raise ValueError(f"more than one row per {list(KEYS)}, e.g. {example}")


def _check_columns(frame: pl.DataFrame, columns: Sequence[str]) -> None:
    catalog.require_columns(frame, columns, "projection frame")


def with_ensemble(projections: pl.DataFrame) -> pl.DataFrame:
    """The single-model rows plus one ``model == "ensemble_mean"`` row per scenario, band and month.

    On an ensemble row ``t_soil_k`` is the mean across the models present for that scenario,
    band and month (nulls and NaNs are skipped, so a model missing from one scenario leaves
    the ensemble of that scenario to the others) and ``t_soil_k_spread`` is the population
    standard deviation across those models (ddof=0: 1.0 and 3.0 give mean 2.0, spread 1.0).
    The spread is null where fewer than two models contribute (one model says nothing about
    spread) and on every single-model row.

    Idempotent: ensemble rows and spread columns already in ``projections`` are dropped and
    recomputed. Single-model rows come first, in the order given (temperatures cast to
    Float64, NaN turned into null), then the ensemble rows sorted by
    scenario, band and month. Raises if there are no single-model rows or two rows share
    scenario, model, band and month.
    """
    _check_columns(projections, (*KEYS, *catalog.TARGETS))
    members = (
        projections.filter(pl.col("model") != ENSEMBLE_MODEL)
        .drop([c for c in SPREAD_COLUMNS if c in projections.columns])
        .with_columns(pl.col(c).cast(pl.Float64).fill_nan(None) for c in catalog.TARGETS)
    )
    if members.height == 0:
        raise ValueError("no single-model rows to average")
    _check_unique(members)
    ensemble = (
        members.group_by("scenario", "band", "month")
        .agg(
            *(pl.col(c).mean().alias(c) for c in catalog.TARGETS),
            *(
                pl.when(pl.col(c).count() >= 2).then(pl.col(c).std(ddof=0)).otherwise(None).alias(s)
                for c, s in zip(catalog.TARGETS, SPREAD_COLUMNS, strict=True)
            ),
        )
        .with_columns(pl.lit(ENSEMBLE_MODEL, dtype=pl.Utf8).alias("model"))
        .sort("scenario", "band", "month")
    )
    members = members.with_columns(pl.lit(None, dtype=pl.Float64).alias(s) for s in SPREAD_COLUMNS)
    columns = [*members.columns]
    return pl.concat([members, ensemble.select(columns).cast(members.schema)])


def _scenario_order(names: Sequence[str]) -> list[str]:
    known = [s for s in catalog.RCP_EXPERIMENTS if s in names]
    return known + sorted(set(names) - set(known))


def _days_since_epoch(months: np.ndarray) -> np.ndarray:
    epoch = np.datetime64(catalog.PROJECTION_FIRST_MONTH, "D")
    return (months.astype("datetime64[D]") - epoch).astype(np.int64)


def _dataset(projections: pl.DataFrame):
    """The xarray Dataset ``to_cf_netcdf`` writes (split out so it can be inspected)."""
    import xarray as xr

    frame = with_ensemble(projections)
    frame = frame.with_columns(pl.col("month").cast(pl.Date))
    scenarios = _scenario_order(frame["scenario"].unique().to_list())
    single = sorted(set(frame["model"].unique().to_list()) - {ENSEMBLE_MODEL})
    models = [*single, ENSEMBLE_MODEL]
    bands = sorted(frame["band"].unique().to_list())
    known_bands = {b.index: b for b in catalog.BANDS}
    unknown = [b for b in bands if b not in known_bands]
    if unknown:
        raise ValueError(f"unknown bands {unknown}")
    months = np.array(sorted(frame["month"].unique().to_list()), dtype="datetime64[M]")

    index = frame.with_columns(
        pl.col("scenario").replace_strict({s: i for i, s in enumerate(scenarios)}, return_dtype=pl.Int64).alias("_s"),
        pl.col("model").replace_strict({m: i for i, m in enumerate(models)}, return_dtype=pl.Int64).alias("_m"),
        pl.col("band").replace_strict({b: i for i, b in enumerate(bands)}, return_dtype=pl.Int64).alias("_b"),
    )
    s_i, m_i, b_i = (index[c].to_numpy() for c in ("_s", "_m", "_b"))
    t_i = np.searchsorted(months, index["month"].to_numpy().astype("datetime64[M]"))
    n_layers = len(catalog.TARGETS)

    # (scenario, model, band, time, depth) then moved to the CF order, depth before time
    values = np.full((len(scenarios), len(models), len(bands), len(months), n_layers), np.nan, dtype=np.float32)
    values[s_i, m_i, b_i, t_i, :] = index.select(catalog.TARGETS).to_numpy().astype(np.float32)
    values = values.transpose(0, 1, 2, 4, 3)

    is_ensemble = (index["model"] == ENSEMBLE_MODEL).to_numpy()
    spread = np.full((len(scenarios), len(bands), len(months), n_layers), np.nan, dtype=np.float32)
    spread_values = index.filter(pl.Series(is_ensemble)).select(SPREAD_COLUMNS).to_numpy().astype(np.float32)
    spread[s_i[is_ensemble], b_i[is_ensemble], t_i[is_ensemble], :] = spread_values
    spread = spread.transpose(0, 1, 3, 2)

    month_end = months + np.timedelta64(1, "M")
    time_bnds = np.stack([_days_since_epoch(months), _days_since_epoch(month_end)], axis=1)
    depth_bnds = np.asarray(catalog.SOIL_LAYERS_M, dtype=np.float64)
    south = np.array([known_bands[b].south for b in bands], dtype=np.float64)
    north = np.array([known_bands[b].north for b in bands], dtype=np.float64)
    dims = ("scenario", "model", "band", "depth", "time")
    cell_methods = "area: mean where land time: mean"

    dataset = xr.Dataset(
        data_vars={
            "soil_temperature": (
                dims,
                values,
                {
                    "standard_name": "soil_temperature",
                    "long_name": "monthly mean soil temperature of the latitude band and soil layer",
                    "units": "degC",
                    "cell_methods": cell_methods,
                    "comment": (
                        f"model '{ENSEMBLE_MODEL}' is the mean across the other models of the same "
                        "scenario; NaN where a model has no projection for a scenario, band or month"
                    ),
                },
            ),
            "soil_temperature_spread": (
                ("scenario", "band", "depth", "time"),
                spread,
                {
                    "long_name": "ensemble spread of soil temperature: standard deviation across models",
                    "units": "K",
                    "cell_methods": cell_methods,
                    "comment": (
                        "population standard deviation (ddof=0) across the models of the scenario, a "
                        "temperature difference (1 K = 1 degC); NaN where fewer than two models contribute"
                    ),
                },
            ),
            "time_bnds": (("time", "bnds"), time_bnds),
            "depth_bnds": (("depth", "bnds"), depth_bnds),
            "lat_bnds": (("band", "bnds"), np.stack([south, north], axis=1)),
            "lon_bnds": (("bnds",), np.array([catalog.LON_WEST, catalog.LON_EAST])),
        },
        coords={
            "scenario": (
                ("scenario",),
                np.array(scenarios, dtype=object),
                {"long_name": "CMIP5 RCP experiment driving the projection"},
            ),
            "model": (
                ("model",),
                np.array(models, dtype=object),
                {"long_name": f"soil-temperature model architecture ('{ENSEMBLE_MODEL}': mean across models)"},
            ),
            "band": (
                ("band",),
                np.array(bands, dtype=np.int32),
                {
                    "long_name": "latitude band index over mainland Alaska (0 = southernmost)",
                    "comment": "band values are area-weighted means of the band's land pixels",
                },
            ),
            "lat_south": (
                ("band",),
                south,
                {"long_name": "southern edge of the latitude band", "units": "degrees_north"},
            ),
            "lat_north": (
                ("band",),
                north,
                {"long_name": "northern edge of the latitude band", "units": "degrees_north"},
            ),
            "lat": (
                ("band",),
                0.5 * (south + north),
                {
                    "standard_name": "latitude",
                    "long_name": "mid-latitude of the latitude band",
                    "units": "degrees_north",
                    "bounds": "lat_bnds",
                },
            ),
            "lon": (
                (),
                0.5 * (catalog.LON_WEST + catalog.LON_EAST),
                {
                    "standard_name": "longitude",
                    "long_name": "longitude span of the latitude bands",
                    "units": "degrees_east",
                    "bounds": "lon_bnds",
                },
            ),
            "depth": (
                ("depth",),
                np.asarray(MID_DEPTHS_M, dtype=np.float64),
                {
                    "standard_name": "depth",
                    "long_name": "mid-depth of the soil layer below the surface",
                    "units": "m",
                    "positive": "down",
                    "axis": "Z",
                    "bounds": "depth_bnds",
                },
            ),
            "time": (
                ("time",),
                _days_since_epoch(months),
                {
                    "standard_name": "time",
                    "long_name": "first day of the month",
                    "units": TIME_UNITS,
                    "calendar": TIME_CALENDAR,
                    "axis": "T",
                    "bounds": "time_bnds",
                },
            ),
        },
        attrs={
            "Conventions": "CF-1.8",
            "title": "Projected monthly soil temperature of Alaskan permafrost latitude bands",
            "institution": PRODUCER,
            "source": (
                f"{PRODUCER}: deep-learning soil-temperature models driven by bias-corrected CMIP5 "
                "RCP scenarios, trained on ERA5-Land"
            ),
            "history": (
                f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')} written by ml.projections.to_cf_netcdf"
            ),
            "references": "ERA5-Land (ECMWF); CMIP5 (WCRP)",
            "geospatial_lon_min": catalog.LON_WEST,
            "geospatial_lon_max": catalog.LON_EAST,
        },
    )
    return dataset


def to_cf_netcdf(projections: pl.DataFrame, path: Path | str) -> Path:
    """Write ``projections`` as a CF-1.8 netCDF-4 file at ``path`` and return the path.

    Variables: ``soil_temperature`` (scenario, model, band, depth, time), float32 degC, NaN
    (``_FillValue``) where a model has no projection, with ``model = "ensemble_mean"`` as the
    last model; ``soil_temperature_spread`` (scenario, band, depth, time), the standard
    deviation across models (see ``with_ensemble``, which is applied here, so the ensemble
    rows and spread are always recomputed from the single-model rows). Coordinates: ``time``
    (days since 2024-01-01, standard calendar, the 1st of each month, ``time_bnds`` month
    bounds), ``depth`` (layer mid-depths in m, positive down, ``depth_bnds`` layer edges),
    ``band`` with ``lat_south``/``lat_north`` (and ``lat`` with ``lat_bnds``) and a scalar
    ``lon`` with ``lon_bnds``, ``scenario`` and ``model`` strings.

    The file is written to a temporary file in the same folder and renamed onto ``path``
    (``os.replace``), so ``path`` holds either the previous file or the complete new one.
    """
    path = Path(path)
    dataset = _dataset(projections)
    encoding: dict[str, dict] = {
        name: {"dtype": "float32", "_FillValue": np.float32(np.nan), "zlib": True, "complevel": 4}
        for name in ("soil_temperature", "soil_temperature_spread")
    }
    # coordinates and bounds never have missing values: no _FillValue attribute on them
    for name in ("lat_south", "lat_north", "lat", "lon", "depth"):
        encoding[name] = {"_FillValue": None}
    # bounds inherit their coordinate's metadata (CF 7.1): no _FillValue, no coordinates attribute
    for name in ("time_bnds", "depth_bnds", "lat_bnds", "lon_bnds"):
        encoding[name] = {"_FillValue": None}
        dataset[name].encoding["coordinates"] = None
    encoding["time"] = {"dtype": "int64", "_FillValue": None}

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.to_netcdf(path, mode="w", format="NETCDF4", engine="netcdf4", encoding=encoding)
    return path


def late_century_difference(
    projections: pl.DataFrame,
    first_year: int = 2081,
    last_year: int = 2100,
    warmer: str = "rcp85",
    cooler: str = "rcp26",
    layer: str = "t_soil_0",
) -> pl.DataFrame:
    """Mean of ``warmer`` minus ``cooler`` over ``first_year``..``last_year`` per model and band.

    Columns: ``model, band, warmer_mean, cooler_mean, difference, n_months`` (degC), sorted
    by model and band. Only months both scenarios have are compared (``n_months`` of them),
    so ``difference = warmer_mean - cooler_mean`` over the same months. Ensemble rows, when
    present, are one more model. A model or band that lacks either scenario in the period is
    left out; if nothing is left, it raises rather than let a check pass on no data.
    ``(difference > 0).all()`` is the check "rcp85 warmer than rcp26 over 2081-2100".
    """
    _check_columns(projections, (*KEYS, layer))
    if first_year > last_year:
        raise ValueError(f"first_year {first_year} is after last_year {last_year}")
    period = projections.filter(
        pl.col("month").cast(pl.Date).dt.year().is_between(first_year, last_year),
        pl.col(layer).is_not_null() & pl.col(layer).cast(pl.Float64).is_not_nan(),
    ).select("scenario", "model", "band", "month", pl.col(layer).cast(pl.Float64).alias("_t"))
    keys = ["model", "band", "month"]
    pairs = (
        period.filter(pl.col("scenario") == warmer)
        .drop("scenario")
        .rename({"_t": "_warm"})
        .join(period.filter(pl.col("scenario") == cooler).drop("scenario").rename({"_t": "_cool"}), on=keys)
    )
    if pairs.height == 0:
        raise ValueError(
            f"no month in {first_year}-{last_year} has both {warmer} and {cooler} for {layer} "
            "in the same model and band"
        )
    return (
        pairs.group_by("model", "band")
        .agg(
            pl.col("_warm").mean().alias("warmer_mean"),
            pl.col("_cool").mean().alias("cooler_mean"),
            (pl.col("_warm") - pl.col("_cool")).mean().alias("difference"),
            pl.len().cast(pl.Int64).alias("n_months"),
        )
        .sort("model", "band")
    )
