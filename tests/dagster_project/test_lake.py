import datetime as dt

import duckdb
import polars as pl
import pytest

from dagster_project import lake


def _frame(value: float) -> pl.DataFrame:
    return pl.DataFrame({"band": [0, 1], "month": [dt.date(2001, 1, 1)] * 2, "t": [value, value]})


def test_rewriting_a_partition_replaces_it(tmp_path):
    path = tmp_path / "raw" / "x" / "2001-01.parquet"
    lake.write_parquet_atomic(_frame(1.0), path)
    lake.write_parquet_atomic(_frame(2.0), path)
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
    lake.write_parquet_atomic(_frame(1.0), tmp_path / "raw" / "x" / "2001-01.parquet")
    warehouse = tmp_path / "wh.duckdb"
    lake.refresh_parquet_view(warehouse, "raw", "x", str(tmp_path / "raw" / "x" / "*.parquet"))
    lake.write_parquet_atomic(_frame(3.0).with_columns(month=pl.lit(dt.date(2001, 2, 1))), tmp_path / "raw" / "x" / "2001-02.parquet")
    with lake.read_only(warehouse) as con:
        assert con.execute("select count(*), sum(t) from raw.x").fetchone() == (4, 8.0)
        with pytest.raises(duckdb.Error):
            con.execute("create table y as select 1")


def test_reader_of_a_missing_warehouse_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="materialize the raw assets first"):
        with lake.read_only(tmp_path / "nope.duckdb"):
            pass


def test_view_names_are_identifiers(tmp_path):
    with pytest.raises(ValueError, match="identifier"):
        lake.refresh_parquet_view(tmp_path / "wh.duckdb", "raw", "x; drop table y", "*.parquet")


def test_any_file_is_written_atomically_and_keeps_its_suffix(tmp_path):
    import numpy as np

    target = tmp_path / "features" / "windows.npz"
    lake.write_file_atomic(target, lambda tmp: np.savez(tmp, x=np.arange(3)))
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

    lake.write_directory_atomic(target, write("v1"))
    lake.write_directory_atomic(target, write("v2"))
    assert {p.name: p.read_text() for p in target.iterdir()} == {"model.keras": "v2", "history.json": "v2"}

    def broken(folder):
        (folder / "model.keras").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        lake.write_directory_atomic(target, broken)
    assert (target / "model.keras").read_text() == "v2"
    assert [p.name for p in target.parent.iterdir()] == ["gru"]
