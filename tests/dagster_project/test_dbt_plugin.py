"""The dbt plugin's folder functions (`dagster_project.lake.dbt_plugin`) on a local lake: which
layout a folder holds, and a window's partitions put in place together or not at all."""

import os
from pathlib import Path

import pytest

from dagster_project.lake import dbt_plugin


def _partition(root: Path, tile: str, year: int, text: str) -> Path:
    folder = root / f"tile={tile}" / f"year={year}"
    folder.mkdir(parents=True)
    (folder / "data_0.parquet").write_text(text)  # the functions move folders; they never read a file
    return folder


def _contents(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*.parquet"))}


@pytest.fixture
def mart(tmp_path):
    target = tmp_path / "marts" / "fct_cell_month_features"
    for tile in ("r00c00", "r00c01"):
        for year in (2000, 2001):
            _partition(target, tile, year, f"old {tile} {year}")
    return target


def test_partitions_at_tells_the_layout(mart, tmp_path):
    assert dbt_plugin.partitions_at(str(mart), 2)
    assert not dbt_plugin.partitions_at(str(mart), 1)  # the files lie two levels down
    assert not dbt_plugin.partitions_at(str(tmp_path / "nothing"), 2)
    (mart / "tile=r00c00" / "stray.parquet").write_text("a file of the old, one-level layout")
    assert not dbt_plugin.partitions_at(str(mart), 2)  # mixed depths: write the whole folder
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not dbt_plugin.partitions_at(str(empty), 2)


def test_a_windows_partitions_replace_theirs_and_leave_the_others(mart):
    temporary = Path(dbt_plugin.temporary_folder(str(mart)))
    for tile in ("r00c00", "r00c01"):
        _partition(temporary, tile, 2001, f"new {tile} 2001")
    _partition(temporary, "r01c00", 2001, "new r01c00 2001")  # a tile the mart did not hold yet
    assert dbt_plugin.replace_partitions(str(temporary), str(mart), 2) == 3
    assert _contents(mart) == {
        "tile=r00c00/year=2000/data_0.parquet": "old r00c00 2000",
        "tile=r00c00/year=2001/data_0.parquet": "new r00c00 2001",
        "tile=r00c01/year=2000/data_0.parquet": "old r00c01 2000",
        "tile=r00c01/year=2001/data_0.parquet": "new r00c01 2001",
        "tile=r01c00/year=2001/data_0.parquet": "new r01c00 2001",
    }
    assert not temporary.exists()
    assert [p.name for p in mart.parent.iterdir()] == [mart.name]  # nothing aside, no temporary
    assert not [p for p in mart.rglob("*") if p.name.startswith(".")]  # no hidden folder a glob would read


def test_a_failed_rename_puts_every_partition_back(mart, monkeypatch):
    before = _contents(mart)
    temporary = Path(dbt_plugin.temporary_folder(str(mart)))
    for tile in ("r00c00", "r00c01"):
        _partition(temporary, tile, 2001, f"new {tile} 2001")
    calls = []
    real_replace = os.replace

    def failing_replace(source, destination):
        calls.append((source, destination))
        if len(calls) == 4:  # the second partition's new folder going in
            raise OSError("disk gone")
        return real_replace(source, destination)

    monkeypatch.setattr(dbt_plugin.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        dbt_plugin.replace_partitions(str(temporary), str(mart), 2)
    monkeypatch.setattr(dbt_plugin.os, "replace", real_replace)
    assert _contents(mart) == before  # the old partitions, every one
    assert _contents(temporary) == {  # the new ones still staged, the next writer's to clean
        "tile=r00c00/year=2001/data_0.parquet": "new r00c00 2001",
        "tile=r00c01/year=2001/data_0.parquet": "new r00c01 2001",
    }


def test_a_temporary_that_is_not_partitions_is_refused(mart):
    temporary = Path(dbt_plugin.temporary_folder(str(mart)))
    (temporary / "loose").mkdir()
    (temporary / "loose" / "file").mkdir()
    with pytest.raises(ValueError, match="hive partition folders"):
        dbt_plugin.replace_partitions(str(temporary), str(mart), 2)
    with pytest.raises(ValueError, match="object-store path where a local folder"):
        dbt_plugin.replace_partitions("s3://bucket/tmp", "s3://bucket/marts/x", 2)
