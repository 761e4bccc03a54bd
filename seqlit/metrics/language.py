"""Language-model metrics from summed token negative log-likelihoods: mean loss, perplexity, bits per character.

Every metric keeps the summed NLL (float64) and the token and character counts as `sum`-reduced states,
so a DDP sync adds exact totals instead of averaging per-rank ratios, and a split's perplexity covers
every evaluated token once. Bits per character divide by characters, not tokens, so char, word and BPE
models compare on one scale.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric


class _SummedNLL(Metric):
    """Summed NLL (nats) with the tokens and characters it covers."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    nll: Tensor
    tokens: Tensor
    chars: Tensor

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_state("nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("chars", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, summed_nll: Tensor, n_tokens: int, chars_per_token: float = 1.0) -> None:
        """Adds a batch's summed NLL over `n_tokens` tokens of text with `chars_per_token` characters each."""
        # Replaced, not updated in place: states reset under inference mode (after `validate`) refuse in-place ops.
        self.nll = self.nll + summed_nll.detach().to(torch.float64)
        self.tokens = self.tokens + float(n_tokens)
        self.chars = self.chars + float(n_tokens) * float(chars_per_token)


class TokenNLL(_SummedNLL):
    """Mean negative log-likelihood per token, in nats (the cross-entropy loss over the whole split)."""

    def compute(self) -> Tensor:
        return (self.nll / self.tokens).float()


class Perplexity(_SummedNLL):
    """exp(mean NLL per token); NaN before any token."""

    def compute(self) -> Tensor:
        return torch.exp(self.nll / self.tokens).float()


class BitsPerCharacter(_SummedNLL):
    """Summed NLL in bits over the characters of the text it covers."""

    def compute(self) -> Tensor:
        return (self.nll / (self.chars * math.log(2.0))).float()
