import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from paused_writers import release

from dagster_project import lake, processes

DBT_GROUPS = {"staging", "intermediate", "marts"}


def _frame(value: float) -> pl.DataFrame:
    return pl.DataFrame({"band": [0, 1], "month": [dt.date(2001, 1, 1)] * 2, "t": [value, value]})


def test_rewriting_a_partition_replaces_it(tmp_path):
    path = tmp_path / "raw" / "x" / "2001-01.parquet"
    lake.write_partitions_atomic({path: _frame(1.0)})
    lake.write_partitions_atomic({path: _frame(2.0)})
    back = pl.read_parquet(path)
    assert back.height == 2
    assert back["t"].to_list() == [2.0, 2.0]
    assert [p.name for p in path.parent.iterdir()] == ["2001-01.parquet"]


def test_failed_write_leaves_every_partition_as_it_was(tmp_path):
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    lake.write_partitions_atomic({first: _frame(1.0), second: _frame(1.0)})
    before = {p: p.read_bytes() for p in (first, second)}

    class Unwritable(pl.DataFrame):
        def write_parquet(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        lake.write_partitions_atomic({first: _frame(5.0), second: Unwritable(_frame(5.0))})
    assert {p: p.read_bytes() for p in (first, second)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet"]


def test_views_follow_the_lake_and_readers_are_read_only(tmp_path):
    lake.write_partitions_atomic({tmp_path / "raw" / "x" / "2001-01.parquet": _frame(1.0)})
    warehouse = tmp_path / "wh.duckdb"
    lake.refresh_parquet_views(warehouse, {lake.Table("raw", "x"): str(tmp_path / "raw" / "x" / "*.parquet")})
    february = _frame(3.0).with_columns(month=pl.lit(dt.date(2001, 2, 1)))
    lake.write_partitions_atomic({tmp_path / "raw" / "x" / "2001-02.parquet": february})
    with lake.read_only(warehouse) as con:
        assert con.execute("select count(*), sum(t) from raw.x").fetchone() == (4, 8.0)
        with pytest.raises(duckdb.Error):
            con.execute("create table y as select 1")


def test_reader_of_a_missing_warehouse_says_so(tmp_path):
    with (
        pytest.raises(FileNotFoundError, match="does not exist yet: materialize the dbt models"),
        lake.read_only(tmp_path / "nope.duckdb"),
    ):
        pass


def test_view_names_are_identifiers(tmp_path):
    with pytest.raises(ValueError, match="identifier"):
        lake.refresh_parquet_views(tmp_path / "wh.duckdb", {lake.Table("raw", "x; drop table y"): "*.parquet"})


def _savez(path, **arrays):
    import numpy as np

    with open(path, "wb") as handle:  # a file object: np.savez appends .npz to a bare name
        np.savez(handle, **arrays)


def test_any_file_is_written_atomically(tmp_path):
    import numpy as np

    target = tmp_path / "features" / "windows.npz"
    lake.write_file_atomic(target, lambda tmp: _savez(tmp, x=np.arange(3)))
    assert np.load(target)["x"].tolist() == [0, 1, 2]

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        lake.write_file_atomic(target, broken)
    assert np.load(target)["x"].tolist() == [0, 1, 2]
    assert [p.name for p in target.parent.iterdir()] == ["windows.npz"]


def test_a_folder_is_swapped_in_whole(tmp_path):
    target = tmp_path / "models" / "gru"

    def write(version):
        def fill(folder):
            (folder / "model.keras").write_text(version)
            (folder / "history.json").write_text(version)

        return fill

    for version in ("v1", "v2"):
        with lake.atomic_batch() as batch:
            batch.folder(target, write(version))
    assert {p.name: p.read_text() for p in target.iterdir()} == {"model.keras": "v2", "history.json": "v2"}

    def broken(folder):
        (folder / "model.keras").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError), lake.atomic_batch() as batch:
        batch.folder(target, broken)
    assert (target / "model.keras").read_text() == "v2"
    assert [p.name for p in target.parent.iterdir()] == ["gru"]


def test_a_batch_lands_every_output_or_none(tmp_path):
    table, figure, model = tmp_path / "evaluation" / "t.parquet", tmp_path / "figures" / "f.png", tmp_path / "m"
    with lake.atomic_batch() as batch:
        batch.parquet(table, _frame(1.0))
        batch.file(figure, lambda tmp: tmp.write_bytes(b"png v1"))
        batch.folder(model, lambda tmp: (tmp / "model.keras").write_text("v1"))
        assert not table.exists() and not figure.exists()  # nothing lands before the block ends
    before = {p: p.read_bytes() for p in (table, figure, model / "model.keras")}

    def failing_batch():
        with lake.atomic_batch() as batch:
            batch.parquet(table, _frame(2.0))
            batch.folder(model, lambda tmp: (tmp / "model.keras").write_text("v2"))
            batch.file(figure, lambda tmp: (_ for _ in ()).throw(RuntimeError("figure failed")))

    with pytest.raises(RuntimeError, match="figure failed"):
        failing_batch()
    assert {p: p.read_bytes() for p in (table, figure, model / "model.keras")} == before
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_temporaries_match_no_reader_pattern(tmp_path):
    target = tmp_path / "raw" / "era5_land_monthly" / "2001-01.parquet"
    tmp = lake.temporary_sibling(target)
    assert tmp.parent == tmp_path / "raw" / "era5_land_monthly"
    assert not tmp.match("*.parquet") and tmp.name.endswith(".tmp")
    assert f"-{os.getpid()}." in tmp.name  # names its writer, so a leftover can be told from work in progress
    # and DuckDB's glob, which does match hidden files, does not read it
    target.parent.mkdir(parents=True)
    _frame(1.0).write_parquet(target)
    _frame(1.0).write_parquet(tmp)
    rows = duckdb.connect().execute(f"select count(*) from read_parquet('{target.parent}/*.parquet')").fetchone()[0]
    assert rows == 2


def _finished_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def _leftover(folder: Path, target: str, pid: int, content: bytes = b"half a parquet", age: float = 0.0) -> Path:
    name = f".{target}.{processes.host_tag()}-{pid}.{uuid.uuid4().hex}.tmp"
    path = folder / name
    path.write_bytes(content)
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_the_next_batch_removes_leftovers_of_dead_writers_only(tmp_path):
    folder = tmp_path / "raw" / "era5_land_monthly"
    folder.mkdir(parents=True)
    dead = _leftover(folder, "2001-01.parquet", _finished_pid())
    empty_dead = _leftover(folder, "2001-02.parquet", _finished_pid(), content=b"")
    live = _leftover(folder, "2001-03.parquet", os.getpid())  # this process, still writing
    # a pid that exists now but started after the leftover was written: reused, the writer is gone
    reused = _leftover(folder, "2001-04.parquet", os.getpid(), age=processes.time_since_start() + 60)
    # leftovers of earlier versions, which named no writer: `.tmp.parquet` is read as data by every
    # glob, so it goes at once; `.tmp` goes when no write could still be running
    legacy_read_as_data = folder / f".2001-05.{uuid.uuid4().hex}.tmp.parquet"
    _frame(1.0).write_parquet(legacy_read_as_data)
    ownerless_old = folder / f".2001-06.parquet.{uuid.uuid4().hex}.tmp"
    ownerless_old.write_bytes(b"x")
    os.utime(ownerless_old, (time.time() - lake.STALE_TEMPORARY_AGE_SECONDS - 60,) * 2)
    ownerless_fresh = folder / f".2001-07.parquet.{uuid.uuid4().hex}.tmp"
    ownerless_fresh.write_bytes(b"x")

    with lake.atomic_batch() as batch:
        batch.parquet(folder / "2001-01.parquet", _frame(1.0))
    assert sorted(batch.cleaned) == sorted([dead, empty_dead, reused, legacy_read_as_data, ownerless_old])
    assert sorted(p.name for p in folder.iterdir()) == sorted(["2001-01.parquet", live.name, ownerless_fresh.name])


def test_a_concurrent_writer_keeps_its_temporaries(tmp_path):
    """Two runs writing into one folder: the second one's clean-up leaves the first one's
    work in progress alone, and both land."""
    folder = tmp_path / "raw" / "era5_land_monthly"
    writer = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        import polars as pl
        from dagster_project import lake, processes
        with lake.atomic_batch() as batch:
            batch.parquet(Path({str(folder / "2001-01.parquet")!r}), pl.DataFrame({{"band": [0], "t": [1.0]}}))
            print("staged", flush=True)
            sys.stdin.readline()  # hold the temporary until told to commit
        print("landed", flush=True)
        """
    )
    first = subprocess.Popen([sys.executable, "-c", writer], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "staged"
        staged = [p for p in folder.iterdir() if lake.is_temporary(p)]
        assert len(staged) == 1
        with lake.atomic_batch() as batch:
            batch.parquet(folder / "2001-02.parquet", _frame(2.0))
        assert batch.cleaned == [] and staged[0].exists()
        release(first)
    finally:
        first.communicate(timeout=60)
    assert first.returncode == 0
    assert sorted(p.name for p in folder.iterdir()) == ["2001-01.parquet", "2001-02.parquet"]


# --- the warehouse lock ----------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read")
    print("holding", flush=True)
    time.sleep(float(sys.argv[3]))
    con.close()
    """
)


@contextmanager
def _held(warehouse: Path, mode: str, seconds: float):
    """Another process (a notebook, the README's query) holding the warehouse for `seconds`."""
    if not warehouse.exists():
        duckdb.connect(str(warehouse)).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(warehouse), mode, str(seconds)], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline().strip() == b"holding"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_writer_waits_for_a_reader_that_lets_go(tmp_path):
    warehouse = tmp_path / "wh.duckdb"
    with _held(warehouse, "read", seconds=1.5):
        started = time.monotonic()
        with lake.connect(warehouse, wait_seconds=60) as con:
            con.execute("create table t as select 1 as x")
        waited = time.monotonic() - started
    assert waited > 0.5  # it waited for the reader instead of failing at once
    with lake.read_only(warehouse) as con:
        assert con.execute("select x from t").fetchone() == (1,)


def test_a_writer_gives_up_after_the_bounded_wait_naming_the_holder(tmp_path):
    warehouse = tmp_path / "wh.duckdb"
    with _held(warehouse, "read", seconds=120) as holder:
        started = time.monotonic()
        with pytest.raises(lake.WarehouseLockedError) as error, lake.connect(warehouse, wait_seconds=1.0):
            pass
        assert 1.0 <= time.monotonic() - started < 30
    message = str(error.value)
    assert f"PID {holder.pid}" in message
    assert "-c" in message and "import sys, time, duckdb" in message  # its command line, from /proc
    assert "PERMAFROST_WAREHOUSE_LOCK_WAIT_SECONDS" in message


def _lock_error(pid: int) -> duckdb.IOException:
    return duckdb.IOException(f'Could not set lock on file "wh.duckdb": Conflicting lock is held in python (PID {pid})')


def test_the_lock_wait_backs_off_to_a_second_and_retries_only_lock_errors(tmp_path):
    from dagster_project.lake.warehouse import lock_retrying

    pauses: list[float] = []
    attempts = iter([_lock_error(1)] * 7 + ["connection"])

    def connect_once():
        outcome = next(attempts)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert lock_retrying(tmp_path / "wh.duckdb", 60, sleep=pauses.append)(connect_once) == "connection"
    assert pauses == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0])

    def corrupt():
        raise duckdb.IOException("not a valid DuckDB database file")

    pauses.clear()
    with pytest.raises(duckdb.IOException, match="not a valid DuckDB"):
        lock_retrying(tmp_path / "wh.duckdb", 60, sleep=pauses.append)(corrupt)
    assert pauses == []  # any other error fails at once

    def locked():
        raise _lock_error(os.getpid())

    with pytest.raises(lake.WarehouseLockedError, match=r"locked by PID \d+ \(this process\); waited 0 s") as error:
        lock_retrying(tmp_path / "wh.duckdb", 0, sleep=pauses.append)(locked)
    assert pauses == [] and isinstance(error.value.__cause__, duckdb.IOException)


def test_reading_the_lake_through_your_own_duckdb_never_blocks_the_pipeline(tmp_path):
    """The README's ways to query while the pipeline runs: the lake's Parquet through an
    in-memory DuckDB, or a copy of warehouse tables taken through a short ATTACH."""
    folder = tmp_path / "raw" / "x"
    lake.write_partitions_atomic({folder / "2001-01.parquet": _frame(1.0)})
    warehouse = tmp_path / "wh.duckdb"
    with lake.connect(warehouse) as con:
        con.execute("create schema marts")
        con.execute("create table marts.m as select 1 as band")
    user = duckdb.connect()  # held open, like a notebook
    assert user.execute(f"select count(*) from read_parquet('{folder}/*.parquet')").fetchone() == (2,)
    user.execute(f"attach '{warehouse}' as warehouse (read_only)")
    user.execute("create table m as select * from warehouse.marts.m")
    user.execute("detach warehouse")
    with lake.connect(warehouse, wait_seconds=0) as con:  # no wait needed: nobody holds it
        con.execute("insert into marts.m values (2)")
    assert user.execute("select count(*) from m").fetchone() == (1,)
    user.close()


def test_no_two_assets_write_the_same_path(tmp_path):
    from dagster_project.definitions import defs
    from dagster_project.lake import LakeLayout

    layout = LakeLayout(tmp_path)
    graph = defs.resolve_asset_graph()
    writers: dict = {}
    for name in LakeLayout.assets():
        definition = graph.get(dg.AssetKey(name)).partitions_def
        if isinstance(definition, dg.DynamicPartitionsDefinition):
            partitions = ["2001-01-01", "2001-02-01", "2023-12-01"]  # published months, registered at run time
        else:
            partitions = definition.get_partition_keys()[:3] if definition else [None]
        for partition in partitions:
            for path in layout.outputs(name, partition, names=("gru", "rcp85")):
                writers.setdefault(path, set()).add(name)
    shared = {str(path): sorted(names) for path, names in writers.items() if len(names) > 1}
    assert shared == {}
    # and every asset that writes files is known to the layout (dbt assets write to DuckDB only)
    python_assets = {
        key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).group_name not in DBT_GROUPS
    }
    assert python_assets == set(LakeLayout.assets())


def test_dbt_sources_read_the_layout_globs(tmp_path):
    import yaml

    from dagster_project.dbt import SQL_DIR
    from dagster_project.lake import CMIP5, ERA5_LAND, LakeLayout

    sources = yaml.safe_load((SQL_DIR / "models" / "staging" / "_sources.yml").read_text())["sources"]
    layout = LakeLayout(tmp_path)
    for source in sources:
        for table in source["tables"]:
            location = (
                source["meta"]["external_location"]
                .replace("{{ env_var('PERMAFROST_LAKE_ROOT', '../data') }}", str(layout.root))
                .format(name=table["name"])
            )
            options = ", union_by_name = true, filename = true)" if table["name"] in (ERA5_LAND, CMIP5) else ")"
            assert location == f"read_parquet('{layout.raw_glob(table['name'])}'{options}"


def test_every_output_view_reads_a_path_of_the_layout_and_an_asset_that_writes_it(tmp_path):
    layout = lake.LakeLayout(tmp_path)
    written = {str(path) for asset in lake.LakeLayout.assets() for path in _outputs_of(layout, asset)}
    for view, (owners, description, _) in lake.OUTPUT_VIEWS.items():
        assert description and set(owners.split()) <= set(lake.LakeLayout.assets()), view
        source = layout.view_source(view)
        if "*" in source:  # a glob: every file it matches is written by one of its owners
            assert any(Path(path).match(source) for path in written), view
        else:
            assert source in written, view
    with pytest.raises(KeyError):
        layout.view_source(lake.Table("marts", "fct_band_month_features"))


def test_grid_modes_assets_write_their_own_paths_and_its_views_read_them(tmp_path):
    layout = lake.LakeLayout(tmp_path)
    tiles = ("r00c00", "r00c01", "r03c04")
    writers: dict = {}
    for name in lake.LakeLayout.grid_assets():
        for tile in tiles if name not in ("grid_maps", "cell_network") else (None,):
            for path in layout.outputs(name, tile, names=("rcp26", "rcp85")):
                writers.setdefault(str(path), set()).add(name)
    assert all(len(names) == 1 for names in writers.values())
    # core 2 per tile, scenarios 2 per tile, projections 3 per tile, maps 2 + 2 figures; shards 2 per
    # tile, the network's folder, its history 1 per tile, its projections 2 per tile
    assert len(writers) == 2 * 3 + 2 * 3 + 3 * 3 + 2 + 2 + 2 * 3 + 1 + 3 + 2 * 3
    band = {str(path) for asset in lake.LakeLayout.assets() for path in _outputs_of(layout, asset)}
    assert not band & set(writers)
    assert not set(lake.GRID_OUTPUT_VIEWS) & set(lake.OUTPUT_VIEWS)
    for view, (owners, description, _) in lake.GRID_OUTPUT_VIEWS.items():
        assert description and set(owners.split()) <= set(lake.LakeLayout.grid_assets()) and "grid_maps" in owners
        source = layout.view_source(view)
        assert any(Path(path).match(source) for path in writers) if "*" in source else source in writers, view
    assert not set(lake.GRID_NETWORK_VIEWS) & (set(lake.OUTPUT_VIEWS) | set(lake.GRID_OUTPUT_VIEWS))
    for view, (owners, description, _) in lake.GRID_NETWORK_VIEWS.items():
        assert description and set(owners.split()) <= set(lake.LakeLayout.grid_network_assets())
        source = layout.view_source(view)
        assert any(Path(path).match(source) for path in writers), view


def _outputs_of(layout: lake.LakeLayout, asset: str) -> list[Path]:
    partition = {"era5_land_monthly": "2001-01-01", "cmip5_monthly": "rcp45", "trained_models": "gru"}.get(asset)
    partition = partition or ("rcp45" if asset in ("cmip5_bias_corrected", "scenario_windows") else None)
    return layout.outputs(asset, partition, names=("rcp45", "gru"))


def test_an_output_view_shows_files_replaced_after_it_was_defined(tmp_path):
    from dagster_project.resources import WarehouseResource

    layout = lake.LakeLayout(tmp_path)
    warehouse = WarehouseResource(path=str(tmp_path / "wh.duckdb"), lock_wait_seconds=5)
    lake.write_partitions_atomic({layout.active_layer(): _frame(1.0)})
    metadata = warehouse.refresh_output_views(layout, "active_layer_thickness")
    assert metadata == {"warehouse_views": "projections.active_layer_thickness"}
    lake.write_partitions_atomic({layout.active_layer(): _frame(2.0)})  # a later run, view untouched
    with lake.read_only(warehouse.file) as con:
        assert con.execute("select max(t) from projections.active_layer_thickness").fetchone() == (2.0,)


def test_a_view_the_warehouse_lock_keeps_out_warns_and_does_not_fail_the_asset(tmp_path):
    from dagster_project.resources import WarehouseResource

    layout = lake.LakeLayout(tmp_path)
    warehouse = WarehouseResource(path=str(tmp_path / "wh.duckdb"), lock_wait_seconds=0.5)
    lake.write_partitions_atomic({layout.feature_importance(): _frame(1.0)})
    warnings = []

    class Log:
        def warning(self, message):
            warnings.append(message)

    with _held(warehouse.file, "read", seconds=120) as holder:
        metadata = warehouse.refresh_output_views(layout, "feature_importance", Log())
    [message] = warnings
    assert "evaluation.feature_importance" in message and f"PID {holder.pid}" in message
    assert set(metadata) == {"warehouse_views_not_refreshed"}
