"""The effect of each AWD-LSTM regulariser on a language model, at equal budget (ablation).

Trains the config once with everything on, then once per regulariser with just that one switched off
(same data order, same epochs, same optimizer steps), and prints validation and test bits per character
and perplexity of each run's best checkpoint, with training tokens/s.

    python benchmarks/lm_regularisers.py --config configs/lm_pydoc_char.yaml --epochs 6
"""

from __future__ import annotations

import argparse

from quiet_fit import fit_variant, quiet_logging

# variant -> model overrides; "full" keeps the config as written.
NET = "network.init_args"  # the language model network's settings, under the task's init_args
VARIANTS: dict[str, dict[str, str]] = {
    "full": {},
    "no_weight_drop": {f"{NET}.weight_drop": "0.0"},
    "no_locked_dropout": {f"{NET}.input_dropout": "0.0", f"{NET}.hidden_dropout": "0.0", f"{NET}.output_dropout": "0.0"},
    "no_embedding_dropout": {f"{NET}.embedding_dropout": "0.0"},
    "no_weight_tying": {f"{NET}.tie_weights": "false"},
    "no_weight_decay": {"optimizer.init_args.weight_decay": "0.0"},
    "no_regularisation": {
        f"{NET}.weight_drop": "0.0", f"{NET}.input_dropout": "0.0", f"{NET}.hidden_dropout": "0.0",
        f"{NET}.output_dropout": "0.0", f"{NET}.embedding_dropout": "0.0", "optimizer.init_args.weight_decay": "0.0",
    },
    "layer_norm": {f"{NET}.layer_norm": "true"},
    "no_state_carry": {"carry_state": "false"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/lm_pydoc_char.yaml")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args, extra = parser.parse_known_args()
    quiet_logging()

    rows = []
    for name in args.variants:
        cli, seconds = fit_variant(args.config, args.epochs, f"lm_ablation_{name}", VARIANTS[name], extra)
        results = dict((cli.test_results or [{}])[0])
        best = getattr(cli.trainer.checkpoint_callback, "best_model_score", None)
        results["best_val_bpc"] = float(best) if best is not None else float("nan")
        results["train_bpc"] = cli.fit_metrics.get("train/bpc", float("nan"))
        results["tokens_per_sec"] = cli.fit_metrics.get("data/tokens_per_sec_epoch", float("nan"))
        rows.append((name, results, seconds))
        print(f"{name}: best val/bpc {results['best_val_bpc']:.4f}, test/bpc {results.get('test/bpc', float('nan')):.4f} "
              f"({seconds:.0f} s) -> {cli.trainer.log_dir}", flush=True)

    print(f"\n== {args.config}, {args.epochs} epochs, each row switches off one regulariser ==")
    header = ("variant", "best val bpc", "test bpc", "test ppl", "last train bpc", "train tok/s", "minutes")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, results, seconds in rows:
        print(
            f"| {name} | {results['best_val_bpc']:.4f} | {results.get('test/bpc', float('nan')):.4f} | "
            f"{results.get('test/ppl', float('nan')):.3f} | {results['train_bpc']:.4f} | "
            f"{results['tokens_per_sec']:.0f} | {seconds / 60:.1f} |"
        )


if __name__ == "__main__":
    main()
