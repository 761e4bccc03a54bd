"""`seqlit compare`: GRU vs LSTM (and uni- vs bidirectional) at a matched parameter count over several seeds.

    seqlit compare --config configs/japanese_vowels_gru.yaml --variants gru,lstm --seeds 5 --out runs/compare_jv

The first variant keeps the config's widths; every other variant gets the widths (scaled together, in
proportion) whose parameter count is closest to the first's, and must land within `--tolerance`.
Which settings are widths, cells and directions the task says (`size_parameters`, `cell_parameters`,
`bidirectional_parameters`: dotted paths such as `encoder.hidden_size`). Each (variant, seed) run is an
ordinary `seqlit fit --test_after_fit true` of the same config with its own CSV log
(`<out>/runs/<variant>/seed<k>/`) and, when done, a `result.json`; a rerun skips finished runs, so an
interrupted compare resumes where it stopped. Then `<out>/report.md`, `results.csv`, `summary.csv` and
`val_curves.png` are written, with a paired t-test over seeds per variant against the first.
Every other flag (e.g. `--trainer.max_epochs 5`) changes the config of every run.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from torch import nn

# verdict and summarise are re-exported: callers and tests read them as `seqlit.compare.verdict` etc.
from seqlit.compare_report import METRICS, Variant, summarise, verdict, write_report  # noqa: F401 - re-exports
from seqlit.errors import SeqlitError
from seqlit.parts import factory_class

RESULT_FILE = "result.json"
COMPARE_OPTIONS = ("variants", "seeds", "out", "tolerance", "wandb_project")


def parse_variant(name: str) -> tuple[str, bool]:
    """`gru`, `lstm`, `bigru`, `bilstm` -> (cell, bidirectional)."""
    bidirectional = name.startswith("bi")
    cell = name[2:] if bidirectional else name
    if cell not in ("gru", "lstm"):
        raise SeqlitError(f"unknown variant {name!r}; use gru, lstm, bigru or bilstm (comma-separated).")
    return cell, bidirectional


def add_compare_arguments(parser: Any) -> None:
    """The options `seqlit compare` adds to the config parser."""
    parser.add_argument("--variants", type=str, default="gru,lstm",
                        help="Comma-separated: gru, lstm, bigru, bilstm (the first is the reference).")
    parser.add_argument("--seeds", type=str, default="5", help="A count (5 -> seeds 0..4) or a list (0,3,7).")
    parser.add_argument("--out", type=str | None, default=None,
                        help="Output folder (default runs/compare_<config name>).")
    parser.add_argument("--tolerance", type=float, default=0.02, help="Largest relative parameter-count gap.")
    parser.add_argument("--wandb_project", type=str | None, default=None,
                        help="Also log each run to W&B, grouped by the output folder.")


# ---- settings by dotted path ---------------------------------------------------------------------------


def get_setting(hparams: dict[str, Any], path: str) -> Any:
    """`encoder.hidden_size` in plain-data hyperparameters, stepping into `init_args` of nested parts and
    falling back to the part class's default when the spec leaves the setting out."""
    node: Any = hparams
    for key in path.split("."):
        if isinstance(node, dict) and "class_path" in node:
            init_args = node.get("init_args") or {}
            if key not in init_args:
                return _default_of(node, key)
            node = init_args[key]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            raise SeqlitError(f"the model has no setting {path!r} (stopped at {key!r}).")
    return node


def set_setting(hparams: dict[str, Any], path: str, value: Any) -> None:
    """Sets `encoder.hidden_size` in plain-data hyperparameters (in place), inside nested parts' `init_args`."""
    keys = path.split(".")
    node: Any = hparams
    for key in keys[:-1]:
        node = node[key]
        if isinstance(node, dict) and "class_path" in node:
            node = node.setdefault("init_args", {})
    if isinstance(node, dict) and "class_path" in node:
        node = node.setdefault("init_args", {})
    node[keys[-1]] = value


def _default_of(spec: dict[str, Any], key: str) -> Any:
    cls = factory_class(spec)
    parameter = inspect.signature(cls).parameters.get(key) if cls is not None else None
    if parameter is None or parameter.default is inspect.Parameter.empty:
        raise SeqlitError(f"{spec.get('class_path')} has no setting {key!r} with a default.")
    return parameter.default


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def solve_sizes(
    build: Callable[[dict[str, int]], nn.Module], base: dict[str, int], target: int, tolerance: float = 0.02
) -> tuple[dict[str, int], int]:
    """Widths, scaled together from `base`, whose model has the parameter count closest to `target`.

    The count grows with the width, so the smallest width reaching the target is found by bisection and
    compared with the one below it. Raises when even the closest is off by more than `tolerance`.
    """
    lead = next(iter(base))

    def sizes_at(width: int) -> dict[str, int]:
        return {key: max(1, round(value * width / base[lead])) for key, value in base.items()}

    counts: dict[int, int] = {}

    def count(width: int) -> int:
        if width not in counts:
            counts[width] = count_parameters(build(sizes_at(width)))
        return counts[width]

    high = max(2, base[lead])
    while count(high) < target and high < 64 * base[lead]:
        high *= 2
    low = 1
    while low < high:  # smallest width whose count reaches the target
        middle = (low + high) // 2
        low, high = (middle + 1, high) if count(middle) < target else (low, middle)
    best = min({max(1, low - 1), low}, key=lambda width: (abs(count(width) - target), width))
    error = abs(count(best) - target) / target
    if error > tolerance:
        step = abs(count(best + 1) - count(best)) / target
        raise SeqlitError(
            f"no width for {sorted(base)} gets within {tolerance:.0%} of {target:,} parameters (closest: "
            f"{count(best):,} at {sizes_at(best)}, {error:.1%} off; one unit of width changes the count by "
            f"{step:.1%}). Compare at a larger reference width (steps shrink as widths grow), or raise --tolerance; "
            "if the step is 0% the widths do not size this model (e.g. a tied one-layer language model)."
        )
    return sizes_at(best), count(best)


def plan_variants(model: Any, names: list[str], tolerance: float = 0.02) -> list[Variant]:
    """Variants matched to the first one's parameter count; `model` is the config's instantiated task."""
    task = type(model)
    size_paths = getattr(task, "size_parameters", ())
    if not size_paths:
        raise SeqlitError(f"{task.__name__} does not declare `size_parameters`; seqlit compare cannot size it.")
    hparams = {key: copy.deepcopy(value) for key, value in model.hparams.items() if not key.startswith("_")}
    bidirectional_paths = getattr(task, "bidirectional_parameters", ())
    if any(parse_variant(name)[1] for name in names) and not bidirectional_paths:
        raise SeqlitError(
            f"{task.__name__} has no `bidirectional` option (a language model must read left to right); "
            "compare gru and lstm only."
        )
    base = {path: int(get_setting(hparams, path)) for path in size_paths}

    def build(cell: str, bidirectional: bool) -> Callable[[dict[str, int]], nn.Module]:
        def make(sizes: dict[str, int]) -> nn.Module:
            settings = copy.deepcopy(hparams)
            for path, value in variant_settings(task, cell, bidirectional, sizes).items():
                set_setting(settings, path, value)
            return task(**settings)

        return make

    first_cell, first_bidirectional = parse_variant(names[0])
    target = count_parameters(build(first_cell, first_bidirectional)(base))
    if target == 0:
        raise SeqlitError(f"the {names[0]} model of this config has no parameters (a baseline?); nothing to compare.")
    variants = [Variant(names[0], first_cell, first_bidirectional, base, target)]
    for name in names[1:]:
        cell, bidirectional = parse_variant(name)
        sizes, n_params = solve_sizes(build(cell, bidirectional), base, target, tolerance)
        variants.append(Variant(name, cell, bidirectional, sizes, n_params))
    return variants


def variant_settings(task: type, cell: str, bidirectional: bool, sizes: dict[str, int]) -> dict[str, Any]:
    """Dotted model settings that build a variant: its cell everywhere, its direction, its widths."""
    settings: dict[str, Any] = {path: cell for path in getattr(task, "cell_parameters", ())}
    settings |= {path: bidirectional for path in getattr(task, "bidirectional_parameters", ())}
    return settings | dict(sizes)


# ---- running ----------------------------------------------------------------------------------------


def run_variant_seed(
    fit: Callable[[dict[str, Any]], Any], base: dict[str, Any], task: type, variant: Variant, seed: int, out: Path,
    wandb_project: str | None = None,
) -> dict[str, Any]:
    """Trains and tests one (variant, seed) unless its `result.json` exists; returns that result.

    `base` is the compare's own resolved `fit` config; `fit(config)` runs `seqlit fit` on a config dict."""
    run_dir = out / "runs" / variant.name / f"seed{seed}"
    result_path = run_dir / RESULT_FILE
    settings = variant_settings(task, variant.cell, variant.bidirectional, variant.sizes)
    digest = config_digest(base)
    if result_path.is_file():
        earlier = json.loads(result_path.read_text(encoding="utf-8"))
        if earlier.get("config_digest") != digest or earlier.get("settings") != settings:
            raise SeqlitError(
                f"{result_path} is a finished run of another setup (settings {earlier.get('settings')}, config digest "
                f"{earlier.get('config_digest')}); now: settings {settings}, digest {digest}. Reusing it would mix "
                "setups in one table: pass a new --out, or delete that folder to retrain it."
            )
        return {**earlier, "reused": True}
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts over
    config = copy.deepcopy(base)
    for path, value in settings.items():
        set_setting(config["model"]["init_args"], path, value)
    loggers: list[dict[str, Any]] = [{
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": str(out / "runs"), "name": variant.name, "version": f"seed{seed}"},
    }]
    if wandb_project:
        loggers.append({
            "class_path": "lightning.pytorch.loggers.WandbLogger",
            "init_args": {"project": wandb_project, "group": out.name, "name": f"{variant.name}-seed{seed}",
                          "save_dir": str(out), "tags": [variant.name, f"seed{seed}"]},
        })
    config["seed_everything"] = seed
    config["test_after_fit"] = True
    config["trainer"] = {**config.get("trainer", {}), "logger": loggers, "enable_progress_bar": False,
                         "enable_model_summary": False}
    started = time.perf_counter()
    cli = fit(config)
    seconds = time.perf_counter() - started
    if wandb_project:
        import wandb

        wandb.finish()
    tested = dict((cli.test_results or [{}])[0])
    metric = _metric_of(tested)
    history = pd.read_csv(run_dir / "metrics.csv")
    curve = _per_epoch(history, metric.replace("test/", "val/"))
    higher = METRICS[metric]
    epochs = max(1, cli.trainer.current_epoch)
    result = {
        "variant": variant.name,
        "seed": seed,
        "config_digest": digest,
        "settings": settings,
        "n_params": variant.n_params,
        "sizes": variant.sizes,
        "metric": metric,
        "test": {key: float(value) for key, value in tested.items()},
        "val_curve": curve,
        "best_epoch": (curve.index(max(curve) if higher else min(curve)) + 1) if curve else None,
        "epochs": epochs,
        "seconds": seconds,
        "seconds_per_epoch": cli.train_seconds / epochs,
        "tokens_per_sec": _median_column(history, "data/tokens_per_sec_epoch"),
    }
    temporary = result_path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=2), encoding="utf-8")
    os.replace(temporary, result_path)  # a result file is complete or absent, never half written
    return {**result, "reused": False}


def config_digest(config: dict[str, Any]) -> str:
    """A short hash of a resolved config, so a rerun can tell a finished run of the same setup."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _metric_of(tested: dict[str, Any]) -> str:
    for metric in METRICS:
        if metric in tested:
            return metric
    raise SeqlitError(
        f"the run reported none of {list(METRICS)} when tested (got {sorted(tested)[:8]}); compare needs a task "
        "metric, so keep test_after_fit on and a ModelCheckpoint in the config."
    )


def _per_epoch(history: pd.DataFrame, column: str) -> list[float]:
    if column not in history.columns or "epoch" not in history.columns:
        return []
    values = history[["epoch", column]].dropna()
    return [float(v) for v in values.groupby("epoch")[column].last().tolist()]


def _median_column(history: pd.DataFrame, column: str) -> float | None:
    if column not in history.columns or history[column].dropna().empty:
        return None
    return float(history[column].dropna().median())


# ---- entry point ------------------------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    """`5` -> seeds 0..4; `0,3,7` -> those seeds."""
    try:
        if "," in text:
            return [int(part) for part in text.split(",") if part.strip()]
        count = int(text)
    except ValueError:
        raise SeqlitError(f"--seeds takes a count (5) or a list (0,3,7), got {text!r}.") from None
    if count < 1:
        raise SeqlitError(f"--seeds must be at least 1, got {count}.")
    return list(range(count))


def run_compare(cli: Any, fit_cli: type) -> int:
    """`seqlit compare`: plans the variants from the CLI's instantiated model, trains every (variant, seed)
    with `fit_cli` (a SeqlitCLI that times its fit), writes the report; returns the exit code."""
    options = cli.config["compare"]
    names = [name.strip() for name in options.variants.split(",") if name.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise SeqlitError(f"--variants needs at least two different variants, got {options.variants!r}.")
    seeds = parse_seeds(options.seeds)
    config_files = [str(path) for path in (options.get("config") or []) if path is not None]
    title = Path(config_files[-1]).name if config_files else type(cli.model).__name__
    out = Path(options.out or f"runs/compare_{Path(title).stem}")
    out.mkdir(parents=True, exist_ok=True)
    base = _fit_config(cli)
    variants = plan_variants(cli.model, names, options.tolerance)
    (out / "plan.json").write_text(json.dumps([asdict(v) for v in variants], indent=2), encoding="utf-8")
    for variant in variants:
        print(f"seqlit compare: {variant.name}: {variant.sizes}, {variant.n_params:,} parameters "
              f"({variant.n_params / variants[0].n_params - 1:+.2%})", flush=True)

    def fit(config: dict[str, Any]) -> Any:
        return fit_cli(args={"subcommand": "fit", "fit": config})

    results = []
    for seed in seeds:  # seed-major, so an interrupted compare still has paired runs to report
        for variant in variants:
            result = run_variant_seed(fit, base, type(cli.model), variant, seed, out, options.wandb_project)
            results.append(result)
            status = "finished earlier, reused" if result["reused"] else f"{result['seconds']:.0f} s"
            print(f"seqlit compare: {variant.name} seed {seed}: {result['metric']} "
                  f"{result['test'][result['metric']]:.4f} ({status})", flush=True)
    report = write_report(out, title, variants, results)
    print(report.read_text(encoding="utf-8"))
    print(f"seqlit compare: report in {report}, runs in {out / 'runs'}")
    return 0


def _fit_config(cli: Any) -> dict[str, Any]:
    """The compare subcommand's resolved config as a plain `fit` config dict (compare's own options dropped)."""
    dumped = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
    config = dumped.get("compare", dumped)
    for key in (*COMPARE_OPTIONS, "config", "__default_config__"):
        config.pop(key, None)
    return config
