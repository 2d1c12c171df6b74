from dagster_project.partitions import architectures, rcp_scenarios
from sources import catalog


def test_architecture_partitions_match_the_ml_registry():
    from ml.architectures import ARCHITECTURES

    assert architectures.get_partition_keys() == list(ARCHITECTURES)


def test_scenario_partitions_are_the_rcps():
    assert tuple(rcp_scenarios.get_partition_keys()) == catalog.RCP_EXPERIMENTS
