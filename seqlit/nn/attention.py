"""Masked encoder-decoder attention (Luong dot/general, Bahdanau additive) from one decoder query over S source steps.

Shapes: H_q query size, H_k key size, H_v value size, A attention size, S source length.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from seqlit.errors import SettingError

AttentionKind = Literal["dot", "general", "additive"]
ATTENTION_KINDS: tuple[str, ...] = ("dot", "general", "additive")


class Attention(nn.Module):
    """Scores each source step against the decoder query and returns the softmax-weighted context.

    `dot`: q · k (Luong; needs query_size == key_size); `general`: q · (W k) (Luong);
    `additive`: v · tanh(W_q q + W_k k) (Bahdanau). Padded source steps get weight exactly 0, so a
    sequence attended alone or inside a padded batch gives the same context.
    Keys can be projected once per sequence with `project_keys` and passed as `projected_keys`
    at every decoder step, since the key projection does not depend on the query.
    """

    def __init__(
        self,
        query_size: int,
        key_size: int,
        kind: AttentionKind = "general",
        attention_size: int | None = None,
    ) -> None:
        super().__init__()
        if kind not in ATTENTION_KINDS:
            raise SettingError(f"unknown attention kind {kind!r}; choose one of {', '.join(map(repr, ATTENTION_KINDS))}.")
        if query_size < 1 or key_size < 1:
            raise SettingError(f"query_size and key_size must be >= 1, got {query_size} and {key_size}")
        if kind == "dot" and query_size != key_size:
            raise SettingError(
                f"kind='dot' needs query_size == key_size, got {query_size} and {key_size}; "
                "use kind='general' or 'additive' for different sizes."
            )
        if attention_size is not None and kind != "additive":
            raise SettingError(f"attention_size is only used by kind='additive', got kind={kind!r}; leave it as None.")
        if attention_size is not None and attention_size < 1:
            raise SettingError(f"attention_size must be >= 1, got {attention_size}")
        self.kind = kind
        self.query_size = query_size
        self.key_size = key_size
        self.key_projection: nn.Linear | None = None
        self.query_projection: nn.Linear | None = None
        self.score: nn.Linear | None = None
        if kind == "general":
            # W maps keys into query space, so the per-step score is a plain dot product with q.
            self.key_projection = nn.Linear(key_size, query_size, bias=False)
        elif kind == "additive":
            attention_size = attention_size or key_size
            self.key_projection = nn.Linear(key_size, attention_size)
            self.query_projection = nn.Linear(query_size, attention_size, bias=False)
            self.score = nn.Linear(attention_size, 1, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        """keys (B, S, H_k) -> the query-independent part of the score: (B, S, H_q) or (B, S, A); keys for dot."""
        if self.key_projection is None:
            return keys  # (B, S, H_k)
        return self.key_projection(keys)  # (B, S, H_q) general, (B, S, A) additive

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        mask: Tensor,
        values: Tensor | None = None,
        projected_keys: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """query (B, H_q) or (B, Q, H_q) for Q queries at once, keys (B, S, H_k), mask (B, S) True on
        real steps, values (B, S, H_v) defaulting to keys -> context (B, H_v) / (B, Q, H_v) and
        weights (B, S) / (B, Q, S), summing to 1 over real steps and 0 on padding.

        A row of `mask` with no real step (its softmax would be undefined) fails an assertion checked on the
        device (`torch._assert_async`): at once on a CPU, and on a GPU without making the host wait for the
        device at every decoder step, as reading the answer back would.
        """
        if mask.shape != keys.shape[:2]:
            raise ValueError(f"mask must be (B, S) = {tuple(keys.shape[:2])} like keys, got {tuple(mask.shape)}")
        torch._assert_async(mask.any(dim=-1).all(), "a row of the attention mask has no real source step; every "
                            "sequence needs length >= 1")
        single = query.dim() == 2
        queries = query.unsqueeze(1) if single else query  # (B, Q, H_q)
        if projected_keys is None:
            projected_keys = self.project_keys(keys)  # (B, S, H_q) or (B, S, A)
        values = keys if values is None else values  # (B, S, H_v)
        # A 0 weight times inf/NaN padding is still NaN, so padded values are zeroed, not just down-weighted.
        values = values.masked_fill(~mask.unsqueeze(-1), 0.0)  # (B, S, H_v)
        scores = self._scores(queries, projected_keys)  # (B, Q, S)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))  # (B, Q, S)
        weights = torch.softmax(scores, dim=-1)  # (B, Q, S)
        context = torch.bmm(weights, values)  # (B, Q, H_v)
        if single:
            return context.squeeze(1), weights.squeeze(1)  # (B, H_v), (B, S)
        return context, weights

    def _scores(self, queries: Tensor, projected_keys: Tensor) -> Tensor:
        """Unnormalised score of every source step: queries (B, Q, H_q), projected keys (B, S, *) -> (B, Q, S)."""
        if self.kind == "additive":
            assert self.query_projection is not None and self.score is not None
            projected_query = self.query_projection(queries).unsqueeze(2)  # (B, Q, 1, A)
            hidden = torch.tanh(projected_keys.unsqueeze(1) + projected_query)  # (B, Q, S, A)
            return self.score(hidden).squeeze(-1)  # (B, Q, S)
        return torch.bmm(queries, projected_keys.transpose(1, 2))  # (B, Q, S)
