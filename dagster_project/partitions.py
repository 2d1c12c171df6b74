"""Partitions: reanalysis months from 2001-01, CMIP5 experiments."""

from dagster import MonthlyPartitionsDefinition, StaticPartitionsDefinition

from sources import catalog

# Keys are the month's first day ("2001-01-01"). The definition runs to the last complete
# calendar month; whether the source has published a month is asked at run time.
reanalysis_months = MonthlyPartitionsDefinition(start_date=catalog.HISTORY_START.isoformat())

cmip5_experiments = StaticPartitionsDefinition(list(catalog.CMIP5_EXPERIMENTS))

rcp_scenarios = StaticPartitionsDefinition(list(catalog.RCP_EXPERIMENTS))

# Must match ml.architectures.ARCHITECTURES (a test checks; ml is not imported at load).
architectures = StaticPartitionsDefinition(["tcn", "transformer", "conv1d_lstm", "gru", "bilstm"])

# Every partitioning of the graph, with the job that runs its assets (one partitioning per
# run is all Dagster allows): name -> (definition, job description).
PARTITIONINGS: dict[str, tuple[object, str]] = {
    "unpartitioned": (
        None,
        "Unpartitioned assets: static extracts, the dbt models over them and the scenario mart, training "
        "windows, evaluation, projections, active layer and explanations.",
    ),
    "reanalysis_month": (
        reanalysis_months,
        "Assets partitioned by reanalysis month: the raw ERA5-Land month and its rows of the history mart. "
        "Launch for one month, or a range as one run (backfill).",
    ),
    "cmip5_experiment": (cmip5_experiments, "CMIP5 experiments (historical and four RCPs) landed raw."),
    "rcp": (rcp_scenarios, "Per RCP: bias-corrected scenario features and scenario windows."),
    "architecture": (architectures, "One network per architecture trained on the training windows."),
}


def partitioning_of(partitions_def) -> str:
    """The name in PARTITIONINGS of `partitions_def` (None for unpartitioned assets)."""
    for name, (definition, _) in PARTITIONINGS.items():
        if definition == partitions_def:
            return name
    raise KeyError(f"partitions definition {partitions_def} is not one of the graph's partitionings")
