"""The real-data run's scores, read from its lake's Parquet (never a figure).

    uv run python benchmarks/real_evaluation.py [--lake data/real]

`make real` lands `model_evaluation` and `spatial_holdout_evaluation` in the lake; this prints,
per soil layer, every model's seed-mean RMSE with its spread over seeds and its year-block
bootstrap interval, each against monthly climatology, the issue's targets (every architecture
15% below climatology, the ensemble 25%, held-out whole basins 10%), the scores per latitude
band of the basins and the paper's Table 2 GRU beside the pooled figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml.architecture_catalog import ARCHITECTURES  # noqa: E402
from ml.evaluation import layer_table, layer_targets  # noqa: E402
from ml.metrics import TARGET_HELD_OUT_UNITS  # noqa: E402

pl.Config.set_tbl_rows(200)
pl.Config.set_tbl_cols(20)
pl.Config.set_tbl_width_chars(200)
pl.Config.set_float_precision(3)


def report(table: pl.DataFrame, title: str, ensemble_target: float | None, architecture_target: float) -> None:
    print(f"\n## {title}\n")
    layers = layer_table(table)
    print(layers.with_columns(pl.col("vs_climatology_pct").round(1)))
    overall = table.filter(pl.col("member").is_null(), pl.col("scope") == "overall").sort("rmse")
    print("\nall layers pooled (seed means):")
    print(overall.select("model", "kind", "members", "rmse", "rmse_sd", "rmse_low", "rmse_high", "mae", "r2", "skill"))
    print("\ntargets:", layer_targets(table, architecture_target, ensemble_target))
    bands = table.filter(pl.col("member").is_null(), pl.col("scope") == "band")
    if bands.height:
        print("\nskill against climatology per latitude band of the units (null: outside the bands):")
        print(
            bands.with_columns(pl.col("band").cast(pl.Utf8).fill_null("outside"))
            .pivot(on="band", index="model", values="skill", sort_columns=True)
            .sort("model")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", type=Path, default=REPO / "data" / "real")
    args = parser.parse_args()
    evaluation = pl.read_parquet(args.lake / "evaluation" / "model_evaluation.parquet")
    report(evaluation, "held-out years (2019-01..2023-03), every basin", 0.25, 0.15)
    months = evaluation.filter(pl.col("scope") == "overall", pl.col("model") == "climatology")["n"][0]
    print(f"\ntest values scored (months x basins x layers): {months}")
    print("\npaper Table 2 (6 band means, test years 2019-2023, all layers pooled; RMSE, MAE, R2):")
    for name, architecture in ARCHITECTURES.items():
        print(f"  {name}: {architecture.paper}")
    holdout = args.lake / "evaluation" / "spatial_holdout_evaluation.parquet"
    if holdout.exists():
        table = pl.read_parquet(holdout)
        report(table, "held-out whole basins (their test months)", None, TARGET_HELD_OUT_UNITS)
        split = pl.read_parquet(args.lake / "evaluation" / "spatial_holdout_split.parquet")
        print("\nheld-out units:", split.filter(pl.col("held_out"))["unit"].to_list())


if __name__ == "__main__":
    main()
