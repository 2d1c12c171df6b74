"""Reducing one year of a 0.1-degree ERA5-Land field over Alaska to the six bands, against
xarray merely loading the same arrays.

Writes a CDS-style monthly-means netCDF (valid_time, number, expver; all 16 variables of the
raw schema; ocean NaN) under /tmp, then times, best of N:

- load:    `xr.open_dataset(path)` and `.load()` of every variable (the floor: reading the data);
- cold:    `CdsReanalysisSource.read_months` of the 12 months with the band weights computed
           (regionmask fractional masks, the first run on a grid);
- warm:    the same with the weights already computed for this grid (every later run in the
           process, or with `weights_cache` configured, every later process).

`--stages` adds where the warm read's time goes (the stage functions timed with
`time.perf_counter`, best of the repeats; a separate run, not part of the timings above).

    .venv/bin/python benchmarks/sources_benchmark.py [--repeats 5] [--step 0.1] [--stages]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sources import catalog, cds, regions
from sources.cds import ACCUMULATED, CdsReanalysisSource
from sources.config import CdsReanalysisConfig

UNITS = {
    **{n: "K" for n in ("t2m", "skt", "stl1", "stl2", "stl3", "stl4")},
    **{n: "m" for n in ("tp", "sf")},
    **{n: "J m**-2" for n in ("strd", "ssrd", "slhf", "sshf")},
    **{f"swvl{i}": "m**3 m**-3" for i in range(1, 5)},
}
BASE = {"K": 265.0, "m": 0.002, "J m**-2": 1.0e7, "m**3 m**-3": 0.3}


def write_year(path: Path, step: float, year: int = 2020) -> tuple[int, int]:
    lat = np.round(np.arange(72.5, 57.9999, -step), 4)
    lon = np.round(np.arange(-170.0, -138.9999, step), 4)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    ocean = ((lon2 < -164.0) & (lat2 < 62.0)) | (lat2 > 71.0)
    months = [dt.date(year, m, 1) for m in range(1, 13)]
    rng = np.random.default_rng(0)
    data = {}
    for name, unit in UNITS.items():
        values = np.empty((12, lat.size, lon.size), dtype=np.float32)
        for t in range(12):
            season = np.cos(2 * np.pi * t / 12.0)
            field = BASE[unit] * (1.0 + 0.01 * (lat2 - 65.0)) + 0.001 * BASE[unit] * rng.standard_normal(lat2.shape)
            if unit == "K":
                field = field + 10.0 * season
            if name in ("slhf", "sshf"):
                field = -field
            values[t] = np.where(ocean, np.nan, field)
        data[name] = xr.DataArray(values, dims=("valid_time", "latitude", "longitude"), attrs={"units": unit})
    dataset = xr.Dataset(
        data,
        coords={
            "valid_time": [np.datetime64(m, "ns") for m in months],
            "latitude": lat,
            "longitude": lon,
            "number": 0,
            "expver": ("valid_time", ["0001"] * 12),
        },
    )
    dataset.to_netcdf(path)
    return lat.size, lon.size


def best(function, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


@contextlib.contextmanager
def stage_clock(totals: dict[str, float]):
    """Time the stages of `CdsReanalysisSource.read_months` while inside (patched, then restored)."""
    stages = [
        (cds.CdsReanalysisSource, "_open", "open the file (xr.open_dataset)"),
        (cds._Field, "read", "read the 16 variables"),
        (cds, "band_weights", "band weights (lookup)"),
        (cds, "band_means", "band means"),
        (cds, "validate_reanalysis", "validate the rows"),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in stages]

    def timed(function, label):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - start

        return wrapper

    try:
        for (owner, name, label), (_, _, function) in zip(stages, originals, strict=True):
            setattr(owner, name, timed(function, label))
        yield
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)


def stage_times(read, repeats: int) -> dict[str, float]:
    """Per stage, the time in the fastest of `repeats` warm reads; the rest is scanning,
    locating months, unit conversion on the means and building the frame."""
    runs = []
    for _ in range(repeats):
        totals: dict[str, float] = collections.defaultdict(float)
        with stage_clock(totals):
            start = time.perf_counter()
            read()
            total = time.perf_counter() - start
        runs.append({**totals, "rest (scan, locate, units, frame)": total - sum(totals.values()), "total": total})
    return min(runs, key=lambda run: run["total"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--step", type=float, default=0.1, help="grid spacing in degrees")
    parser.add_argument("--stages", action="store_true", help="also time the stages of the warm read")
    args = parser.parse_args()
    months = [dt.date(2020, m, 1) for m in range(1, 13)]
    with tempfile.TemporaryDirectory(prefix="sources_benchmark_", dir="/tmp") as folder:
        path = Path(folder) / "era5_land_2020.nc"
        n_lat, n_lon = write_year(path, args.step)
        size_mb = path.stat().st_size / 1e6
        config = CdsReanalysisConfig(kind="cds", paths=[str(path)])

        def load():
            with xr.open_dataset(path) as dataset:
                for name in UNITS:
                    dataset[name].load()

        def reduce_cold():
            regions._MEMORY.clear()
            CdsReanalysisSource(config).read_months(months)

        def reduce_warm():
            CdsReanalysisSource(config).read_months(months)

        # warm up imports and lazy initialisation on both sides (regionmask, rasterio, netCDF4)
        load()
        reduce_cold()
        frame = CdsReanalysisSource(config).read_months(months)
        assert frame.height == 72 and np.isfinite(frame.select(list(catalog.ERA5_LAND_BANDS)).to_numpy()).all()
        load_best, load_median = best(load, args.repeats)
        cold_best, cold_median = best(reduce_cold, args.repeats)
        warm_best, warm_median = best(reduce_warm, args.repeats)
        stages = stage_times(reduce_warm, args.repeats) if args.stages else None

    print(f"grid {n_lat} x {n_lon} ({args.step} deg), 12 months x {len(UNITS)} variables, file {size_mb:.1f} MB")
    print(f"accumulated variables x days in month: {', '.join(ACCUMULATED)}")
    print(f"{'':22s}{'best s':>9s}{'median s':>10s}{'ratio (best)':>14s}{'ratio (median)':>16s}")
    for label, (fastest, middle) in {
        "xarray load": (load_best, load_median),
        "reduce, cold weights": (cold_best, cold_median),
        "reduce, warm weights": (warm_best, warm_median),
    }.items():
        print(f"{label:22s}{fastest:9.3f}{middle:10.3f}{fastest / load_best:14.2f}{middle / load_median:16.2f}")
    if stages:
        print("warm read by stage (fastest of the repeats, each stage timed in it):")
        for label, seconds in stages.items():
            print(f"  {label:36s}{seconds * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
