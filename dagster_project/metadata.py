"""Metadata helpers for the asset modules: markdown tables and inline figures for the UI."""

import base64
import io

import polars as pl
from dagster import MetadataValue

from dagster_project.lake import open_binary


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


# The UI's metadata dialog is about 1,150 px wide and markdown cannot size an image, so the copy
# shown there is scaled down to fit; the file in the lake keeps its full resolution.
UI_FIGURE_MAX_WIDTH_PX = 1000


def png_markdown(path, title: str, max_width: int = UI_FIGURE_MAX_WIDTH_PX) -> MetadataValue:
    """A PNG inlined in markdown metadata, so the Dagster UI shows the figure itself (behind
    "[Show Markdown]": the UI renders markdown inline only under 1,000 characters)."""
    from PIL import Image

    with open_binary(path) as file, Image.open(file) as image:
        if image.width > max_width:
            image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")
