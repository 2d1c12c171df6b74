"""Sliding-window construction at grid scale: project code vs a notebook-style pandas loop
vs a plain numpy copy of the same bytes (the memory-bandwidth floor).

Grid scale means many series (say 5,000 grid cells instead of 6 bands) x 300 months x 30
features, float32, w = 24, one window per month that has a next-month target. The full
output is ~4 GB, so (a) and (c) fill one reusable destination buffer chunk by chunk of
series and count the bytes; both move exactly the same bytes through the same buffer.

(a) project: ml.windows.window_inputs, the per-band routine build_training_windows and
    build_scenario_windows call: z-score the monthly table, derive z (eq. 2.1-2.2) with a
    rolling mean, copy the strided windows. Here it gets a chunk of series at once.
(b) pandas: per series, normalise the DataFrame, rolling-mean z, then per window
    df.iloc[t:t+w].to_numpy() + the z column, appended to a list, np.stack at the end.
    Timed on a subset of series and scaled linearly per window to the full count.
(c) copy: np.copyto of a source buffer of the chunk's size into the destination buffer.

Usage: .venv/bin/python benchmarks/windows_benchmark.py [--series 5000 --months 300 --features 30]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

try:
    from ml import windows as W
except ImportError:  # run from a checkout without the editable install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ml import windows as W


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=5000, help="number of series (grid cells)")
    parser.add_argument("--months", type=int, default=300, help="months per series")
    parser.add_argument("--features", type=int, default=30, help="input channels per step, z included")
    parser.add_argument("--window", type=int, default=24)
    parser.add_argument("--chunk", type=int, default=250, help="series per chunk for (a) and (c)")
    parser.add_argument("--pandas-series", type=int, default=150, help="series timed for (b)")
    parser.add_argument("--repeat", type=int, default=3, help="passes of (a) and (c); the best is reported")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def make_inputs(series: int, months: int, channels: int, seed: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Raw monthly values (series, months, channels) float32, each channel on its own scale."""
    rng = np.random.default_rng(seed)
    names = [f"x{i}" for i in range(channels)]
    names[min(4, channels - 1)] = W.SIGNAL_SOURCE  # where the catalog puts r_thermal
    scale = rng.uniform(0.5, 5.0, channels).astype(np.float32)
    offset = rng.uniform(-10.0, 10.0, channels).astype(np.float32)
    values = rng.standard_normal((series, months, channels), dtype=np.float32) * scale + offset
    values[..., names.index(W.SIGNAL_SOURCE)] = rng.normal(6e8, 1.5e8, (series, months))
    return values, tuple(names)


def make_stats(values: np.ndarray, names: tuple[str, ...], window: int) -> W.NormalizationStats:
    """Statistics as build_training_windows would hold them (not timed)."""
    flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
    r = flat[:, names.index(W.SIGNAL_SOURCE)]
    mu, sigma = float(r.mean()), float(r.std())
    z = W.scenario_signal(values[..., names.index(W.SIGNAL_SOURCE)], window, mu, sigma)
    return W.NormalizationStats(
        feature_names=names + (W.SIGNAL,),
        mean=np.r_[flat.mean(axis=0), z.mean()],
        std=np.r_[flat.std(axis=0), z.std()],
        target_names=W.TARGETS,
        target_mean=np.zeros(len(W.TARGETS)),
        target_std=np.ones(len(W.TARGETS)),
        r_thermal_mean=mu,
        r_thermal_std=sigma,
        window=window,
    )


def chunks(total: int, size: int):
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def run_project(values, stats, count, buffer) -> float:
    start = time.perf_counter()
    for part in chunks(len(values), len(buffer)):
        W.window_inputs(values[part], stats, 0, count, out=buffer[: part.stop - part.start])
    return time.perf_counter() - start


def run_copy(source, total, buffer) -> float:
    start = time.perf_counter()
    for part in chunks(total, len(buffer)):
        n = part.stop - part.start
        np.copyto(buffer[:n], source[:n])
    return time.perf_counter() - start


def pandas_windows(values: np.ndarray, stats: W.NormalizationStats, count: int) -> np.ndarray:
    """The notebook way: one DataFrame per series, one .iloc slice per window."""
    import pandas as pd

    window = stats.window
    names = list(stats.monthly_feature_names)
    mean = pd.Series(stats.mean[:-1], index=names)
    std = pd.Series(stats.std[:-1], index=names)
    out = []
    for series in values:
        df = pd.DataFrame(series.astype(np.float64), columns=names)
        normalised = (df - mean) / std
        rolling = df[W.SIGNAL_SOURCE].rolling(window).mean().to_numpy()[window - 1 :]
        z_tilde = (rolling - stats.r_thermal_mean) / stats.r_thermal_std
        z = (np.abs(z_tilde) * z_tilde - stats.mean[-1]) / stats.std[-1]
        for t in range(count):
            block = normalised.iloc[t : t + window].to_numpy()
            out.append(np.column_stack([block, np.full(window, z[t])]))
    return np.stack(out).astype(np.float32)


def main() -> None:
    args = parse_args()
    window, channels = args.window, args.features - 1  # the last feature is z
    count = args.months - window  # windows per series that have a next-month target
    if count < 1:
        raise SystemExit(f"--months must exceed --window ({window})")
    chunk = min(args.chunk, args.series)
    values, names = make_inputs(args.series, args.months, channels, args.seed)
    stats = make_stats(values, names, window)

    windows_total = args.series * count
    out_bytes = windows_total * window * args.features * 4
    buffer = np.empty((chunk, count, window, args.features), dtype=np.float32)
    source = np.ones_like(buffer)
    buffer.fill(0.0)  # fault the pages in before any timing

    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    print(
        f"grid: {args.series} series x {args.months} months x {args.features} features (z included), "
        f"w={window}, {windows_total:,} windows, output {out_bytes / 1e9:.2f} GB float32"
    )
    print(f"(a) and (c) fill one {buffer.nbytes / 1e6:.0f} MB buffer, {chunk} series at a time; best of {args.repeat}")

    project = min(run_project(values, stats, count, buffer) for _ in range(args.repeat))
    copy = min(run_copy(source, args.series, buffer) for _ in range(args.repeat))

    subset = values[: min(args.pandas_series, args.series)]
    start = time.perf_counter()
    reference = pandas_windows(subset, stats, count)
    pandas_subset = time.perf_counter() - start
    # Same numbers as the project code, so (b) is doing the same work.
    ours = W.window_inputs(subset, stats, 0, count).reshape(reference.shape)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)
    pandas_full = pandas_subset / len(reference) * windows_total

    gb = out_bytes / 1e9
    print(f"(a) project  window_inputs : {project:8.2f} s  ({gb / project:5.2f} GB/s)")
    print(
        f"(b) pandas   iloc loop     : {pandas_full:8.2f} s  (measured {pandas_subset:.2f} s on {len(subset)} series = "
        f"{len(reference):,} windows, scaled linearly per window to {windows_total:,}; output matches (a))"
    )
    print(f"(c) numpy    copy          : {copy:8.2f} s  ({gb / copy:5.2f} GB/s, same {gb:.2f} GB)")
    print(f"ratio pandas/project: {pandas_full / project:.1f}x")
    print(f"ratio project/copy  : {project / copy:.2f}x")


if __name__ == "__main__":
    main()
