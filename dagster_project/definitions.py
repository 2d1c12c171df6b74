"""The code location: assets, checks, jobs, sensors, schedules and resources from the environment."""

import warnings

from dagster import BetaWarning, Definitions, load_assets_from_modules

from dagster_project import settings
from dagster_project.assembly import automation
from dagster_project.assembly.jobs import partitioning_jobs
from dagster_project.assembly.sensors import monthly_refresh_schedule, new_month_sensor
from dagster_project.resources import build_resources
from data_quality.checks import build_asset_checks
from sources.registry import reanalysis_grid

config = settings.from_environment()

with warnings.catch_warnings():
    # single-run backfills (BackfillPolicy) are a Dagster beta the project relies on knowingly
    warnings.simplefilter("ignore", BetaWarning)
    from assets import features, models, raw, staging, validation

    assets = load_assets_from_modules([raw, staging, features, models, validation])
    # grid mode (the reanalysis delivers a grid's cells): the tile-partitioned assets and the maps
    grid = reanalysis_grid(config.sources)
    if grid is not None:
        from assets.grid import grid_assets
        from assets.grid_networks import grid_network_assets

        assets = [*assets, *grid_assets(grid), *grid_network_assets(grid)]
    all_assets = automation.apply(assets, config.retrain_cron)

defs = Definitions(
    assets=all_assets,
    asset_checks=build_asset_checks(config.freshness_max_lag_months),
    jobs=partitioning_jobs(all_assets),
    sensors=[new_month_sensor(config.new_month_poll_seconds), automation.automation_sensor()],
    schedules=[monthly_refresh_schedule],
    resources=build_resources(config),
)
