"""Grid mode's engine on a real 2-worker LocalCluster reached by its address, as a user's
configuration would reach a production cluster: results equal the serial run's, a worker killed
mid-run is retried, and a run that fails lands nothing."""

import functools
import os
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cloudpickle
import dask
import numpy as np
import polars as pl
import pytest
from synthetic_cells import tile_series

from dagster_project import lake, processes, settings, tile_engine
from dagster_project.dask_engine import DaskResource
from dagster_project.resources import build_resources
from ml.tiles import tile_core_frames
from sources.grid import Grid, GridSpec

# the kernels below travel to the workers by value: the workers cannot import a test module
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TILES = ("r00c00", "r00c01", "r00c02")


@pytest.fixture(scope="session")
def dask_cluster():
    """Two single-threaded worker processes, started once per session (it takes seconds): the
    stand-in for an existing cluster, which the tests reach by its address only."""
    with tile_engine.local_cluster(n_workers=2) as cluster:
        yield cluster


@pytest.fixture
def engine(dask_cluster) -> DaskResource:
    """The resource as the environment configures it: only the scheduler's address is shared."""
    from distributed import Client

    with Client(dask_cluster.scheduler_address) as client:
        client.wait_for_workers(2, timeout=120)  # a worker killed by an earlier test is back
    return dask_resource({settings.ENV_DASK_ADDRESS: dask_cluster.scheduler_address})


def values_kernel(task: dict) -> dict[str, pl.DataFrame]:
    """Counts its attempts in a file; fails when asked to; sleeps on its first attempt when asked
    to, after leaving a half-written output as a worker killed mid-write would."""
    with open(task["attempts"], "a") as attempts:
        attempts.write(f"{os.getpid()}\n")
    if task.get("fail"):
        raise RuntimeError(f"no data for tile {task['tile']}")
    marker = Path(task["attempts"]).with_suffix(".sleeping")
    if task.get("sleep") and not marker.exists():
        Path(task["target"]).parent.mkdir(parents=True, exist_ok=True)
        lake.temporary_sibling(Path(task["target"])).write_bytes(b"half a parquet file")
        marker.write_text(f"{os.getpid()}\n")
        time.sleep(300)
    return {"values": pl.DataFrame({"tile": [task["tile"]], "value": [task["value"]], "pid": [os.getpid()]})}


def value_run(folder: Path, value: int, **per_tile) -> tuple[dict, dict]:
    """Tasks and targets of one run of `values_kernel`; `per_tile` maps an option to its tile."""
    targets = {tile: {"values": folder / "out" / f"{tile}.parquet"} for tile in TILES}
    tasks = {
        tile: {
            "tile": tile,
            "value": value,
            "attempts": str(folder / f"{tile}-{value}.attempts"),
            "target": str(targets[tile]["values"]),
            **{option: tile == chosen for option, chosen in per_tile.items()},
        }
        for tile in TILES
    }
    return tasks, targets


def landed_values(folder: Path) -> dict[str, int]:
    frame = pl.read_parquet(folder / "out" / "*.parquet")
    return dict(zip(frame["tile"].to_list(), frame["value"].to_list(), strict=True))


def out_files(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "out").iterdir())


def dask_resource(environ: dict[str, str]) -> DaskResource:
    """The resource `definitions` builds from these environment variables."""
    return build_resources(settings.from_environment(environ))["dask"]


def attempts(folder: Path, tile: str, value: int) -> list[int]:
    return [int(line) for line in (folder / f"{tile}-{value}.attempts").read_text().split()]


def test_the_address_comes_from_the_environment_then_dask_then_embedded(dask_cluster):
    with dask.config.set({"scheduler-address": None}):
        assert dask_resource({}).address is None
        assert dask_resource({settings.ENV_DASK_ADDRESS: " tcp://10.1.2.3:8786 "}).address == "tcp://10.1.2.3:8786"
    with dask.config.set({"scheduler-address": "tcp://10.9.9.9:8786"}):
        assert dask_resource({}).address == "tcp://10.9.9.9:8786"
        assert dask_resource({settings.ENV_DASK_ADDRESS: "tcp://10.1.2.3:8786"}).address == "tcp://10.1.2.3:8786"
    with pytest.raises(Exception, match="n_workers"):
        DaskResource(n_workers=-1)


def test_an_address_where_no_scheduler_answers_is_an_error_naming_it():
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{free.getsockname()[1]}"
    resource = dask_resource({settings.ENV_DASK_ADDRESS: address})
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(ConnectionError, match=f"no dask scheduler answers at {address} \\(PERMAFROST_DASK_ADDRESS"),
        resource.client(),
    ):
        pass


def test_serial_results_equal_the_clusters(engine, tmp_path):
    spec = GridSpec(tile_rows=2, tile_cols=2)
    grid = Grid(spec, np.ones(spec.shape, dtype=bool))
    tiles = grid.tiles[400:402]  # one per worker
    tasks = {tile.key: tile_series(tile, grid, "2015-01", "2020-12") for tile in tiles}
    kernel = functools.partial(tile_core_frames, max_iterations=1)

    def targets(root: Path) -> dict:
        return {t: {name: root / name / f"{t}.parquet" for name in ("parameters", "history")} for t in tasks}

    serial = tile_engine.map_tiles(kernel, tasks, targets(tmp_path / "serial"))
    clustered = engine.map_tiles(kernel, tasks, targets(tmp_path / "cluster"))
    assert sorted(serial) == sorted(clustered) == sorted(tasks)
    for tile in tasks:
        for here, there in zip(serial[tile], clustered[tile], strict=True):
            assert here.relative_to(tmp_path / "serial") == there.relative_to(tmp_path / "cluster")
            assert pl.read_parquet(here).equals(pl.read_parquet(there))
    # the tiles' histories mosaic back to every land cell of those tiles
    history = pl.read_parquet(tmp_path / "cluster" / "history" / "*.parquet")
    assert sorted(set(history["cell"].to_list())) == sorted(np.concatenate([t.cells for t in tiles]).tolist())
    assert not [p for p in (tmp_path / "cluster").rglob("*") if lake.is_temporary(p)]


def test_a_worker_killed_mid_run_is_retried_and_lands_no_partial_tile(engine, tmp_path):
    tasks, targets = value_run(tmp_path, 1, sleep="r00c01")
    marker = Path(tasks["r00c01"]["attempts"]).with_suffix(".sleeping")
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(engine.map_tiles, values_kernel, tasks, targets)
        deadline = time.monotonic() + 120
        while not marker.exists() or not marker.read_text().endswith("\n"):
            assert time.monotonic() < deadline and not run.done(), "the sleeping tile never started"
            time.sleep(0.2)
        killed = int(marker.read_text())
        # while the worker sleeps, nothing of the run has landed (other tiles may be staged)
        assert not [name for name in out_files(tmp_path) if not name.startswith(".")]
        os.kill(killed, signal.SIGKILL)
        landed = run.result(timeout=300)
    assert sorted(landed) == list(TILES) and landed_values(tmp_path) == dict.fromkeys(TILES, 1)
    tries = attempts(tmp_path, "r00c01", 1)
    assert tries[0] == killed and len(tries) == 2 and tries[1] != killed
    assert not processes.is_alive(killed)
    # the killed worker's half-written output was cleaned, not landed
    assert out_files(tmp_path) == [f"{tile}.parquet" for tile in TILES]


def test_a_failed_run_lands_nothing_after_its_retries(engine, tmp_path):
    tasks, targets = value_run(tmp_path, 1)
    engine.map_tiles(values_kernel, tasks, targets)
    before = {name: (tmp_path / "out" / name).read_bytes() for name in out_files(tmp_path)}
    tasks, targets = value_run(tmp_path, 2, fail="r00c02")
    with pytest.raises(
        tile_engine.TileRunError, match="1 of 3 tile\\(s\\) failed, nothing landed; tile r00c02: Runtime"
    ):
        engine.map_tiles(values_kernel, tasks, targets)
    assert len(attempts(tmp_path, "r00c02", 2)) == engine.tile_retries + 1 == 3
    assert len(attempts(tmp_path, "r00c00", 2)) == 1  # the other tiles ran and were staged...
    # ...but nothing of the failed run replaced the landed outputs, and no temporary is left
    assert {name: (tmp_path / "out" / name).read_bytes() for name in out_files(tmp_path)} == before
    assert landed_values(tmp_path) == dict.fromkeys(TILES, 1)


def test_a_serial_run_is_all_or_nothing_too(tmp_path):
    tasks, targets = value_run(tmp_path, 1, fail="r00c01")
    with pytest.raises(tile_engine.TileRunError, match="tile r00c01: RuntimeError: no data for tile r00c01"):
        tile_engine.map_tiles(values_kernel, tasks, targets)
    assert out_files(tmp_path) == []  # r00c00 ran and was staged, then removed
    assert (tmp_path / "r00c00-1.attempts").exists()


def test_outputs_the_run_does_not_expect_are_refused(tmp_path):
    tasks, targets = value_run(tmp_path, 1)
    other = {tile: {"elsewhere": path["values"]} for tile, path in targets.items()}
    with pytest.raises(
        tile_engine.TileRunError, match=r"kernel returned outputs \['values'\]; the run expects \['elsewhere'\]"
    ):
        tile_engine.map_tiles(values_kernel, tasks, other)
    with pytest.raises(ValueError, match=r"tasks only \['r00c02'\]"):
        tile_engine.map_tiles(values_kernel, tasks, {k: v for k, v in targets.items() if k != "r00c02"})


def test_no_address_starts_an_embedded_cluster_and_closes_it():
    with dask.config.set({"scheduler-address": None}):
        resource = DaskResource(n_workers=1)
        with resource.client() as client:
            assert client.scheduler.address.startswith("tcp://127.0.0.1:")
            assert list(client.nthreads().values()) == [1]
            workers = client.run(lambda: (os.getpid(), os.environ.get("OMP_NUM_THREADS")))
    [(pid, omp_threads)] = workers.values()
    assert pid != os.getpid() and omp_threads == "1"
    deadline = time.monotonic() + 30
    while processes.is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes.is_alive(pid)


def test_on_an_object_store_a_run_lands_by_its_manifest_or_not_at_all(s3_root, tmp_path):
    """Targets in a bucket (moto's S3 server): each tile's file is uploaded to the run's staging
    prefix, and lands only when every tile succeeded; a failed run leaves neither its staged
    uploads nor a change."""
    targets = {tile: {"values": s3_root / "out" / f"{tile}.parquet"} for tile in TILES}

    def run(value: int, **per_tile):
        tasks, _ = value_run(tmp_path, value, **per_tile)
        return tile_engine.map_tiles(values_kernel, tasks, targets, root=s3_root)

    def objects() -> dict[str, int]:
        keys = sorted(s3_root.fs.find(s3_root.path))
        assert all(key.startswith(f"{s3_root.path}/out/") for key in keys), keys  # no staging left
        return {
            key.rsplit("/", 1)[1]: lake.read_parquet(s3_root / "out" / key.rsplit("/", 1)[1])["value"].item()
            for key in keys
        }

    assert run(1) == {tile: [targets[tile]["values"]] for tile in TILES}
    assert objects() == {f"{tile}.parquet": 1 for tile in TILES}
    with pytest.raises(tile_engine.TileRunError, match="tile r00c01: RuntimeError: no data for tile r00c01"):
        run(2, fail="r00c01")
    assert (tmp_path / "r00c00-2.attempts").exists()  # r00c00 ran and uploaded to the staging...
    assert objects() == {f"{tile}.parquet": 1 for tile in TILES}  # ...which went with the failed run
    with pytest.raises(ValueError, match="need the lake's object-store root"):
        tile_engine.map_tiles(values_kernel, value_run(tmp_path, 3)[0], targets)
    mixed = {**targets, "r00c02": {"values": tmp_path / "out" / "r00c02.parquet"}}
    with pytest.raises(ValueError, match="mix local paths and object-store paths"):
        tile_engine.map_tiles(values_kernel, value_run(tmp_path, 3)[0], mixed, root=s3_root)
