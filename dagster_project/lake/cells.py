"""Where grid mode's cells live: one tile's monthly rows, read from the cell mart when it has the
tiles, else from the history mart. The one query grid mode's assets share (`tile_rows`); plain
polars frames, so the infrastructure needs no ml module; and the band scenarios grid mode regrids
(`read_band_scenarios`). No Dagster.

The cell mart `marts.fct_cell_month_features` is a view over Parquet partitioned by tile and year
(`<lake>/marts/fct_cell_month_features/tile=<key>/year=<yyyy>/`): a filter on `tile` with literal
keys lets DuckDB read only the wanted tiles' folders. A warehouse without it (a lake from before
the cell mart, or tests that write only the history mart) is read from the history mart's rows of
the tiles' cells, `marts.fct_band_month_features`, which holds every column of the cell mart but
`tile`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import polars as pl

from dagster_project.lake.layout import HISTORY_MART, SCENARIO_MART, Table
from sources import catalog

CELL_MART = Table("marts", "fct_cell_month_features")
TILE_KEY = re.compile(r"r\d+c\d+")


def _has_relation(con, table: Table) -> bool:
    found = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [table.schema, table.name],
    ).fetchall()
    return bool(found[0][0])


def _columns(con, table: Table) -> set[str]:
    rows = con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
        [table.schema, table.name],
    ).fetchall()
    return {row[0] for row in rows}


def tile_rows(warehouse, grid, tiles: Sequence[str], names: Sequence[str]) -> dict[str, pl.DataFrame]:
    """Per tile key, the rows ``unit``, ``month``, ``names`` of the tile's land cells, by unit and
    month: from the cell mart's partitions of those tiles when the cell mart holds every wanted
    column, else from the history mart (``warehouse``: a resource with ``read_only()``; ``grid``:
    a ``sources.grid.Grid``). A tile with no row is an error naming it and the table read."""
    tiles = list(tiles)
    bad = [key for key in tiles if not TILE_KEY.fullmatch(key)]
    if bad:
        raise ValueError(f"tile keys look like r00c03; got {bad[:5]}")
    cells = {key: np.asarray(grid.tile(key).cells, dtype=np.int64) for key in tiles}
    columns = ", ".join(f'"{name}"' for name in names)
    with warehouse.read_only() as con:
        use_cell_mart = _has_relation(con, CELL_MART) and {"unit", "month", "tile", *names} <= _columns(con, CELL_MART)
        if use_cell_mart:
            keys = ", ".join(f"'{key}'" for key in tiles)  # checked against TILE_KEY above
            query = (
                f'select unit, month, tile, {columns} from "{CELL_MART.schema}"."{CELL_MART.name}" '
                f"where tile in ({keys}) order by unit, month"
            )
            frame = pl.from_arrow(con.sql(query).to_arrow_table())
            if frame.is_empty():  # a cell mart not built yet (e.g. before its first dbt run): the history mart
                use_cell_mart = False
        if not use_cell_mart:
            wanted = np.concatenate(list(cells.values())).tolist()
            frame = pl.from_arrow(
                con.sql(
                    f'select unit, month, {columns} from "{HISTORY_MART.schema}"."{HISTORY_MART.name}" '
                    "where unit in (select unnest(?)) order by unit, month",
                    params=[wanted],
                ).to_arrow_table()
            )
    table = CELL_MART if use_cell_mart else HISTORY_MART
    out = {}
    for key, ids in cells.items():
        rows = frame.filter(pl.col("unit").cast(pl.Int64).is_in(ids.tolist()))
        if rows.is_empty():
            raise ValueError(f"{table}: no row for any cell of tile {key} ({ids.size} cells): run dbt build first")
        out[key] = rows.select("unit", "month", *names)
    return out


def read_band_scenarios(warehouse, names: Sequence[str]) -> pl.DataFrame:
    """Every RCP's band scenarios from the warehouse (a `WarehouseResource`): the scenario mart,
    one row per scenario, band and month, the historical run spliced before the RCP; columns
    scenario, band, month, ``names``."""
    columns = ", ".join(f'"{name}"' for name in names)
    with warehouse.read_only() as con:
        return pl.from_arrow(
            con.sql(
                f'select scenario, band, month, {columns} from "{SCENARIO_MART.schema}"."{SCENARIO_MART.name}" '
                "where scenario in (select unnest(?)) order by scenario, band, month",
                params=[list(catalog.RCP_EXPERIMENTS)],
            ).to_arrow_table()
        )
