"""GradNormMonitor: logged norms against hand computations from the gradients at the same hook."""

from __future__ import annotations

import copy
import csv
import math
import re
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from lightning.pytorch.loggers import CSVLogger, Logger
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from seqlit.callbacks.grad_norm import GradNormMonitor
from seqlit.data.collate import Sample, SequenceCollator
from tests.builders import classifier

VOCAB, INPUT, HIDDEN, STEPS = 10, 4, 3, 5
CLIP = 0.01  # tiny, so clipping really happens on every step
GATES = {"lstm": ["input", "forget", "cell", "output"], "gru": ["reset", "update", "new"]}
RNN_GROUPS = ["rnn.l0", "rnn.l0_reverse", "rnn.l1", "rnn.l1_reverse"]


class TinyRNN(pl.LightningModule):
    """Embedding -> 2-layer bidirectional LSTM/GRU -> head; records every `log` call."""

    def __init__(self, cell: str = "lstm") -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, INPUT)
        rnn_class = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_class(INPUT, HIDDEN, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * HIDDEN, 2)
        self.records: list[tuple[int, int, str, float]] = []  # (global step, batch index, name, value)
        self._batch_idx = -1

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        step = self._trainer.global_step if self._trainer is not None else -1
        self.records.append((step, self._batch_idx, name, float(value)))
        if self._trainer is not None:
            super().log(name, value, *args, **kwargs)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._batch_idx = batch_idx

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        tokens, targets = batch
        outputs, _ = self.rnn(self.embedding(tokens))  # (B, T, 2H)
        return F.cross_entropy(self.head(outputs[:, -1]), targets)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def logged(self, name: str) -> list[tuple[int, int, float]]:
        return [(step, batch, value) for step, batch, key, value in self.records if key == name]

    def logged_at(self, step: int) -> dict[str, float]:
        """Norms computed in on_before_optimizer_step of optimizer step `step`."""
        return {k: v for s, _, k, v in self.records if s == step and k.startswith("grad/") and k != "grad/norm_clipped"}


class GradProbe(Callback):
    """Copies every gradient where the monitor reads it, and again at batch end (after clipping)."""

    def __init__(self) -> None:
        self.before_step: dict[int, dict[str, Tensor]] = {}  # global step -> grads
        self.after_batch: dict[int, dict[str, Tensor]] = {}  # batch index -> grads

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        self.before_step[trainer.global_step] = _grads(pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.after_batch[args[-1]] = _grads(pl_module)


def _grads(module: nn.Module) -> dict[str, Tensor]:
    return {name: p.grad.detach().double().cpu().clone() for name, p in module.named_parameters() if p.grad is not None}


def _norm(tensors: list[Tensor]) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors))


def _expected_groups(grads: dict[str, Tensor]) -> dict[str, list[str]]:
    """Hand-written grouping of TinyRNN's parameters."""
    groups = {"embedding": ["embedding.weight"], "head": ["head.weight", "head.bias"]}
    for group in RNN_GROUPS:
        layer = group.removeprefix("rnn.")  # l0 / l0_reverse
        index, _, reverse = layer[1:].partition("_")
        suffix = f"_{reverse}" if reverse else ""
        groups[group] = [f"rnn.{kind}_l{index}{suffix}" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert set(sum(groups.values(), [])) == set(grads)
    return groups


def _token_data(n: int = 16) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, VOCAB, (n, STEPS), generator=generator)  # (B, T)
    targets = torch.randint(0, 2, (n,), generator=generator)  # (B,)
    return DataLoader(TensorDataset(tokens, targets), batch_size=4)


def _fit(module: pl.LightningModule, tmp_path: Path, callbacks: list[Callback], data: DataLoader | None = None,
         **overrides: Any) -> pl.Trainer:
    kwargs: dict[str, Any] = dict(
        max_steps=3,
        callbacks=callbacks,
        logger=[CSVLogger(tmp_path), _ModuleRecorder(module)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        gradient_clip_val=CLIP,
        accelerator="cpu",
        devices=1,
    )
    kwargs.update(overrides)
    trainer = pl.Trainer(**kwargs)
    trainer.fit(module, data if data is not None else _token_data())
    return trainer


def _run_hook(monitor: GradNormMonitor, model: pl.LightningModule, step: int = 0) -> None:
    """Calls the hook outside a Trainer, on gradients the test made by hand."""
    trainer = SimpleNamespace(global_step=step, log_every_n_steps=1, loggers=[_ModuleRecorder(model)])
    monitor.on_before_optimizer_step(trainer, model, None)  # type: ignore[arg-type]


class _ModuleRecorder(Logger):
    """A logger that files every per-step grad metric it receives into the module's `records`."""

    def __init__(self, module: pl.LightningModule) -> None:
        super().__init__()
        self.module = module

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        records = getattr(self.module, "records", None)
        for key, value in metrics.items():
            if records is not None and key.startswith("grad/") and not key.endswith("_epoch"):
                records.append((step, self.module._batch_idx, key, float(value)))


def _monitor_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if str(w.message).startswith("GradNormMonitor")]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_norms_match_hand_computation(cell: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, probe = TinyRNN(cell), GradProbe()
    _fit(model, tmp_path, [GradNormMonitor(log_every_n_steps=1), probe])

    assert sorted(probe.before_step) == [0, 1, 2]
    for step, grads in probe.before_step.items():
        logged = model.logged_at(step)
        groups = _expected_groups(grads)
        gate_keys = {f"grad/norm_gate/{g}/{gate}" for g in RNN_GROUPS for gate in GATES[cell]}
        assert set(logged) == {"grad/norm_total"} | {f"grad/norm/{g}" for g in groups} | gate_keys
        total = _norm(list(grads.values()))
        assert total > CLIP, "the test needs gradients that the clip actually shrinks"
        assert logged["grad/norm_total"] == pytest.approx(total, rel=1e-5)
        for group, names in groups.items():
            assert logged[f"grad/norm/{group}"] == pytest.approx(_norm([grads[n] for n in names]), rel=1e-5)
            for g, gate in enumerate(GATES[cell] if group.startswith("rnn") else []):
                rows = [grads[n][g * HIDDEN : (g + 1) * HIDDEN] for n in names]
                assert logged[f"grad/norm_gate/{group}/{gate}"] == pytest.approx(_norm(rows), rel=1e-5)

    clipped = model.logged("grad/norm_clipped")
    # Measured in on_train_batch_end, written under the step that produced it; one per optimizer step.
    assert [step for step, _, _ in clipped] == [0, 1, 2]
    for step, batch, value in clipped:
        total = _norm(list(probe.before_step[step].values()))
        assert value == pytest.approx(min(total, CLIP), rel=1e-4)
        assert value <= CLIP + 1e-6
        assert value == pytest.approx(_norm(list(probe.after_batch[batch].values())), rel=1e-5)


def test_values_reach_the_csv_logger(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyRNN()
    trainer = _fit(model, tmp_path, [GradNormMonitor(log_every_n_steps=1)], max_steps=2)
    with open(Path(trainer.logger.log_dir) / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    first = next(row for row in rows if row["step"] == "0" and row.get("grad/norm_total"))
    assert float(first["grad/norm_total"]) == pytest.approx(model.logged_at(0)["grad/norm_total"], rel=1e-6)
    # (Not rnn.l1_reverse/forget: read at the last step, that direction's forget gate multiplies c0 = 0.)
    assert float(first["grad/norm_gate/rnn.l0/forget"]) > 0
    clipped = next(row for row in rows if row["step"] == "0" and row.get("grad/norm_clipped"))
    assert float(clipped["grad/norm_clipped"]) <= CLIP + 1e-6
    epoch = next(row for row in rows if row.get("grad/norm_total_epoch"))
    steps = [value for step, _, value in model.logged("grad/norm_total")]
    assert float(epoch["grad/norm_total_epoch"]) == pytest.approx(sum(steps) / len(steps), rel=1e-5)


def test_grouping_names_and_projection(tmp_path: Path) -> None:
    """Exact group keys; LSTM projection weights join their layer but not the gates; root parameters get their name."""

    class Projected(TinyRNN):
        def __init__(self) -> None:
            super().__init__("lstm")
            self.rnn = nn.LSTM(INPUT, HIDDEN, num_layers=2, bidirectional=True, batch_first=True, proj_size=2)
            self.head = nn.Linear(4, 2)
            self.temperature = nn.Parameter(torch.tensor(1.5))

        def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            return super().training_step(batch, batch_idx) * self.temperature

    torch.manual_seed(0)
    model = Projected()
    tokens, targets = next(iter(_token_data()))
    model.training_step((tokens, targets), 0).backward()
    grads = _grads(model)
    _run_hook(GradNormMonitor(), model)
    logged = model.logged_at(0)

    modules = {key.removeprefix("grad/norm/") for key in logged if key.startswith("grad/norm/")}
    assert modules == {"embedding", "temperature", "head", *RNN_GROUPS}
    layer = [n for n in grads if n.startswith("rnn.") and n.endswith("_l1_reverse")]
    assert "rnn.weight_hr_l1_reverse" in layer and len(layer) == 5
    assert logged["grad/norm/rnn.l1_reverse"] == pytest.approx(_norm([grads[n] for n in layer]), rel=1e-5)
    gated = [n for n in layer if "weight_hr" not in n]
    rows = [grads[n][1 * HIDDEN : 2 * HIDDEN] for n in gated]
    assert logged["grad/norm_gate/rnn.l1_reverse/forget"] == pytest.approx(_norm(rows), rel=1e-5)
    assert logged["grad/norm/temperature"] == pytest.approx(abs(float(grads["temperature"])), rel=1e-5)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, math.inf])
def test_norm_type_matches_clip_grad_norm_definition(norm_type: float) -> None:
    torch.manual_seed(0)
    model = TinyRNN("gru")
    model.embedding.weight.requires_grad_(False)  # grad None: left out of every norm and of the keys
    model.training_step(next(iter(_token_data())), 0).backward()
    _run_hook(GradNormMonitor(norm_type=norm_type), model)
    logged = model.logged_at(0)

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    expected = torch.nn.utils.get_total_norm(grads, norm_type)
    assert logged["grad/norm_total"] == pytest.approx(float(expected), rel=1e-5)
    assert "grad/norm/embedding" not in logged
    head = torch.cat([model.head.weight.grad.flatten(), model.head.bias.grad])
    assert logged["grad/norm/head"] == pytest.approx(float(torch.linalg.vector_norm(head, norm_type)), rel=1e-5)
    update_rows = torch.cat([getattr(model.rnn, f"{k}_l0").grad[HIDDEN : 2 * HIDDEN].flatten()
                             for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")])
    expected_gate = float(torch.linalg.vector_norm(update_rows, norm_type))
    assert logged["grad/norm_gate/rnn.l0/update"] == pytest.approx(expected_gate, rel=1e-5)


def test_mixed_dtypes_are_reduced_per_dtype() -> None:
    torch.manual_seed(0)
    model = TinyRNN()
    model.head.to(torch.bfloat16)
    model.embedding.to(torch.float64)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    _run_hook(GradNormMonitor(), model)
    logged = model.logged_at(0)
    grads = _grads(model)
    assert logged["grad/norm_total"] == pytest.approx(_norm(list(grads.values())), rel=1e-5)
    assert logged["grad/norm/head"] == pytest.approx(_norm([grads["head.weight"], grads["head.bias"]]), rel=1e-5)
    assert logged["grad/norm/embedding"] == pytest.approx(_norm([grads["embedding.weight"]]), rel=1e-6)


def test_log_interval(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyRNN()
    _fit(model, tmp_path, [GradNormMonitor(log_every_n_steps=2)], max_steps=4)
    # the steps Lightning writes to the logger: (global_step + 1) % n == 0
    assert [step for step, _, _ in model.logged("grad/norm_total")] == [1, 3]
    assert [step for step, _, _ in model.logged("grad/norm/head")] == [1, 3]
    assert [batch for _, batch, _ in model.logged("grad/norm_clipped")] == [1, 3]


def test_default_interval_follows_the_trainer(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyRNN()
    _fit(model, tmp_path, [GradNormMonitor()], max_steps=6, log_every_n_steps=3)
    assert [step for step, _, _ in model.logged("grad/norm_total")] == [2, 5]


def test_gradient_accumulation_logs_only_on_stepping_batches(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, probe = TinyRNN(), GradProbe()
    _fit(model, tmp_path, [GradNormMonitor(log_every_n_steps=1), probe], max_steps=2, accumulate_grad_batches=2)
    assert [batch for _, batch, _ in model.logged("grad/norm_total")] == [1, 3]
    clipped = model.logged("grad/norm_clipped")
    assert [batch for _, batch, _ in clipped] == [1, 3]
    for (step, _, total), (_, batch, value) in zip(model.logged("grad/norm_total"), clipped):
        assert total == pytest.approx(_norm(list(probe.before_step[step].values())), rel=1e-5)
        assert value == pytest.approx(min(total, CLIP), rel=1e-4)
        assert value == pytest.approx(_norm(list(probe.after_batch[batch].values())), rel=1e-5)


@pytest.mark.parametrize("kind", ["explode", "vanish"])
def test_warns_once_naming_step_and_worst_module(kind: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyRNN()
    explode = {"explode_threshold": 1e-6}
    thresholds = explode if kind == "explode" else {"vanish_threshold": 1e3, "explode_threshold": 1e6}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(model, tmp_path, [GradNormMonitor(log_every_n_steps=1, **thresholds)])
    messages = _monitor_warnings(caught)
    assert len(messages) == 1, messages
    assert f"{'exploding' if kind == 'explode' else 'vanishing'} gradients at global step 0" in messages[0]
    modules = {k.removeprefix("grad/norm/"): v for k, v in model.logged_at(0).items() if k.startswith("grad/norm/")}
    worst = (max if kind == "explode" else min)(modules, key=modules.__getitem__)
    assert re.search(rf"module '{re.escape(worst)}' has norm {modules[worst]:.4g}", messages[0]), messages[0]
    assert ("clip" if kind == "explode" else "initialisation") in messages[0]


def test_no_warning_with_sane_thresholds(tmp_path: Path) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(TinyRNN(), tmp_path, [GradNormMonitor(log_every_n_steps=1)])
    assert _monitor_warnings(caught) == []


def test_non_finite_counts_as_exploding_and_state_dict_remembers() -> None:
    torch.manual_seed(0)
    model = TinyRNN()
    model.training_step(next(iter(_token_data())), 0).backward()
    model.head.bias.grad[0] = float("nan")
    monitor = GradNormMonitor(log_every_n_steps=25)
    # Step 49 is a logging step of interval 25: (49 + 1) % 25 == 0.
    with pytest.warns(UserWarning, match=r"exploding gradients at global step 49: module 'head' has norm nan"):
        _run_hook(monitor, model, step=49)
    assert monitor.state_dict() == {"warned": ["explode"]}

    restored = GradNormMonitor()
    restored.load_state_dict(monitor.state_dict())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _run_hook(restored, model, step=49)
        _run_hook(monitor, model, step=49)
    assert _monitor_warnings(caught) == []
    with pytest.warns(UserWarning, match="exploding"):
        _run_hook(GradNormMonitor(), model, step=49)


def test_all_zero_modules_are_skipped_by_the_vanish_check() -> None:
    torch.manual_seed(0)
    model = TinyRNN()
    model.training_step(next(iter(_token_data())), 0).backward()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    model.head.weight.grad.zero_()
    model.head.bias.grad.zero_()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _run_hook(GradNormMonitor(), model)
    assert _monitor_warnings(caught) == []
    with torch.no_grad():
        model.head.bias.fill_(0.5)
    with pytest.warns(UserWarning, match=r"vanishing gradients at global step 0: module 'head' has norm 0"):
        _run_hook(GradNormMonitor(), model)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"log_every_n_steps": 0}, "log_every_n_steps"),
        ({"log_every_n_steps": 2.5}, "log_every_n_steps"),
        ({"log_every_n_steps": True}, "log_every_n_steps"),
        ({"explode_threshold": 0.0}, "explode_threshold"),
        ({"explode_threshold": float("nan")}, "explode_threshold"),
        ({"vanish_threshold": -1e-7}, "vanish_threshold"),
        ({"norm_type": 0.0}, "norm_type"),
        ({"vanish_threshold": 10.0, "explode_threshold": 1.0}, "below explode_threshold"),
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GradNormMonitor(**kwargs)


def _cpu_bf16_autocast_works() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            nn.LSTM(2, 2)(torch.randn(1, 2, 2))
    except RuntimeError:
        return False
    return True


@pytest.mark.skipif(not _cpu_bf16_autocast_works(), reason="bf16 autocast is not available on this CPU")
def test_bf16_mixed_on_cpu_logs_finite_norms(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, probe = TinyRNN(), GradProbe()
    _fit(model, tmp_path, [GradNormMonitor(log_every_n_steps=1), probe], max_steps=2, precision="bf16-mixed")
    assert sorted(probe.before_step) == [0, 1]
    for step, grads in probe.before_step.items():
        logged = model.logged_at(step)
        assert logged and all(math.isfinite(v) for v in logged.values())
        assert logged["grad/norm_total"] == pytest.approx(_norm(list(grads.values())), rel=1e-5)
    assert all(value <= CLIP + 1e-6 for _, _, value in model.logged("grad/norm_clipped"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_mixed_logs_unscaled_gradients(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, probe = TinyRNN(), GradProbe()
    reference = copy.deepcopy(model)
    reference.training_step(next(iter(_token_data())), 0).backward()  # fp32, no loss scale
    reference_total = _norm([p.grad for p in reference.parameters()])
    trainer = _fit(model, tmp_path, [GradNormMonitor(log_every_n_steps=1), probe], max_steps=2,
                   precision="16-mixed", accelerator="gpu")
    assert trainer.precision_plugin.scaler.get_scale() >= 2.0**10  # a scaled norm would be this far off
    logged = model.logged_at(0)["grad/norm_total"]
    assert logged == pytest.approx(_norm(list(probe.before_step[0].values())), rel=1e-5)
    assert logged == pytest.approx(reference_total, rel=2e-2)
    assert all(value <= CLIP + 1e-6 for _, _, value in model.logged("grad/norm_clipped"))


def test_sequence_classifier_keys(tmp_path: Path) -> None:
    torch.manual_seed(0)
    samples: list[Sample] = [
        {"index": i, "inputs": torch.randn(3 + i % 4, 3), "target": torch.tensor(i % 2)} for i in range(16)
    ]
    data = DataLoader(samples, batch_size=4, collate_fn=SequenceCollator())
    model = classifier(3, 2, cell="lstm", bidirectional=True, pooling="attention")
    trainer = _fit(model, tmp_path, [GradNormMonitor(log_every_n_steps=1)], data=data, max_steps=2)
    keys = [
        "grad/norm_total",
        "grad/norm/encoder.rnn.l0",
        "grad/norm/encoder.rnn.l0_reverse",
        "grad/norm/head.output",
        "grad/norm/pooling.attention.project",
        "grad/norm_gate/encoder.rnn.l0/forget",
    ]
    with open(Path(trainer.logger.log_dir) / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for key in keys:
        assert any(row.get(key) for row in rows), key
        assert any(row.get(f"{key}_epoch") for row in rows), key
    # AdamW leaves .grad alone, so the measured post-step norm is the clipped one.
    clipped = [float(row["grad/norm_clipped"]) for row in rows if row.get("grad/norm_clipped")]
    assert clipped and all(value <= CLIP + 1e-6 for value in clipped)
