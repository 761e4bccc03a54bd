"""Language-model metrics: exact sums, perplexity = exp(mean NLL), bits per character, torchmetrics agreement."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchmetrics.text import Perplexity as TorchmetricsPerplexity

from seqlit.metrics.language import BitsPerCharacter, Perplexity, TokenNLL


def test_matches_torchmetrics_perplexity_over_several_batches() -> None:
    torch.manual_seed(0)
    ours, reference = Perplexity(), TorchmetricsPerplexity()
    for steps in (5, 9, 3):  # unequal chunks: a mean of per-batch perplexities would be wrong
        logits = torch.randn(2, steps, 11)
        targets = torch.randint(0, 11, (2, steps))
        summed = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1), reduction="sum")
        ours.update(summed, targets.numel())
        reference.update(logits, targets)
    torch.testing.assert_close(ours.compute(), reference.compute(), rtol=1e-5, atol=1e-5)


def test_loss_ppl_and_bits_per_character_agree() -> None:
    nll, bpc, ppl = TokenNLL(), BitsPerCharacter(), Perplexity()
    for metric in (nll, bpc, ppl):
        metric.update(torch.tensor(60.0), n_tokens=20, chars_per_token=4.0)  # 3 nats per token
        metric.update(torch.tensor(20.0), n_tokens=20, chars_per_token=4.0)  # 1 nat per token
    assert math.isclose(float(nll.compute()), 2.0, rel_tol=1e-6)
    assert math.isclose(float(ppl.compute()), math.exp(2.0), rel_tol=1e-6)
    assert math.isclose(float(bpc.compute()), 80.0 / (160.0 * math.log(2.0)), rel_tol=1e-6)
