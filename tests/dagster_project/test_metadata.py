import base64
import io

from PIL import Image

from dagster_project.metadata import UI_FIGURE_MAX_WIDTH_PX, png_markdown


def _shown(markdown: str) -> Image.Image:
    encoded = markdown.split("base64,", 1)[1].rstrip(")")
    return Image.open(io.BytesIO(base64.b64decode(encoded)))


def test_a_wide_figure_is_shown_scaled_to_the_dialog_and_the_file_keeps_its_resolution(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (2400, 600), "white").save(path)
    value = png_markdown(path, "projections rcp85")
    assert value.value.startswith("![projections rcp85](data:image/png;base64,")
    assert _shown(value.value).size == (UI_FIGURE_MAX_WIDTH_PX, 250)
    assert Image.open(path).size == (2400, 600)


def test_a_narrow_figure_is_shown_as_it_is(tmp_path):
    path = tmp_path / "narrow.png"
    Image.new("RGB", (640, 480), "white").save(path)
    assert _shown(png_markdown(path, "x").value).size == (640, 480)
