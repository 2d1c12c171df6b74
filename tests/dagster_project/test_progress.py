"""What `make demo` shows: plain lines off a terminal, a bar per stage on one, and a closing
summary of what was made and where."""

import io
import re

import pytest
from dagster import AssetKey
from rich.console import Console

from dagster_project import settings
from dagster_project.lake import OUTPUT_VIEWS, LakeLayout
from dagster_project.launcher.demo import demo_log, made_summary
from dagster_project.launcher.progress import BarProgress, PlainProgress

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but tab and newline


def test_plain_progress_prints_a_line_when_a_stage_starts_and_ends():
    lines = []
    progress = PlainProgress(lines.append)
    progress.say("registered 3 published month(s)")
    progress.stage_started("stage 1/2 unpartitioned: band_lithology", total=6)
    progress.stage_advanced(3)
    progress.stage_finished(12.34)
    assert lines == [
        "registered 3 published month(s)",
        "stage 1/2 unpartitioned: band_lithology: started",
        "stage 1/2 unpartitioned: band_lithology: 12.3 s",
    ]
    assert not any(CONTROL.search(line) for line in lines)


def test_the_bar_keeps_a_stage_on_one_line_and_prints_lines_above_it():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=60, color_system=None)
    label = "stage 3/7 reanalysis_month: era5_land_monthly, stg_era5_land__monthly, fct_band_month_features"
    with BarProgress(console) as progress:
        progress.stage_started(label, total=4)
        progress.stage_advanced(2)
        progress.say("waiting (3 s): step dbt_models is blocked by limit for pool duckdb_warehouse")
        progress.stage_finished(1.0)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    frames = [frame for line in text.split("\n") for frame in line.split("\r") if "stage 3/7" in frame]
    assert frames and all(len(frame) <= 60 for frame in frames)  # the label gives way, not the line
    assert frames[-1].startswith("[demo] stage 3/7 reanalysi")
    assert "4/4" in frames[-1] and frames[-1].rstrip().endswith("0:00:00")  # full, with the stage's time
    assert "[demo] waiting (3 s): step dbt_models is blocked" in text


def test_the_summary_names_the_outputs_made_the_log_and_the_ui(tmp_path):
    config = settings.from_environment({settings.ENV_LAKE_ROOT: str(tmp_path / "data")})
    layout = LakeLayout(config.lake_root)
    everything = {AssetKey(name) for output in OUTPUT_VIEWS.values() for name in output.owners.split()}
    log = demo_log(config.lake_root)
    lines = made_summary(config, everything, log)
    for view, output in OUTPUT_VIEWS.items():
        assert any(line.startswith(f"  {view}: {output.files(layout)}") for line in lines), view
    assert str(config.warehouse_path) in "\n".join(lines)
    assert any(str(log) in line for line in lines) and any("make dev" in line for line in lines)
    assert log.parent == config.lake_root / "logs" and log.parent.is_dir()

    # only the views whose assets were made
    partial = made_summary(config, {AssetKey("model_evaluation")}, None)
    assert [line for line in partial if line.startswith("  ")] == [
        f"  evaluation.model_evaluation: {layout.model_evaluation()} ({output.description})"
        for view, output in OUTPUT_VIEWS.items()
        if str(view) == "evaluation.model_evaluation"
    ]


def test_with_the_lake_on_an_object_store_the_log_lies_beside_the_warehouse(tmp_path):
    warehouse = tmp_path / "local" / "warehouse.duckdb"
    log = demo_log("s3://a-bucket/lake", warehouse=warehouse)  # no request: the log is local
    assert log.parent == warehouse.parent / "logs" and log.parent.is_dir() and log.name.startswith("demo-")
    with pytest.raises(ValueError, match="on an object store: the log needs the local warehouse's folder"):
        demo_log("s3://a-bucket/lake")
