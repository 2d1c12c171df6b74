"""`dagster_project.lake.cells.tile_rows`: a tile's rows from the cell mart's partitions of that
tile only, else from the history mart."""

import duckdb
import numpy as np
import polars as pl
import pytest

from dagster_project.lake.cells import tile_rows
from dagster_project.resources import WarehouseResource
from sources.grid import Grid, GridSpec

SPEC = GridSpec(
    south=64.0, north=64.9, west=-150.0, east=-149.1, lat_step=0.3, lon_step=0.3, centred=True, tile_rows=2, tile_cols=2
)
GRID = Grid(SPEC, np.ones((3, 3), dtype=bool))
MONTHS = [f"2001-{m:02d}-01" for m in range(1, 4)]


def _rows(cells, offset: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "unit": np.repeat(cells, len(MONTHS)).astype(np.int64),
            "month": pl.Series(MONTHS * len(cells)).str.to_date(),
            "t_air": np.arange(len(cells) * len(MONTHS), dtype=float) + offset,
        }
    )


def _warehouse(tmp_path, with_cell_mart: bool) -> WarehouseResource:
    path = tmp_path / "warehouse.duckdb"
    history = pl.concat(_rows(t.cells, 0.0) for t in GRID.tiles)
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts")
        con.register("history", history.to_arrow())
        con.execute("create table marts.fct_band_month_features as select * from history")
        if with_cell_mart:
            mart = tmp_path / "marts" / "fct_cell_month_features"
            for tile in GRID.tiles:
                folder = mart / f"tile={tile.key}" / "year=2001"
                folder.mkdir(parents=True)
                _rows(tile.cells, 1000.0).write_parquet(folder / "data_0.parquet")
            # a broken file in a tile not asked for: reading it would fail
            (mart / "tile=r01c01" / "year=2001" / "data_1.parquet").write_bytes(b"not parquet")
            con.execute(
                "create view marts.fct_cell_month_features as select * from "
                f"read_parquet('{mart}/*/*/*.parquet', hive_partitioning = true)"
            )
    return WarehouseResource(path=str(path))


def test_tile_rows_reads_only_the_wanted_tiles_partitions_of_the_cell_mart(tmp_path):
    rows = tile_rows(_warehouse(tmp_path, True), GRID, ["r00c00", "r01c00"], ["t_air"])
    assert list(rows) == ["r00c00", "r01c00"]
    for key, frame in rows.items():
        cells = GRID.tile(key).cells
        assert frame.columns == ["unit", "month", "t_air"] and frame.height == cells.size * len(MONTHS)
        assert sorted(set(frame["unit"].to_list())) == cells.tolist()
        assert frame["t_air"].min() >= 1000.0  # the cell mart's rows, not the history mart's


def test_tile_rows_falls_back_to_the_history_mart(tmp_path):
    rows = tile_rows(_warehouse(tmp_path, False), GRID, ["r01c01"], ["t_air"])
    assert rows["r01c01"]["unit"].unique().to_list() == GRID.tile("r01c01").cells.tolist()
    assert rows["r01c01"]["t_air"].max() < 1000.0


def test_tile_rows_refuses_a_bad_tile_key(tmp_path):
    with pytest.raises(ValueError, match="tile keys look like"):
        tile_rows(_warehouse(tmp_path, False), GRID, ["r0'; drop"], ["t_air"])
