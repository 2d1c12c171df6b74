import datetime as dt

import dagster as dg
import duckdb
import polars as pl
import pytest

from dagster_project import lake

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
    lake.refresh_parquet_view(warehouse, lake.Table("raw", "x"), str(tmp_path / "raw" / "x" / "*.parquet"))
    february = _frame(3.0).with_columns(month=pl.lit(dt.date(2001, 2, 1)))
    lake.write_partitions_atomic({tmp_path / "raw" / "x" / "2001-02.parquet": february})
    with lake.read_only(warehouse) as con:
        assert con.execute("select count(*), sum(t) from raw.x").fetchone() == (4, 8.0)
        with pytest.raises(duckdb.Error):
            con.execute("create table y as select 1")


def test_reader_of_a_missing_warehouse_says_so(tmp_path):
    with (
        pytest.raises(FileNotFoundError, match="materialize the raw assets first"),
        lake.read_only(tmp_path / "nope.duckdb"),
    ):
        pass


def test_view_names_are_identifiers(tmp_path):
    with pytest.raises(ValueError, match="identifier"):
        lake.refresh_parquet_view(tmp_path / "wh.duckdb", lake.Table("raw", "x; drop table y"), "*.parquet")


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
    tmp = lake.temporary_sibling(tmp_path / "raw" / "era5_land_monthly" / "2001-01.parquet")
    assert tmp.parent == tmp_path / "raw" / "era5_land_monthly"
    assert not tmp.match("*.parquet") and tmp.name.endswith(".tmp")


def test_no_two_assets_write_the_same_path(tmp_path):
    from dagster_project.definitions import defs
    from dagster_project.lake import LakeLayout

    layout = LakeLayout(tmp_path)
    graph = defs.resolve_asset_graph()
    writers: dict = {}
    for name in LakeLayout.assets():
        definition = graph.get(dg.AssetKey(name)).partitions_def
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
    from dagster_project.lake import LakeLayout

    sources = yaml.safe_load((SQL_DIR / "models" / "staging" / "_sources.yml").read_text())["sources"]
    layout = LakeLayout(tmp_path)
    for source in sources:
        for table in source["tables"]:
            location = (
                source["meta"]["external_location"]
                .replace("{{ env_var('PERMAFROST_LAKE_ROOT', '../data') }}", str(layout.root))
                .format(name=table["name"])
            )
            assert location == f"read_parquet('{layout.raw_glob(table['name'])}'" + (
                ", union_by_name = true)" if "union_by_name" in location else ")"
            )
