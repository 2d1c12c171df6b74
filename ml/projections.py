"""Soil-temperature projections: long frames, ensemble statistics, CF-netCDF export.

A projection frame is long, one row per scenario, model, member, spatial unit and month::

    scenario  str   RCP experiment (catalog.RCP_EXPERIMENTS: rcp26, rcp45, rcp60, rcp85)
    model     str   architecture ("gru", ...), reference model ("thermal_core", "dl_ridge"), or
                    ENSEMBLE_MODEL ("ensemble_mean") on the rows ``with_ensemble`` adds
    member    i64   the network's seed index (0 for a reference model; null on ensemble rows)
    unit      i64   the spatial unit's id (a band 0-5 on the demo, a basin's station id ...)
    band      i64   the latitude band 0-5 (catalog.BANDS) holding the unit; null outside every band
    month     date  first day of the month predicted: the hindcast on the scenario's own
                    (bias-corrected historical) forcing from 2001, then the projection 2024-2100
    t_soil_0..t_soil_3  f64  degC, one per soil layer (catalog.SOIL_LAYERS_M, top first)

``with_ensemble`` adds one ``ensemble_mean`` row per scenario, unit and month: the mean over the
network members and their 5% and 95% quantiles (``t_soil_k_q05``, ``t_soil_k_q95``). The
reference models (``REFERENCE_MODELS``) project beside the ensemble but are not part of it.
``to_cf_netcdf`` writes the frame as a CF-1.8 netCDF file (a ``band`` dimension for bands, a
``unit`` dimension of CF discrete sampling geometry time series for other units);
``late_century_difference`` compares two scenarios over a period (rcp85 minus rcp26 over
2081-2100 by default).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from ml.active_layer import MID_DEPTHS_M
from ml.unit_arrays import Units
from sources import catalog

ENSEMBLE_MODEL = "ensemble_mean"
REFERENCE_MODELS: tuple[str, ...] = ("thermal_core", "dl_ridge")
QUANTILES: dict[str, float] = {"q05": 0.05, "q95": 0.95}
QUANTILE_COLUMNS: tuple[str, ...] = tuple(f"{c}_{q}" for q in QUANTILES for c in catalog.TARGETS)
KEYS: tuple[str, ...] = ("scenario", "model", "member", "unit", "month")
TIME_UNITS = "days since 2001-01-01"
TIME_CALENDAR = "standard"
PRODUCER = "permafrost lakehouse"
CF_LAYOUT = Path(__file__).with_name("projections_cf.yaml")  # the netCDF's variables and attributes

SCHEMA: dict[str, pl.DataType] = {
    "scenario": pl.Utf8,
    "model": pl.Utf8,
    "member": pl.Int64,
    "unit": pl.Int64,
    "band": pl.Int64,
    "month": pl.Date,
    **{c: pl.Float64 for c in catalog.TARGETS},
}


def projection_frame(
    scenario: str,
    model: str,
    units: Units,
    unit: np.ndarray,
    target_month: np.ndarray,
    predictions: np.ndarray,
    member: int = 0,
) -> pl.DataFrame:
    """Long projection frame of one scenario, model and member from its window predictions.

    ``unit`` (n,) the position of each window's unit in ``units``, ``target_month`` (n,) the
    month each window predicts (datetime64[M], or anything numpy turns into it: dates,
    'YYYY-MM' strings), ``predictions`` (n, 4) degC, one column per soil layer. Rows are sorted
    by unit and month. Raises on an unknown scenario or unit, mismatched shapes, a non-finite
    prediction (a model that diverged must not pass silently into the ensemble) or two rows for
    the same unit and month.
    """
    if scenario not in catalog.RCP_EXPERIMENTS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {catalog.RCP_EXPERIMENTS}")
    if not model or model == ENSEMBLE_MODEL:
        raise ValueError(f"model name {model!r} is empty or reserved for with_ensemble")
    unit = np.asarray(unit)
    months = np.asarray(target_month).astype("datetime64[M]")
    values = np.asarray(predictions, dtype=np.float64)
    n = unit.shape[0] if unit.ndim == 1 else -1
    if unit.ndim != 1 or months.shape != (n,) or values.shape != (n, len(catalog.TARGETS)):
        raise ValueError(
            f"unit {unit.shape}, target_month {months.shape} and predictions {values.shape} "
            f"must be (n,), (n,) and (n, {len(catalog.TARGETS)})"
        )
    if n and not np.issubdtype(unit.dtype, np.integer):
        raise ValueError("unit must hold integer positions of units")
    unit = unit.astype(np.int64)
    if n and (unit.min() < 0 or unit.max() >= units.count):
        raise ValueError(f"unit positions {unit.min()}..{unit.max()} outside the {units.count} units")
    if np.isnat(months).any():
        raise ValueError("target_month holds NaT")
    if not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))[0]
        raise ValueError(
            f"{(~np.isfinite(values)).sum()} non-finite predictions for {scenario}/{model}, "
            f"first at {units.describe(int(units.ids[unit[bad[0]]]))}, month {months[bad[0]]}, layer {bad[1]}"
        )
    frame = pl.DataFrame(
        {
            "scenario": pl.Series([scenario] * n, dtype=pl.Utf8),
            "model": pl.Series([model] * n, dtype=pl.Utf8),
            "member": pl.Series([member] * n, dtype=pl.Int64),
            **units.keys(unit),
            "month": pl.Series(months.astype("datetime64[D]")).cast(pl.Date),
            **{c: pl.Series(values[:, k], dtype=pl.Float64) for k, c in enumerate(catalog.TARGETS)},
        }
    )
    _check_unique(frame)
    return frame.sort("unit", "month")


def scenario_projections(
    scenario: str,
    members,
    trained: dict,
    ridge,
    units: Units,
    paper_windows=None,
) -> pl.DataFrame:
    """Every projection of ``scenario`` from the history's start: the hindcast on the scenario's
    own forcing, then 2024-2100.

    ``members`` is the scenario's ``ml.scenario_members.ScenarioMembers`` over ``units``. The
    reference models run on the unperturbed corrected drivers (draw 0): the core alone and
    ``ridge`` (a fitted ``ml.distributed_lag.DistributedLagRidge``). ``trained`` maps an
    architecture to its ``ml.ensemble.TrainedArchitecture``: a residual-design network runs on its
    own bias-correction draw (``ml.ensemble.bias_draw``) plus that draw's structural offset
    (``ScenarioMembers.offsets``: its core structure's run against the default's), a paper-design
    one on ``paper_windows``
    (the scenario's ``ml.windows.WindowSet``). Rows as ``projection_frame``'s, references first.
    """
    from ml.ensemble import bias_draw, predict_members
    from ml.residual import residual_windows

    if not np.array_equal(members.units, units.ids):
        raise ValueError(f"the {scenario} members' units differ from the history's {units.count} {units.kind}s")
    months = members.months
    rows = months >= catalog.month64(catalog.HISTORY_START)
    frames = []
    references = {
        "thermal_core": members.core[0],
        "dl_ridge": ridge.predict(members.select(0, ridge.drivers), months.astype(np.int64) % 12),
    }
    for name, values in references.items():
        unit = np.tile(np.arange(values.shape[1]), int(rows.sum()))
        month = np.repeat(months[rows], values.shape[1])
        frames.append(projection_frame(scenario, name, units, unit, month, values[rows].reshape(-1, values.shape[2])))
    for architecture, networks in trained.items():
        if networks.design == "paper":
            if paper_windows is None:
                raise ValueError(f"{architecture} is the paper design: its projections need the paper's windows")
            predicted = predict_members(networks, paper_windows=paper_windows)
            frames += [
                projection_frame(
                    scenario, architecture, units, paper_windows.unit, paper_windows.target_month, p, index
                )
                for index, p in enumerate(predicted)
            ]
            continue
        for network in networks.members:
            draw = bias_draw(architecture, network.member)
            if draw >= len(members.drivers):
                raise ValueError(
                    f"{architecture} network {network.member} needs bias-correction draw {draw}, but "
                    f"scenario_windows prepared {len(members.drivers)}: raise its config bias_draws and "
                    "re-materialize it"
                )
            windows = residual_windows(
                network.scaler,
                members.select(draw, network.scaler.drivers),
                members.core[draw],
                months,
                np.flatnonzero(rows),
            )
            frames.append(
                projection_frame(
                    scenario,
                    architecture,
                    units,
                    windows.unit,
                    windows.target_month,
                    # the network on the default core, moved by its draw's core structure
                    network.predict(windows) + members.offset_at(draw, windows.unit, windows.target_month),
                    network.member,
                )
            )
    return pl.concat(frames)


def _check_unique(frame: pl.DataFrame) -> None:
    duplicated = frame.select(KEYS).is_duplicated()
    if duplicated.any():
        example = frame.filter(duplicated).select(KEYS).row(0, named=True)
        raise ValueError(f"more than one row per {list(KEYS)}, e.g. {example}")


def _check_columns(frame: pl.DataFrame, columns: Sequence[str]) -> None:
    catalog.require_columns(frame, columns, "projection frame")


def with_ensemble(projections: pl.DataFrame) -> pl.DataFrame:
    """The member rows plus one ``model == "ensemble_mean"`` row per scenario, unit and month.

    On an ensemble row ``t_soil_k`` is the mean over the network members present for that
    scenario, band and month (every model but ``REFERENCE_MODELS``; nulls and NaNs skipped) and
    ``t_soil_k_q05`` / ``t_soil_k_q95`` their 5% and 95% quantiles (linear interpolation); the
    quantile columns are null on member rows. Idempotent: ensemble rows and quantile columns
    already present are dropped and recomputed. Member rows come first, in the order given, then
    the ensemble rows sorted by scenario, unit and month. Raises if no network member is present
    or two rows share scenario, model, member, unit and month.
    """
    _check_columns(projections, (*KEYS, *catalog.TARGETS))
    members = (
        projections.filter(pl.col("model") != ENSEMBLE_MODEL)
        .drop([c for c in QUANTILE_COLUMNS if c in projections.columns])
        .with_columns(pl.col(c).cast(pl.Float64).fill_nan(None) for c in catalog.TARGETS)
    )
    _check_unique(members)
    networks = members.filter(~pl.col("model").is_in(REFERENCE_MODELS))
    if networks.height == 0:
        raise ValueError(f"no network member to average (models present: {sorted(set(members['model']))})")
    ensemble = (
        networks.group_by("scenario", "unit", "band", "month")
        .agg(
            *(pl.col(c).mean().alias(c) for c in catalog.TARGETS),
            *(
                pl.col(c).quantile(q, interpolation="linear").alias(f"{c}_{name}")
                for name, q in QUANTILES.items()
                for c in catalog.TARGETS
            ),
        )
        .with_columns(
            pl.lit(ENSEMBLE_MODEL, dtype=pl.Utf8).alias("model"), pl.lit(None, dtype=pl.Int64).alias("member")
        )
        .sort("scenario", "unit", "month")
    )
    members = members.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in QUANTILE_COLUMNS)
    return pl.concat([members, ensemble.select(members.columns).cast(members.schema)])


def _scenario_order(names: Sequence[str]) -> list[str]:
    known = [s for s in catalog.RCP_EXPERIMENTS if s in names]
    return known + sorted(set(names) - set(known))


def _days_since_epoch(months: np.ndarray) -> np.ndarray:
    epoch = np.datetime64(TIME_UNITS.removeprefix("days since "), "D")
    return (months.astype("datetime64[D]") - epoch).astype(np.int64)


def cf_layout(units: Units | None = None) -> dict:
    """The netCDF's variables, coordinates and global attributes (``projections_cf.yaml``): the
    band file, or for units that are not bands the file with a ``unit`` dimension (the YAML's
    ``unit_layout``: a CF discrete sampling geometry of time series)."""
    import yaml

    layout = yaml.safe_load(CF_LAYOUT.read_text())
    unit_layout = layout.pop("unit_layout")
    if units is None or units.are_bands:
        return layout
    renamed = unit_layout["rename_dimensions"]
    for section in ("variables", "coordinates"):
        layout[section] = {
            name: {**entry, "dims": [renamed.get(d, d) for d in entry["dims"]]}
            for name, entry in layout[section].items()
            if name not in unit_layout["drop"]
        }
    layout["coordinates"].update(unit_layout["coordinates"])
    layout["attributes"].update(unit_layout["attributes"])
    return layout


def _filled(attributes: dict, fields: dict) -> dict:
    """``attributes`` with their "{field}"s filled; a value that is one field alone takes the
    field's own value, so a number stays a number."""
    out = {}
    for name, value in attributes.items():
        if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value[1:-1] in fields:
            out[name] = fields[value[1:-1]]
        else:
            out[name] = value.format(**fields) if isinstance(value, str) else value
    return out


def _axes(frame: pl.DataFrame) -> dict[str, list]:
    """The netCDF's axes in ``frame`` (with its ensemble rows): scenarios in RCP order, the
    networks then the reference models, member numbers, unit ids, months (datetime64[M])."""
    scenarios = _scenario_order(frame["scenario"].unique().to_list())
    present = set(frame["model"].unique().to_list()) - {ENSEMBLE_MODEL}
    models = sorted(present - set(REFERENCE_MODELS)) + [m for m in REFERENCE_MODELS if m in present]
    members = sorted(frame.filter(pl.col("model") != ENSEMBLE_MODEL)["member"].unique().to_list())
    units = sorted(frame["unit"].unique().to_list())
    months = np.array(sorted(frame["month"].unique().to_list()), dtype="datetime64[M]")
    return {"scenario": scenarios, "model": models, "member": members, "unit": units, "months": months}


def _soil_temperatures(frame: pl.DataFrame, axes: dict[str, list]) -> dict[str, np.ndarray]:
    """Every member's soil temperature on the axes, and the ensemble's mean and quantiles,
    float32, NaN where a row is missing, depth before time (CF order)."""
    scenarios, models, members, units, months = (axes[k] for k in ("scenario", "model", "member", "unit", "months"))
    n_layers = len(catalog.TARGETS)

    def positions(rows: pl.DataFrame) -> tuple[np.ndarray, ...]:
        s_i = rows["scenario"].replace_strict({s: i for i, s in enumerate(scenarios)}, return_dtype=pl.Int64)
        u_i = np.searchsorted(np.asarray(units), rows["unit"].to_numpy())
        t_i = np.searchsorted(months, rows["month"].to_numpy().astype("datetime64[M]"))
        return s_i.to_numpy(), u_i, t_i

    member_rows = frame.filter(pl.col("model") != ENSEMBLE_MODEL)
    s_i, u_i, t_i = positions(member_rows)
    m_i = member_rows["model"].replace_strict({m: i for i, m in enumerate(models)}, return_dtype=pl.Int64).to_numpy()
    r_i = np.searchsorted(np.asarray(members), member_rows["member"].to_numpy())
    values = np.full((len(scenarios), len(models), len(members), len(units), len(months), n_layers), np.nan, np.float32)
    values[s_i, m_i, r_i, u_i, t_i, :] = member_rows.select(catalog.TARGETS).to_numpy()
    out = {"soil_temperature": values.transpose(0, 1, 2, 3, 5, 4)}

    ensemble_rows = frame.filter(pl.col("model") == ENSEMBLE_MODEL)
    s_i, u_i, t_i = positions(ensemble_rows)
    for statistic, suffix in {"ensemble_mean": "", **{q: f"_{q}" for q in QUANTILES}}.items():
        grid = np.full((len(scenarios), len(units), len(months), n_layers), np.nan, dtype=np.float32)
        grid[s_i, u_i, t_i, :] = ensemble_rows.select(f"{c}{suffix}" for c in catalog.TARGETS).to_numpy()
        out[f"soil_temperature_{statistic}"] = grid.transpose(0, 1, 3, 2)
    return out


def _values(frame: pl.DataFrame, axes: dict[str, list], units: Units | None) -> dict[str, np.ndarray]:
    """Every variable and coordinate of the netCDF, by its name in ``projections_cf.yaml``."""
    months = axes["months"]
    common = {
        **_soil_temperatures(frame, axes),
        "time_bnds": np.stack([_days_since_epoch(months), _days_since_epoch(months + np.timedelta64(1, "M"))], axis=1),
        "depth_bnds": np.asarray(catalog.SOIL_LAYERS_M, dtype=np.float64),
        "scenario": np.array(axes["scenario"], dtype=object),
        "model": np.array(axes["model"], dtype=object),
        "member": np.array(axes["member"], dtype=np.int32),
        "depth": np.asarray(MID_DEPTHS_M, dtype=np.float64),
        "time": _days_since_epoch(months),
    }
    if units is None or units.are_bands:
        bands = {b.index: b for b in catalog.BANDS}
        unknown = sorted(set(axes["unit"]) - set(bands))
        if unknown:
            raise ValueError(f"unknown bands {unknown}")
        south = np.array([bands[b].south for b in axes["unit"]], dtype=np.float64)
        north = np.array([bands[b].north for b in axes["unit"]], dtype=np.float64)
        return {
            **common,
            "lat_bnds": np.stack([south, north], axis=1),
            "lon_bnds": np.array([catalog.LON_WEST, catalog.LON_EAST]),
            "band": np.array(axes["unit"], dtype=np.int32),
            "lat_south": south,
            "lat_north": north,
            "lat": 0.5 * (south + north),
            "lon": 0.5 * (catalog.LON_WEST + catalog.LON_EAST),
        }
    rows = units.frame.filter(pl.col("unit").is_in(axes["unit"])).sort("unit")
    if rows.height != len(axes["unit"]):
        raise ValueError("the projections hold units the units table does not")
    return {
        **common,
        "unit": rows["unit"].to_numpy().astype(np.int64),
        "unit_name": rows["name"].to_numpy().astype(object),
        "lat": rows["latitude"].to_numpy(),
        "lon": rows["longitude"].to_numpy(),
        "area": rows["area_km2"].to_numpy(),
        "unit_band": rows["band"].fill_null(-1).to_numpy().astype(np.int32),
    }


def _dataset(projections: pl.DataFrame, units: Units | None = None):
    """The xarray Dataset ``to_cf_netcdf`` writes (split out so it can be inspected): the
    values of ``_values`` laid out and described by ``projections_cf.yaml``."""
    import xarray as xr

    layout = cf_layout(units)
    frame = with_ensemble(projections).with_columns(pl.col("month").cast(pl.Date))
    axes = _axes(frame)
    values = _values(frame, axes, units)
    fields = {
        **layout["text"],
        "networks": ", ".join(m for m in axes["model"] if m not in REFERENCE_MODELS),
        "reference_models": ", ".join(REFERENCE_MODELS),
        "producer": PRODUCER,
        "time_units": TIME_UNITS,
        "time_calendar": TIME_CALENDAR,
        "written": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lon_west": catalog.LON_WEST,
        "lon_east": catalog.LON_EAST,
        "unit_kind": units.kind if units is not None else "band",
    }

    def described(entries: dict) -> dict:
        return {
            name: (tuple(entry["dims"]), values[name], _filled(entry.get("attrs", {}), fields))
            for name, entry in entries.items()
        }

    return xr.Dataset(
        data_vars=described(layout["variables"]),
        coords=described(layout["coordinates"]),
        attrs=_filled(layout["attributes"], fields),
    )


def to_cf_netcdf(projections: pl.DataFrame, path: Path | str, units: Units | None = None) -> Path:
    """Write ``projections`` as a CF-1.8 netCDF-4 file at ``path`` and return the path.

    Variables: ``soil_temperature`` (scenario, model, member, band, depth, time), float32 degC,
    NaN (``_FillValue``) where a model has no such member or projection; the ensemble's
    ``soil_temperature_ensemble_mean``, ``soil_temperature_q05`` and ``soil_temperature_q95``
    (scenario, band, depth, time), recomputed here from the member rows (``with_ensemble``).
    Coordinates: ``time`` (days since 2001-01-01, standard calendar, the 1st of each month,
    ``time_bnds`` month bounds), ``depth`` (layer mid-depths in m, positive down, ``depth_bnds``
    layer edges), ``band`` with ``lat_south``/``lat_north`` (and ``lat`` with ``lat_bnds``) and
    a scalar ``lon`` with ``lon_bnds``, ``scenario`` and ``model`` strings, ``member`` integers.
    For ``units`` that are not bands (basins, cells) the ``band`` dimension is a ``unit``
    dimension instead: a CF discrete sampling geometry (featureType timeSeries) whose instances
    are the units (``unit`` ids, cf_role timeseries_id), with ``lat``/``lon`` centroids, ``area``,
    ``unit_name`` and the band holding each (``unit_band``, -1 outside every band).
    Their attributes and encodings are ``projections_cf.yaml``'s. The caller makes the write
    atomic (a temporary path renamed into place).
    """
    layout = cf_layout(units)
    dataset = _dataset(projections, units)
    entries = {**layout["variables"], **layout["coordinates"]}
    encoding = {name: dict(entry["encoding"]) for name, entry in entries.items() if "encoding" in entry}
    # bounds inherit their coordinate's metadata (CF 7.1): no coordinates attribute
    for entry in entries.values():
        if "bounds" in entry.get("attrs", {}):
            dataset[entry["attrs"]["bounds"]].encoding["coordinates"] = None
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
    """Mean of ``warmer`` minus ``cooler`` over ``first_year``..``last_year`` per model, member
    and unit.

    Columns: ``model, member, unit, band, warmer_mean, cooler_mean, difference, n_months`` (degC),
    sorted by model, member and unit. Only months both scenarios have are compared (``n_months`` of them),
    so ``difference = warmer_mean - cooler_mean`` over the same months. Ensemble rows, when
    present, are one more model. A model or unit that lacks either scenario in the period is
    left out; if nothing is left, it raises rather than let a check pass on no data.
    ``(difference > 0).all()`` is the check "rcp85 warmer than rcp26 over 2081-2100".
    """
    _check_columns(projections, (*KEYS, layer))
    if first_year > last_year:
        raise ValueError(f"first_year {first_year} is after last_year {last_year}")
    period = projections.filter(
        pl.col("month").cast(pl.Date).dt.year().is_between(first_year, last_year),
        pl.col(layer).is_not_null() & pl.col(layer).cast(pl.Float64).is_not_nan(),
    ).select("scenario", "model", "member", "unit", "band", "month", pl.col(layer).cast(pl.Float64).alias("_t"))
    keys = ["model", "member", "unit", "band", "month"]
    pairs = (
        period.filter(pl.col("scenario") == warmer)
        .drop("scenario")
        .rename({"_t": "_warm"})
        .join(
            period.filter(pl.col("scenario") == cooler).drop("scenario").rename({"_t": "_cool"}),
            on=keys,
            nulls_equal=True,  # ensemble rows have no member
        )
    )
    if pairs.height == 0:
        raise ValueError(
            f"no month in {first_year}-{last_year} has both {warmer} and {cooler} for {layer} "
            "in the same model and unit"
        )
    return (
        pairs.group_by("model", "member", "unit", "band")
        .agg(
            pl.col("_warm").mean().alias("warmer_mean"),
            pl.col("_cool").mean().alias("cooler_mean"),
            (pl.col("_warm") - pl.col("_cool")).mean().alias("difference"),
            pl.len().cast(pl.Int64).alias("n_months"),
        )
        .sort("model", "member", "unit")
    )
