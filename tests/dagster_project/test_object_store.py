"""The lake on an object store, against a real local S3 (moto's server on loopback): batches
land whole or not at all, under a writer killed before its manifest or while publishing."""

import datetime as dt
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import duckdb
import polars as pl
import pytest
from paused_writers import release

from dagster_project import lake
from dagster_project.lake.object_store import ObjectLake


def _frame(writer: str) -> pl.DataFrame:
    return pl.DataFrame({"band": [0, 1], "writer": [writer, writer]})


def _objects(root) -> list[str]:
    """Every object below the root, as keys relative to it."""
    return sorted(key[len(root.path) + 1 :] for key in ObjectLake(root).find(root.path))


def _writer_of(root, relative: str) -> str:
    with root.fs.open(f"{root.path}/{relative}", "rb") as handle:
        return pl.read_parquet(handle)["writer"][0]


def _staged(root) -> list:
    return ObjectLake(root).batches()


# A writer in another process: stages one Parquet file per target, and waits (to be killed, or
# told to go on) where `hold` says: `staged` (before its manifest) or `publishing` (after the
# manifest, once the first file is copied onto its target).
WRITER = textwrap.dedent(
    """
    import sys
    import polars as pl
    from upath import UPath
    from dagster_project import lake

    url, endpoint, hold, *targets = sys.argv[1:]
    root = UPath(url, client_kwargs={"endpoint_url": endpoint})

    def wait(message):
        print(message, flush=True)
        sys.stdin.readline()

    if hold == "publishing":
        copy = root.fs.cp_file

        def copy_then_wait(source, destination, **kwargs):
            copy(source, destination, **kwargs)
            wait("publishing")

        root.fs.cp_file = copy_then_wait
    with lake.atomic_batch(root) as batch:
        for target in targets:
            batch.parquet(root / target, pl.DataFrame({"band": [0, 1], "writer": ["other", "other"]}))
        if hold == "staged":
            wait("staged")
    print("landed", flush=True)
    """
)


def _start_writer(root, endpoint: str, hold: str, *targets: str) -> subprocess.Popen:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), endpoint, hold, *targets],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == hold
    return writer


def _kill(writer: subprocess.Popen) -> None:
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL


def test_a_batch_lands_all_its_files_or_none(s3_root):
    table, figure, model = s3_root / "evaluation/t.parquet", s3_root / "figures/f.png", s3_root / "models/gru"
    neighbour = "models/gru_residual/model.keras"  # shares the folder's name as a key prefix
    s3_root.fs.pipe_file(f"{s3_root.path}/{neighbour}", b"other model")

    def model_files(version, *extra):
        def fill(folder):
            (folder / "model.keras").write_text(version)
            for name in extra:
                (folder / name).write_text(version)

        return fill

    with lake.atomic_batch(s3_root) as batch:
        batch.parquet(table, _frame("v1"))
        batch.file(figure, lambda tmp: tmp.write_bytes(b"png v1"))
        batch.folder(model, model_files("v1", "old.json"))
        assert _objects(s3_root) == [  # staged, and nothing has landed
            *(
                f".batches/{batch.name}/{key}.tmp"
                for key in ("evaluation/t.parquet", "figures/f.png", "models/gru/model.keras", "models/gru/old.json")
            ),
            neighbour,
        ]
    landed = ["evaluation/t.parquet", "figures/f.png", "models/gru/model.keras", "models/gru/old.json", neighbour]
    assert _objects(s3_root) == landed
    assert _writer_of(s3_root, "evaluation/t.parquet") == "v1"

    with lake.atomic_batch(s3_root) as batch:  # a folder is replaced whole: old.json goes
        batch.folder(model, model_files("v2"))
    assert (model / "model.keras").read_text() == "v2" and not (model / "old.json").exists()
    assert (s3_root / neighbour).read_bytes() == b"other model"
    before = {key: (s3_root / key).read_bytes() for key in _objects(s3_root)}

    def failing_batch():
        with lake.atomic_batch(s3_root) as batch:
            batch.parquet(table, _frame("v3"))
            batch.folder(model, model_files("v3", "new.json"))
            batch.file(figure, lambda tmp: (_ for _ in ()).throw(RuntimeError("figure failed")))

    with pytest.raises(RuntimeError, match="figure failed"):
        failing_batch()
    assert {key: (s3_root / key).read_bytes() for key in _objects(s3_root)} == before  # no staging left either


def test_a_writer_killed_before_its_manifest_lands_nothing_and_its_staging_goes_later(s3_root, s3_endpoint):
    targets = ["raw/x/2001-01.parquet", "raw/x/2001-02.parquet"]
    lake.write_partitions_atomic({s3_root / target: _frame("before") for target in targets}, s3_root)
    _kill(_start_writer(s3_root, s3_endpoint, "staged", *targets))

    [abandoned] = _staged(s3_root)
    assert abandoned.manifest is None and len(abandoned.keys) == 2
    assert lake.complete_committed_batches(s3_root) == []  # a reader completes nothing: nothing committed
    assert [_writer_of(s3_root, target) for target in targets] == ["before", "before"]

    with lake.atomic_batch(s3_root) as batch:  # the next writer, in another folder
        batch.parquet(s3_root / "raw/y/2001-01.parquet", _frame("next"))
    assert batch.cleaned == [abandoned.name] and batch.completed == []
    assert _objects(s3_root) == sorted([*targets, "raw/y/2001-01.parquet"])
    assert [_writer_of(s3_root, target) for target in targets] == ["before", "before"]


@pytest.mark.parametrize("completer", ["next writer", "reader"])
def test_a_writer_killed_while_publishing_is_completed_by_the_next_that_looks(s3_root, s3_endpoint, completer):
    targets = ["raw/x/2001-01.parquet", "raw/x/2001-02.parquet", "figures/x.parquet"]
    lake.write_partitions_atomic({s3_root / target: _frame("before") for target in targets}, s3_root)
    _kill(_start_writer(s3_root, s3_endpoint, "publishing", *targets))

    [committed] = _staged(s3_root)
    assert committed.manifest is not None
    # what a reader that does not look at the manifests sees meanwhile: each file whole, old or new
    assert [_writer_of(s3_root, target) for target in targets] == ["other", "before", "before"]

    if completer == "reader":
        assert lake.complete_committed_batches(s3_root) == [committed.name]
    else:
        with lake.atomic_batch(s3_root) as batch:
            batch.parquet(s3_root / "raw/y/2001-01.parquet", _frame("next"))
        assert batch.completed == [committed.name] and batch.cleaned == []
    assert [_writer_of(s3_root, target) for target in targets] == ["other", "other", "other"]
    assert _staged(s3_root) == []
    assert lake.complete_committed_batches(s3_root) == []  # done once


def test_two_writers_in_one_folder_keep_their_staging_apart(s3_root, s3_endpoint):
    first = _start_writer(s3_root, s3_endpoint, "staged", "raw/x/2001-01.parquet")
    try:
        [staging] = _staged(s3_root)
        with lake.atomic_batch(s3_root) as batch:
            batch.parquet(s3_root / "raw/x/2001-02.parquet", _frame("second"))
            assert batch.name != staging.name
        assert batch.cleaned == [] and batch.completed == []  # a live writer's staging stays
        assert [batch.name for batch in _staged(s3_root)] == [staging.name]
        release(first)
    finally:
        first.communicate(timeout=60)
    assert first.returncode == 0
    assert _objects(s3_root) == ["raw/x/2001-01.parquet", "raw/x/2001-02.parquet"]
    assert [_writer_of(s3_root, f"raw/x/2001-0{month}.parquet") for month in (1, 2)] == ["other", "second"]


def test_readers_see_committed_batches_and_never_the_staging(s3_root):
    import pyarrow.parquet as pq

    lake.write_partitions_atomic({s3_root / "raw/x/2001-01.parquet": _frame("first")}, s3_root)
    duck = duckdb.connect()
    duck.register_filesystem(s3_root.fs)  # DuckDB reads s3:// through fsspec: no httpfs extension
    everything = f"select writer, count(*) from read_parquet('{s3_root}/**/*.parquet') group by all order by all"
    with lake.atomic_batch(s3_root) as batch:
        batch.parquet(s3_root / "raw/x/2001-02.parquet", _frame("second"))
        assert duck.execute(everything).fetchall() == [("first", 2)]  # staged: no glob over the root reads it
    assert duck.execute(everything).fetchall() == [("first", 2), ("second", 2)]

    with s3_root.fs.open(f"{s3_root.path}/raw/x/2001-02.parquet", "rb") as handle:
        assert pl.read_parquet(handle)["writer"].to_list() == ["second", "second"]
    table = pq.read_table(f"{s3_root.path}/raw/x", filesystem=s3_root.fs)
    assert sorted(table.column("writer").to_pylist()) == ["first", "first", "second", "second"]


def test_abandoned_staging_from_another_host_goes_once_no_write_could_still_run(s3_root):
    store = ObjectLake(s3_root)
    started = int(time.time())
    other_host = "00000000" if lake.batches.processes.host_tag() != "00000000" else "11111111"
    abandoned = f"{other_host}-1.{started}.{uuid.uuid4().hex}"
    foreign = "not-a-batch-of-ours"
    for name in (abandoned, foreign):
        s3_root.fs.pipe_file(f"{store.staging}/{name}/raw/x/2001-01.parquet.tmp", b"half")
    assert store.remove_abandoned(now=started + 60) == []  # its writer may still run
    assert store.remove_abandoned(now=started + lake.STALE_TEMPORARY_AGE_SECONDS + 60) == [abandoned]
    assert [batch.name for batch in store.batches()] == [foreign]  # a name we never write is left alone


def test_a_lake_root_url_as_the_settings_give_it(s3_endpoint, monkeypatch):
    """`PERMAFROST_LAKE_ROOT=s3://...`: the endpoint and credentials come from the environment."""
    import s3fs

    from dagster_project.resources import LakeResource

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    s3fs.S3FileSystem.clear_instance_cache()  # one made before the variable was set would keep its endpoint
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    resource = LakeResource(root=f"s3://{bucket}/lake")
    layout = resource.layout
    layout.root.fs.mkdir(bucket)
    january = layout.era5_land_month(dt.date(2001, 1, 1))
    assert str(january) == f"s3://{bucket}/lake/raw/era5_land_monthly/2001-01.parquet"
    assert layout.raw_glob(lake.ERA5_LAND) == f"s3://{bucket}/lake/raw/era5_land_monthly/*.parquet"
    resource.write_partitions({january: _frame("raw")})
    with resource.batch() as batch:
        batch.parquet(layout.active_layer(), _frame("alt"))
    assert _objects(layout.root) == [
        "projections/active_layer_thickness.parquet",
        "raw/era5_land_monthly/2001-01.parquet",
    ]
    assert _writer_of(layout.root, "raw/era5_land_monthly/2001-01.parquet") == "raw"


def test_local_and_object_roots(tmp_path):
    assert lake.lake_root(str(tmp_path / "data")) == tmp_path.resolve() / "data"
    assert lake.lake_root(f"file://{tmp_path}/data") == tmp_path.resolve() / "data"
    assert not lake.is_object_root(lake.LakeLayout(f"file://{tmp_path}").root)
    layout = lake.LakeLayout("s3://bucket/lake")
    assert lake.is_object_root(layout.root)
    assert layout.view_source(lake.Table("projections", "active_layer_thickness")) == (
        "s3://bucket/lake/projections/active_layer_thickness.parquet"
    )
    with pytest.raises(ValueError, match="PERMAFROST_WAREHOUSE to a local path"):
        layout.default_warehouse()
    with pytest.raises(TypeError, match=r"not a local path: open the batch with its lake root"):
        lake.write_partitions_atomic({layout.active_layer(): _frame("x")})  # no root given: a local batch
    with pytest.raises(ValueError, match="is not under the lake root s3://bucket/lake"):
        lake.write_partitions_atomic({lake.LakeLayout("s3://bucket/other").active_layer(): _frame("x")}, layout.root)


def test_the_warehouse_reads_views_over_the_lake_on_an_object_store(s3_endpoint, monkeypatch, tmp_path):
    """`WarehouseResource` with an `s3://` lake root registers the lake's file system on its
    connections: it defines a view over objects and reads it; without the root it cannot."""
    import s3fs

    from dagster_project.resources import LakeResource, WarehouseResource

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    s3fs.S3FileSystem.clear_instance_cache()
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    resource = LakeResource(root=f"s3://{bucket}/lake")
    layout = resource.layout
    layout.root.fs.mkdir(bucket)
    with resource.batch() as batch:
        batch.parquet(layout.active_layer(), _frame("alt"))
    warehouse = WarehouseResource(path=str(tmp_path / "wh.duckdb"), lock_wait_seconds=5, lake_root=resource.root)
    metadata = warehouse.refresh_output_views(layout, "active_layer_thickness")
    view = lake.Table("projections", "active_layer_thickness")
    assert metadata == {"warehouse_views": str(view)}
    query = f'select writer from "{view.schema}"."{view.name}"'
    with warehouse.read_only() as con:
        assert {row[0] for row in con.sql(query).fetchall()} == {"alt"}
    blind = WarehouseResource(path=str(tmp_path / "wh.duckdb"), lock_wait_seconds=5)
    with blind.read_only() as con, pytest.raises(duckdb.Error):
        con.sql(query).fetchall()  # no file system for s3:// (and no httpfs offline)
