"""Partitions: reanalysis months from 2001-01, CMIP5 experiments."""

from dagster import MonthlyPartitionsDefinition, StaticPartitionsDefinition

from dagster_project import catalog

# Keys are the month's first day ("2001-01-01"). The definition runs to the last complete
# calendar month; whether the source has published a month is asked at run time.
reanalysis_months = MonthlyPartitionsDefinition(start_date=catalog.HISTORY_START.isoformat())

cmip5_experiments = StaticPartitionsDefinition(list(catalog.CMIP5_EXPERIMENTS))

rcp_scenarios = StaticPartitionsDefinition(list(catalog.RCP_EXPERIMENTS))

# Must match ml.architectures.ARCHITECTURES (a test checks; ml is not imported at load).
architectures = StaticPartitionsDefinition(["tcn", "transformer", "conv1d_lstm", "gru", "bilstm"])
