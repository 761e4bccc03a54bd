"""seqlit's language model against a plain PyTorch loop with pytorch/examples' word_language_model recipe.

The reference loop is our own code following that script's recipe: embedding -> dropout -> 2-layer LSTM
(dropout between layers) -> dropout -> linear decoder (optionally tied), weights uniform in ±0.1, plain SGD
at lr 20, gradient norm clipped at 0.25, the learning rate divided by 4 whenever an epoch's validation loss
does not improve, the best epoch's weights tested. seqlit runs through `seqlit fit` with its shared base
(its clipping, checkpoint selection and test-after-fit) and the given optimizer (none: the task's default).

Both read the same token ids (seqlit's `LanguageModelDataModule` on the bundled pydoc corpus, split 90/5/5
by position at line starts, tokenizer fitted on the training text; at word level a test word unseen in
training is one `<unk>` token for both), train on 20 streams, evaluate on 10, and report bits per character
of the same test text: summed NLL / test characters / ln 2. Training tokens/s are measured in the same run
(the reference over its training steps; seqlit's `data/tokens_per_sec_epoch`, which also leaves out
validation).

    python benchmarks/lm_reference.py --level char --epochs 3 --bptt 100
    python benchmarks/lm_reference.py --level word --epochs 6 --bptt 35 --tie both
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from seqlit.data.datamodules.base import LoaderSettings  # noqa: E402
from seqlit.data.datamodules.language_model import LanguageModelDataModule  # noqa: E402
from seqlit.data.streams import batchify  # noqa: E402

TRAIN_STREAMS, EVAL_STREAMS = 20, 10


@dataclass
class Result:
    name: str
    test_bpc: float
    tokens_per_sec: float
    seconds: float


class ReferenceModel(nn.Module):
    """word_language_model's RNNModel (LSTM): dropout on the embedding, between layers and on the output."""

    def __init__(self, vocab: int, size: int, layers: int, dropout: float, tie: bool) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, size)
        self.rnn = nn.LSTM(size, size, layers, dropout=dropout, batch_first=True)
        self.decoder = nn.Linear(size, vocab)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        if tie:
            self.decoder.weight = self.encoder.weight

    def forward(self, ids: Tensor, state: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """ids (B, T) -> logits (B, T, V) and the LSTM state (h, c), each (layers, B, H)."""
        out, state = self.rnn(self.drop(self.encoder(ids)), state)  # (B, T, H)
        return self.decoder(self.drop(out)), state


def corpus(level: str, bptt: int) -> LanguageModelDataModule:
    return LanguageModelDataModule(
        corpus="pydoc", tokenizer=level, min_count=1, val_fraction=0.05, test_fraction=0.05, bptt=bptt,
        loader=LoaderSettings(batch_size=TRAIN_STREAMS, eval_batch_size=EVAL_STREAMS),
    )


def chars_per_token(data: LanguageModelDataModule, stage: str, ids: Tensor) -> float:
    span = data.spans[stage]  # type: ignore[index]
    return (span.end - span.start) / ids.numel()


def evaluate(model: ReferenceModel, streams: Tensor, bptt: int) -> float:
    """Mean NLL per predicted token over every chunk of the (R, L) streams, state carried across chunks."""
    model.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for start in range(0, streams.shape[1] - 1, bptt):
            inputs = streams[:, start : start + bptt]  # (R, T)
            targets = streams[:, start + 1 : start + 1 + bptt]  # (R, T')
            inputs = inputs[:, : targets.shape[1]]
            logits, state = model(inputs, state)  # (R, T, V)
            total += nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
            count += targets.numel()
    return total / count


def run_reference(level: str, epochs: int, bptt: int, size: int, tie: bool, seed: int) -> Result:
    data = corpus(level, bptt)
    torch.manual_seed(seed)
    ids = {stage: data.token_ids(stage) for stage in ("train", "val", "test")}
    train = batchify(ids["train"], TRAIN_STREAMS)  # (20, L)
    val, test = batchify(ids["val"], EVAL_STREAMS), batchify(ids["test"], EVAL_STREAMS)
    model = ReferenceModel(len(data.tokenizer), size, 2, 0.2, tie)
    lr, best_val, best_state = 20.0, math.inf, None
    train_seconds, train_tokens = 0.0, 0
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        state = None
        epoch_start = time.perf_counter()
        for start in range(0, train.shape[1] - 1, bptt):
            inputs = train[:, start : start + bptt]  # (20, T)
            targets = train[:, start + 1 : start + 1 + bptt]
            inputs = inputs[:, : targets.shape[1]]
            state = None if state is None else tuple(part.detach() for part in state)
            model.zero_grad()
            logits, state = model(inputs, state)
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.add_(parameter.grad, alpha=-lr)
            train_tokens += targets.numel()
        train_seconds += time.perf_counter() - epoch_start
        val_loss = evaluate(model, val, bptt)
        if val_loss < best_val:
            best_val, best_state = val_loss, copy.deepcopy(model.state_dict())
        else:
            lr /= 4.0
        print(f"  reference epoch: val bpc {val_loss / math.log(2) / chars_per_token(data, 'val', ids['val']):.4f}, lr {lr:g}")
    assert best_state is not None
    model.load_state_dict(best_state)
    test_bpc = evaluate(model, test, bptt) / math.log(2) / chars_per_token(data, "test", ids["test"])
    return Result("reference loop (SGD 20, clip 0.25, lr/4)", test_bpc, train_tokens / train_seconds,
                  time.perf_counter() - started)


def seqlit_config(level: str, epochs: int, bptt: int, size: int, tie: bool) -> dict:
    """A recipe at the reference's size: 2×size LSTM, dropout 0.2 where the reference drops, no weight drop."""
    return {
        "trainer": {"max_epochs": epochs, "enable_progress_bar": False, "log_every_n_steps": 50},
        "model": {
            "class_path": "seqlit.tasks.LanguageModel",
            "init_args": {
                "network": {
                    "class_path": "seqlit.nn.RecurrentLanguageModel",
                    "init_args": {
                        "cell": "lstm", "embedding_size": size, "hidden_size": size, "num_layers": 2,
                        "embedding_dropout": 0.0, "input_dropout": 0.2, "hidden_dropout": 0.2,
                        "output_dropout": 0.2, "weight_drop": 0.0, "tie_weights": tie,
                    },
                },
            },
        },
        "data": {
            "class_path": "seqlit.data.datamodules.language_model.LanguageModelDataModule",
            "init_args": {
                "corpus": "pydoc", "tokenizer": level, "min_count": 1, "val_fraction": 0.05, "test_fraction": 0.05,
                "bptt": bptt, "loader": {"batch_size": TRAIN_STREAMS, "eval_batch_size": EVAL_STREAMS},
            },
        },
    }


def run_seqlit(name: str, config: dict, extra: list[str], seed: int, workdir: Path) -> Result:
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "seqlit.cli", "fit", "--config", str(config_path), "--run_name", name,
               "--seed_everything", str(seed), *extra]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=workdir, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"seqlit run {name} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    metrics_file = sorted((workdir / "runs" / name).glob("version_*/metrics.csv"))[-1]
    rows = list(csv.DictReader(metrics_file.open()))
    test_bpc = float(next(row["test/bpc"] for row in rows if row.get("test/bpc")))
    rates = [float(row["data/tokens_per_sec_epoch"]) for row in rows if row.get("data/tokens_per_sec_epoch")]
    for row in rows:
        if row.get("val/bpc"):
            print(f"  {name} epoch {row['epoch']}: val bpc {float(row['val/bpc']):.4f}")
    return Result(name, test_bpc, sum(rates) / len(rates), seconds)


SEQLIT_VARIANTS: dict[str, list[str]] = {
    "seqlit default optimizer": [],
    "seqlit AdamW lr 3e-3": ["--optimizer", "AdamW", "--optimizer.lr", "0.003", "--optimizer.weight_decay", "0.01"],
    "seqlit AdamW lr 1e-2": ["--optimizer", "AdamW", "--optimizer.lr", "0.01", "--optimizer.weight_decay", "0.01"],
    "seqlit SGD lr 20": ["--optimizer", "SGD", "--optimizer.lr", "20", "--trainer.gradient_clip_val", "0.25"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--level", choices=("char", "word"), default="char")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--bptt", type=int, default=100)
    parser.add_argument("--size", type=int, default=200, help="embedding and hidden size (2 layers)")
    parser.add_argument("--tie", choices=("yes", "no", "both"), default="no")
    parser.add_argument("--seed", type=int, default=1111)
    parser.add_argument("--variants", nargs="*", default=list(SEQLIT_VARIANTS), choices=list(SEQLIT_VARIANTS),
                        help="which seqlit optimizer settings to run beside the reference")
    args = parser.parse_args()
    ties = {"yes": [True], "no": [False], "both": [True, False]}[args.tie]
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(f"{args.level} level, {args.epochs} epochs, bptt {args.bptt}, 2×{args.size} LSTM, dropout 0.2, "
          f"{TRAIN_STREAMS} training streams; torch threads {torch.get_num_threads()}")
    rows: list[tuple[str, Result]] = []
    with tempfile.TemporaryDirectory(prefix="lm_reference_") as folder:
        for tie in ties:
            label = "tied" if tie else "untied"
            rows.append((label, run_reference(args.level, args.epochs, args.bptt, args.size, tie, args.seed)))
            for variant in args.variants:
                name = f"{args.level}_{label}_{variant.replace(' ', '_').replace('seqlit_', '')}"
                config = seqlit_config(args.level, args.epochs, args.bptt, args.size, tie)
                result = run_seqlit(name, config, SEQLIT_VARIANTS[variant], args.seed, Path(folder))
                result.name = variant
                rows.append((label, result))
    reference = {label: result for label, result in rows if result.name.startswith("reference")}
    print(f"\n| {args.level} | output layer | test bits/char | train tokens/s | × reference tokens/s | wall s |")
    print("|---|---|---:|---:|---:|---:|")
    for label, result in rows:
        ratio = result.tokens_per_sec / reference[label].tokens_per_sec
        print(f"| {result.name} | {label} | {result.test_bpc:.4f} | {result.tokens_per_sec:,.0f} | {ratio:.2f} | "
              f"{result.seconds:.0f} |")


if __name__ == "__main__":
    main()
