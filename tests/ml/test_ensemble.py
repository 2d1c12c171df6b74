"""An architecture's seeds train, save and load together; members map onto bias-correction draws."""

import numpy as np
import pytest
from test_residual import history

from ml import architecture_catalog, ensemble
from ml.residual import ResidualScaler, residual_windows
from ml.training_config import TrainingConfig

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def test_draws_are_seed_major_and_unique():
    draws = [ensemble.bias_draw(a, s) for s in range(5) for a in architecture_catalog.names()]
    assert draws == list(range(25))
    assert ensemble.bias_draw("tcn", 0) == 0  # the unperturbed correction
    with pytest.raises(ValueError, match="lstm"):
        ensemble.bias_draw("lstm", 0)


def test_seeds_train_save_and_load_together(tmp_path):
    drivers, core, observed, calendar, months = history(n_months=84)
    train = np.arange(84) < 72
    scaler = ResidualScaler.fit(drivers, core, observed, calendar, train)
    windows = residual_windows(scaler, drivers, core, months, np.flatnonzero(train), observed)
    test = residual_windows(scaler, drivers, core, months, np.arange(72, 84), observed)
    config = TrainingConfig(seeds=2, epochs=2)
    trained = ensemble.train_architecture("gru", config, residual_train=windows, residual_scaler=scaler)
    assert [m.member for m in trained.members] == [0, 1] and trained.epochs_run == [2, 2]
    predicted = ensemble.predict_members(trained, residual_windows=test)
    assert predicted.shape == (2, len(test), 4)
    assert not np.allclose(predicted[0], predicted[1])  # two seeds, two networks
    trained.provenance = {"run_id": "abc"}
    ensemble.save_architecture(trained, tmp_path / "gru")
    assert ensemble.read_record(tmp_path / "gru")["provenance"] == {"run_id": "abc"}
    loaded = ensemble.load_architecture(tmp_path / "gru")
    assert loaded.design == "residual" and len(loaded.members) == 2
    assert np.allclose(ensemble.predict_members(loaded, residual_windows=test), predicted, atol=1e-5)
    assert len(ensemble.load_architecture(tmp_path / "gru", members=1).members) == 1
    with pytest.raises(ValueError, match="paper"):
        ensemble.train_architecture("gru", TrainingConfig.paper(), residual_train=windows, residual_scaler=scaler)
