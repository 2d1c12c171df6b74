"""The code location: assets, checks, jobs, sensors and resources from the environment."""

from dagster import Definitions, load_assets_from_modules

from assets import features, models, raw, staging
from dagster_project import settings
from dagster_project.jobs import partitioning_jobs
from dagster_project.resources import build_resources
from dagster_project.sensors import era5_land_monthly_job, era5_land_new_month_sensor
from data_quality.checks import asset_checks

all_assets = load_assets_from_modules([raw, staging, features, models])

defs = Definitions(
    assets=all_assets,
    asset_checks=asset_checks,
    jobs=[era5_land_monthly_job, *partitioning_jobs(all_assets)],
    sensors=[era5_land_new_month_sensor],
    resources=build_resources(settings.from_environment()),
)
