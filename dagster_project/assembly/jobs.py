"""Named jobs over the asset graph: one per partitioning (a run holds one partitioning).

Built from the assets themselves, so a new asset joins the job of its partitioning, and the
demo runner launches its runs through these jobs (`job_name` in the UI's run list says which).
"""

from __future__ import annotations

from collections.abc import Iterable

from dagster import AssetKey, AssetsDefinition, AssetSelection, define_asset_job

from dagster_project.partitions import PARTITIONINGS, partitioning_of


def job_name(partitioning: str) -> str:
    return PARTITIONINGS[partitioning].job


def keys_by_partitioning(assets: Iterable[AssetsDefinition]) -> dict[str, list[AssetKey]]:
    grouped: dict[str, list[AssetKey]] = {name: [] for name in PARTITIONINGS}
    for assets_def in assets:
        grouped[partitioning_of(assets_def.partitions_def)].extend(sorted(assets_def.keys))
    return grouped


def partitioning_jobs(assets: Iterable[AssetsDefinition]) -> list:
    assets = list(assets)
    # a partitioning whose definition depends on the configuration (grid mode's tiles): its assets'
    tile_definitions = {a.partitions_def for a in assets if partitioning_of(a.partitions_def) == "tile"}
    if len(tile_definitions) > 1:
        raise ValueError("the tile-partitioned assets must share one grid's tile partitions")
    jobs = []
    for name, keys in keys_by_partitioning(assets).items():
        if not keys:
            continue
        partitioning = PARTITIONINGS[name]
        definition = next(iter(tile_definitions)) if name == "tile" else partitioning.definition
        jobs.append(
            define_asset_job(
                partitioning.job,
                selection=AssetSelection.assets(*keys),
                partitions_def=definition,
                description=partitioning.description,
                tags={"permafrost/partitioning": name},
            )
        )
    return jobs
