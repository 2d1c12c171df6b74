"""Run configuration refuses a bad value before an asset runs, naming the field and the value."""

import pytest
from dagster import asset, materialize
from pydantic import ValidationError

from dagster_project.config import (
    BiasCorrectionConfig,
    HyperparameterSearchConfig,
    ScenarioWindowsConfig,
    SpatialHoldoutConfig,
    TrainingRunConfig,
    to_source,
)
from ml import architecture_catalog
from ml.training_config import TrainingConfig


@pytest.mark.parametrize(
    ("config", "values", "message"),
    [
        (ScenarioWindowsConfig, {"bias_draws": 0}, "bias_draws must be >= 1.*got 0"),
        (ScenarioWindowsConfig, {"bias_methods": ["qdm", "eqm"]}, r"bias_methods must name.*got \['qdm', 'eqm'\]"),
        (ScenarioWindowsConfig, {"bias_methods": []}, r"bias_methods must name.*got \[\]"),
        (ScenarioWindowsConfig, {"bias_block_years": -1}, r"bias_block_years must be >= 0.*got -1"),
        (BiasCorrectionConfig, {"n_quantiles": 0}, "n_quantiles must be a positive number of quantiles, got 0"),
        (BiasCorrectionConfig, {"method": "isimip"}, "method"),
        (TrainingRunConfig, {"seeds": 0}, "TrainingConfig.seeds must be a positive int, got 0"),
        (TrainingRunConfig, {"design": "hybrid"}, "TrainingConfig.design must be one of.*'hybrid'"),
        (HyperparameterSearchConfig, {"trials": -1}, r"trials must be >= 0 \(0: no search\), got -1"),
        (HyperparameterSearchConfig, {"timeout_seconds": 0}, "timeout_seconds must be positive, got 0"),
        (SpatialHoldoutConfig, {"share": 1.0}, "share must be between 0 and 1, got 1.0"),
    ],
)
def test_a_bad_value_is_refused_naming_field_and_value(config, values, message):
    with pytest.raises(ValidationError, match=message):
        config(**values)


def test_defaults_hold_one_draw_per_network_and_fill_the_training_dataclass():
    assert ScenarioWindowsConfig().bias_draws == len(architecture_catalog.names()) * TrainingConfig().seeds == 25
    assert ScenarioWindowsConfig().bias_block_years == 1  # the year bootstrap, as before blocks existed
    assert HyperparameterSearchConfig().trials == 0  # the search is off unless asked for
    assert ScenarioWindowsConfig(bias_methods=["mean_delta"]).bias_methods == ["mean_delta"]
    assert to_source(TrainingRunConfig(seeds=2, epochs=3), TrainingConfig) == TrainingConfig(seeds=2, epochs=3)


def test_dagster_stops_the_run_before_the_asset_body():
    ran = []

    @asset
    def windows(config: ScenarioWindowsConfig) -> None:
        ran.append(config)

    result = materialize(
        [windows], run_config={"ops": {"windows": {"config": {"bias_draws": -3}}}}, raise_on_error=False
    )
    assert not result.success and ran == []
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "bias_draws must be >= 1" in str(failure) and "got -3" in str(failure)
    assert materialize([windows], run_config={"ops": {"windows": {"config": {"bias_draws": 2}}}}).success
    assert ran[-1].bias_draws == 2
