"""The hold-out of whole units: the split keeps series groups together, the unit features and the
pooled core read inputs and training units only, the pooled ridge needs no unit's own history,
and the whole evaluation scores only units it never trained on."""

import numpy as np
import polars as pl
import pytest

from ml.spatial_holdout import (
    UNIT_FEATURES,
    PooledLagRidge,
    holdout_split,
    pooled_core,
    unit_features,
)
from ml.thermal_core import DEFAULT_STRUCTURE, PARAMETERS, ThermalCore
from ml.unit_arrays import UnitGrid, Units
from sources import catalog

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def basins(n=20, duplicates=((1, 0), (2, 0), (7, 6))) -> Units:
    """``n`` basins along latitude; each (a, b) of ``duplicates``: basin a repeats b's series."""
    ids = np.arange(100, 100 + n)
    group = ids.copy()
    for a, b in duplicates:
        group[a] = ids[b]
    latitude = np.linspace(60.0, 68.0, n)
    return Units.of(
        pl.DataFrame(
            {
                "unit": ids,
                "kind": "basin",
                "name": [f"basin {i}" for i in ids],
                "latitude": latitude,
                "longitude": np.linspace(-160.0, -145.0, n),
                "area_km2": np.full(n, 100.0),
                "band": [int((lat - 59.27) // 2.0125) for lat in latitude],
                "nearest_band": [int((lat - 59.27) // 2.0125) for lat in latitude],
                "series_group": group,
            }
        )
    )


def test_the_split_holds_out_whole_series_groups_deterministically():
    units = basins()
    held = holdout_split(units, share=0.2, seed=7)
    groups = units.series_group
    assert round(0.2 * len(np.unique(groups))) == len(np.unique(groups[held])) == 3
    for group in np.unique(groups):  # identical series never on both sides
        assert len(set(held[groups == group].tolist())) == 1
    assert np.array_equal(held, holdout_split(units, share=0.2, seed=7))
    assert not np.array_equal(held, holdout_split(units, share=0.2, seed=8))
    with pytest.raises(ValueError, match="at least 2 series groups"):
        holdout_split(Units.of(units.frame.head(1)))


THREE_YEARS = np.arange(np.datetime64("2001-01"), np.datetime64("2004-01"))


def grid_of(units: Units, months=THREE_YEARS, seed=1):
    """t_air warmer southward with a seasonal cycle, p_total constant per unit, water per unit."""
    rng = np.random.default_rng(seed)
    calendar = months.astype(np.int64) % 12
    lat = units.frame["latitude"].to_numpy()
    t_air = (
        (10 - lat)[None, :]
        - 15 * np.cos(2 * np.pi * calendar / 12)[:, None]
        + 0.01 * rng.normal(size=(len(months), units.count))
    )
    p_total = np.broadcast_to(0.02 + 0.001 * np.arange(units.count), t_air.shape)
    water = np.broadcast_to(0.3, (*t_air.shape, 4))
    values = np.concatenate([t_air[..., None], p_total[..., None], water], axis=-1)
    return UnitGrid(months, values, ("t_air", "p_total", *catalog.WATER_CONTENT), units.ids)


def test_unit_features_from_coordinates_and_training_climate_standardised_on_the_training_units():
    units = basins()
    grid = grid_of(units)
    train = grid.months < np.datetime64("2003-01")
    fitted = ~holdout_split(units)
    features = unit_features(units, grid, train, fitted)
    assert features.shape == (units.count, len(UNIT_FEATURES))
    np.testing.assert_allclose(features[fitted].mean(axis=0)[[0, 2]], 0.0, atol=1e-12)
    np.testing.assert_allclose(features[fitted].std(axis=0)[[0, 2]], 1.0, atol=1e-12)
    lat = units.frame["latitude"].to_numpy()
    expected = (lat - lat[fitted].mean()) / lat[fitted].std()
    np.testing.assert_allclose(features[:, 0], expected, atol=1e-12)
    # t_air's annual mean falls northward (its feature against latitude's), its amplitude is 15 K
    assert np.corrcoef(features[:, 2], features[:, 0])[0, 1] < -0.99
    # months after training do not move the features
    later = grid.values.copy()
    later[~train] += 50.0
    moved = UnitGrid(grid.months, later, grid.names, grid.units)
    np.testing.assert_array_equal(unit_features(units, moved, train, fitted), features)


def test_the_pooled_core_has_the_training_units_log_median_everywhere():
    units = 5
    names = DEFAULT_STRUCTURE.fitted
    params = {n: np.geomspace(PARAMETERS[n][1] * 1.5, PARAMETERS[n][2] / 1.5, units) for n in names}
    core = ThermalCore(params)
    fitted = np.array([True, True, True, False, False])
    pooled = pooled_core(core, fitted)
    for name in names:
        expected = np.exp(np.median(np.log(params[name][fitted])))
        np.testing.assert_allclose(pooled.params[name], np.full(units, expected), rtol=1e-12)
    # the held-out units' own fits (the largest values) do not count
    changed = ThermalCore({n: np.where(fitted, v, v * 100) for n, v in params.items()})
    assert pooled_core(changed, fitted).to_dict()["params"] == pooled.to_dict()["params"]


def test_the_pooled_ridge_predicts_a_unit_it_never_saw():
    units = basins(n=12, duplicates=())
    grid = grid_of(units, months=np.arange(np.datetime64("2001-01"), np.datetime64("2010-01")))
    drivers = grid.values
    calendar = grid.calendar_month
    # soil temperature: a lagged, damped copy of air temperature plus a level set by latitude
    lagged = np.roll(drivers[..., 0], 1, axis=0)
    targets = np.stack([0.5 * lagged + 0.1 * k for k in range(4)], axis=-1)
    train = grid.months < np.datetime64("2008-01")
    fitted = np.arange(units.count) % 4 != 0  # units 0, 4, 8 held out
    features = unit_features(units, grid, train, fitted)
    ridge = PooledLagRidge(lags=3).fit(drivers, targets, calendar, train, fitted, features)
    predicted = ridge.predict(drivers, calendar, features)
    assert np.isnan(predicted[:2]).all()  # lags before the series
    test = ~train
    error = predicted[test][:, ~fitted] - targets[test][:, ~fitted]
    assert np.sqrt(np.mean(error**2)) < 0.05 * targets[test].std()
    with pytest.raises(ValueError, match="before fit"):
        PooledLagRidge().predict(drivers, calendar, features)


def test_the_hold_out_scores_only_units_it_never_trained_on():
    from ml.evaluation import layer_targets
    from ml.model_inputs import ModelInputs
    from ml.spatial_holdout import holdout_evaluation
    from ml.training_config import TrainingConfig

    units = basins(n=10, duplicates=((1, 0),))
    months = np.arange(np.datetime64("2001-01"), np.datetime64("2020-01"))
    base = grid_of(units, months)
    rng = np.random.default_rng(4)
    t_air = base.select(("t_air",))[..., 0]
    snow = np.where(t_air < 0, 0.02, 0.0)
    soil = np.stack([0.6 * np.roll(t_air, k) + 1.0 + rng.normal(0, 0.2, t_air.shape) for k in range(4)], axis=-1)
    values = np.concatenate([base.values, snow[..., None], soil], axis=-1)
    grid = UnitGrid(months, values, (*base.names, "p_snow", *catalog.TARGETS), units.ids)
    inputs = ModelInputs(("t_air", "p_total", "p_snow"), {"p_snow": "derived"})
    core = ThermalCore({n: np.full(units.count, PARAMETERS[n][0]) for n in DEFAULT_STRUCTURE.fitted})
    config = TrainingConfig(seeds=1, epochs=1, batch_size=64)
    result = holdout_evaluation(grid, units, inputs.channels, core, inputs, {"gru": (config, None)}, share=0.2)
    held = result.split.filter(pl.col("held_out"))["unit"].to_list()
    assert len(held) == 2 and set(result.split["unit"]) == set(units.ids.tolist())
    scored = result.table.filter(pl.col("scope") == "unit")["unit"].unique().sort().to_list()
    assert scored == sorted(held)  # only the held-out units are scored
    assert set(result.table["model"]) == {
        "gru",
        "ensemble",
        "climatology",
        "persistence",
        "thermal_core",
        "pooled_ridge",
    }
    observed = result.table.filter(pl.col("uses_observed_soil_temperature"))["model"].unique().to_list()
    assert observed == ["persistence"]
    months_scored = result.predictions.target_month
    assert months_scored.min() == np.datetime64("2019-01") and months_scored.max() == np.datetime64("2019-12")
    targets = layer_targets(result.table, 0.10, None)
    assert len(targets["per_layer"]) == 4
