"""Partitions: reanalysis months from 2001-01, CMIP5 experiments."""

from dagster import MonthlyPartitionsDefinition, StaticPartitionsDefinition

from dagster_project import catalog

# Keys are the month's first day ("2001-01-01"). The definition runs to the last complete
# calendar month; whether the source has published a month is asked at run time.
reanalysis_months = MonthlyPartitionsDefinition(start_date=catalog.HISTORY_START.isoformat())

cmip5_experiments = StaticPartitionsDefinition(list(catalog.CMIP5_EXPERIMENTS))
