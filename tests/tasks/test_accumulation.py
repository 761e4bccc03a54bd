"""Gradient accumulation over unequal bucketed micro-batches equals one big batch."""

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from seqlit.data.collate import Sample, SequenceCollator
from tests.builders import classifier

MICRO_BATCHES = [[0, 1, 2, 3, 4], [5, 6], [7]]  # unequal sizes, as bucketing produces


class _GradProbe(pl.Callback):
    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:  # type: ignore[no-untyped-def]
        self.grads = {n: p.grad.detach().clone() for n, p in pl_module.named_parameters() if p.grad is not None}


def _samples() -> list[Sample]:
    generator = torch.Generator().manual_seed(0)
    return [
        Sample(index=i, inputs=torch.randn(2 + 3 * i, 4, generator=generator), target=torch.tensor(i % 3))
        for i in range(8)
    ]


def _grads(batches: list[list[int]], accumulate: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = classifier(4, 3, dropout=0.0)
    probe = _GradProbe()
    trainer = pl.Trainer(
        # CPU on purpose: this is an exact-arithmetic check, and GPU kernels (TF32, cuDNN) differ by rounding.
        max_steps=1, accumulate_grad_batches=accumulate, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[probe],
    )
    trainer.fit(model, DataLoader(_samples(), batch_sampler=batches, collate_fn=SequenceCollator()))
    return probe.grads


def test_accumulated_gradient_equals_big_batch_gradient() -> None:
    big = _grads([list(range(8))], accumulate=1)
    accumulated = _grads(MICRO_BATCHES, accumulate=len(MICRO_BATCHES))
    assert big.keys() == accumulated.keys() and big
    for name in big:
        torch.testing.assert_close(accumulated[name], big[name], rtol=1e-5, atol=1e-7, msg=name)


def test_naive_mean_of_micro_batch_means_would_differ() -> None:
    """What plain averaging gives: the test above would catch it."""
    torch.manual_seed(0)
    model = classifier(4, 3, dropout=0.0)
    samples, collate = _samples(), SequenceCollator()
    total = 0.0
    for indices in MICRO_BATCHES:
        batch = collate([samples[i] for i in indices])
        logits = model(batch.inputs, batch.lengths, batch.mask)
        total = total + torch.nn.functional.cross_entropy(logits, batch.targets) / len(MICRO_BATCHES)
    total.backward()
    big = _grads([list(range(8))], accumulate=1)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(model.head.output.weight.grad, big["head.output.weight"], rtol=1e-5, atol=1e-7)
