"""One list of architectures: an entry in ``ml.architecture_catalog`` is all a new architecture
needs to appear in the partitions, the figures' colours, the builders, the residual design's
small networks, the ensemble's draws and the evaluation beside the paper."""

import pytest

from ml import architecture_catalog
from ml.architecture_catalog import Architecture

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

FIVE = ["tcn", "transformer", "conv1d_lstm", "gru", "bilstm"]
# a wider, deeper GRU: an architecture of its own, built by an existing builder
SIXTH = Architecture(
    "gru_wide", "ml.architectures.build_gru", "teal", {"units": 24, "layers": 2, "dropout": 0.0}, paper=None
)


@pytest.fixture
def six(monkeypatch):
    """The list with a sixth architecture, for this test only (a copy: the module's list is untouched)."""
    monkeypatch.setattr(
        architecture_catalog, "ARCHITECTURES", {**architecture_catalog.ARCHITECTURES, "gru_wide": SIXTH}
    )


def test_the_list_names_the_papers_five_each_with_a_colour_of_its_own():
    assert list(architecture_catalog.names()) == FIVE
    colours = [a.colour for a in architecture_catalog.ARCHITECTURES.values()]
    assert len(set(colours)) == len(colours)
    assert all(a.paper is not None and 1.0 < a.paper.rmse < 1.3 for a in architecture_catalog.ARCHITECTURES.values())
    with pytest.raises(ValueError, match="'lstm'.*bilstm.*conv1d_lstm"):
        architecture_catalog.architecture("lstm")


def test_a_sixth_entry_reaches_partitions_colours_draws_and_the_paper_table(six):
    from dagster_project.partitions import architecture_partitions
    from ml import ensemble, figures

    assert architecture_partitions().get_partition_keys() == [*FIVE, "gru_wide"]
    assert figures.model_colour("gru_wide") == "teal"
    assert figures.model_colour("gru") == "tab:red"
    # member 1 of the sixth architecture: after the six networks of seed 0, the sixth of seed 1
    assert ensemble.bias_draw("gru_wide", 0) == 5 and ensemble.bias_draw("gru_wide", 1) == 11
    assert ensemble.bias_draw("tcn", 1) == 6


def test_a_sixth_entry_is_built_with_its_own_small_hyperparameters(six):
    from ml.architectures import InputSpec, build_model
    from ml.residual import build_bounded

    paper_design = build_model("gru_wide", InputSpec(n_features=5, window=6))
    assert [layer.units for layer in paper_design.layers if layer.name in ("gru1", "gru2")] == [64, 64]
    residual = build_bounded("gru_wide", n_features=5, window=6)
    assert residual.name == "gru_wide_residual"
    assert [layer.units for layer in residual.layers if layer.name in ("gru1", "gru2")] == [24, 24]


def test_without_the_entry_there_is_no_such_architecture():
    from ml import ensemble

    with pytest.raises(ValueError, match="gru_wide"):
        ensemble.bias_draw("gru_wide", 0)
