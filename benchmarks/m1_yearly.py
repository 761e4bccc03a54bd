"""M1 yearly: naive, seasonal naive and drift baselines and the GRU / LSTM recipes over several seeds.

Every number comes from the same data module (windows, scaling, audits) and the same Forecaster
evaluation code: the baselines are `network: naive | seasonal_naive | drift` run through `seqlit test`,
the RNNs through `seqlit fit --test_after_fit` (best checkpoint by val/mase). Prints mean and spread of
test MASE and sMAPE per method. `--folds 0 1 2` adds rolling-origin backtests (fold k moves the test
origin k horizons back, training only on what precedes its validation origin); `--ablations ...` runs
the GRU recipe with one setting changed (encoder-decoder, scheduled sampling, quantiles, augmentation).

    python benchmarks/m1_yearly.py --seeds 0 1 2
    python benchmarks/m1_yearly.py --recipes gru --folds 1 2
    python benchmarks/m1_yearly.py --recipes --no-baselines --ablations gru_jitter_0.05 gru_encoder_decoder
"""

from __future__ import annotations

import argparse
import statistics

from quiet_fit import QuietCLI, fit_variant, quiet_logging

BASELINES = ("naive", "seasonal_naive", "drift")
RECIPES = {"gru": "configs/m1_yearly_gru.yaml", "lstm": "configs/m1_yearly_lstm.yaml"}
# `--ablations`: the GRU recipe with one setting changed (data or model), same seeds and budget.
ABLATIONS: dict[str, list[str]] = {
    "gru_encoder_decoder": ["--model.init_args.network", "seqlit.nn.EncoderDecoderForecaster"],
    "gru_encoder_decoder_scheduled": ["--model.init_args.network", "seqlit.nn.EncoderDecoderForecaster",
                                      "--model.init_args.teacher_forcing.init_args.kind", "linear",
                                      "--model.init_args.teacher_forcing.init_args.c", "0.002"],
    "gru_quantile": ["--model.init_args.loss", "quantile"],
    "gru_jitter_0.05": ["--data.init_args.jitter", "0.05"],
    "gru_step_dropout_0.1": ["--data.init_args.step_dropout", "0.1"],
    "gru_series_scaling": ["--data.init_args.scaling", "series"],
    "gru_context_10": ["--data.init_args.context_length", "10"],
}


def test_baseline(config: str, network: str, fold: int) -> dict[str, float]:
    cli = QuietCLI(args=[
        "test", "--config", config, "--model.init_args.network", network, "--data.init_args.fold", str(fold),
        "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
    ])
    return {key: float(value) for key, value in cli.trainer.callback_metrics.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folds", type=int, nargs="+", default=[0])
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--ablations", nargs="*", default=[], choices=list(ABLATIONS),
                        help="GRU recipe variants to add (none by default)")
    parser.add_argument("--no-baselines", dest="baselines", action="store_false")
    args = parser.parse_args()
    quiet_logging()
    rows: list[tuple[str, int, list[float], list[float], float]] = []
    for fold in args.folds:
        for network in BASELINES if args.baselines else ():
            metrics = test_baseline(RECIPES["gru"], network, fold)
            rows.append((network, fold, [metrics["test/mase"]], [metrics["test/smape"]], 0.0))
        runs = {name: (RECIPES[name], []) for name in args.recipes}
        runs.update({name: (RECIPES["gru"], ABLATIONS[name]) for name in args.ablations})
        for recipe, (config, overrides) in runs.items():
            mase, smape, seconds = [], [], []
            for seed in args.seeds:
                cli, elapsed = fit_variant(config, epochs=20, run_name=f"bench_m1_{recipe}_fold{fold}",
                                           model_overrides={}, extra=["--seed_everything", str(seed),
                                                                      "--data.init_args.fold", str(fold), *overrides])
                assert cli.test_results is not None
                mase.append(cli.test_results[0]["test/mase"])
                smape.append(cli.test_results[0]["test/smape"])
                seconds.append(elapsed)
                print(f"fold {fold} {recipe} seed {seed}: test MASE {mase[-1]:.3f}, sMAPE {smape[-1]:.2f} "
                      f"({elapsed:.0f} s)", flush=True)
            rows.append((recipe, fold, mase, smape, statistics.mean(seconds)))
    print("\n| method | fold | runs | test MASE mean (min-max) | test sMAPE mean | s per run |")
    print("|---|---|---|---|---|---|")
    for name, fold, mase, smape, seconds in rows:
        spread = f" ({min(mase):.3f}-{max(mase):.3f})" if len(mase) > 1 else ""
        print(f"| {name} | {fold} | {len(mase)} | {statistics.mean(mase):.3f}{spread} | {statistics.mean(smape):.2f} | "
              f"{seconds:.0f} |")


if __name__ == "__main__":
    main()
