"""Metadata helpers for the asset modules: markdown tables and inline figures for the UI."""

import base64
from pathlib import Path

import polars as pl
from dagster import MetadataValue


def markdown_table(frame: pl.DataFrame, float_precision: int | None = None) -> str:
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=10_000,  # no wrapping of long names: the UI renders the markdown
        fmt_str_lengths=200,
        float_precision=float_precision,
    ):
        return str(frame)


def png_markdown(path: Path, title: str) -> MetadataValue:
    """A PNG inlined in markdown metadata, so the Dagster UI shows the figure itself."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")
