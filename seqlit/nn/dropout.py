"""Dropout for recurrent nets without leaving the fused kernels (Merity et al. 2017, AWD-LSTM).

Masks are drawn once per sequence (`LockedDropout`), per word type (`EmbeddingDropout`) or once per
forward on the recurrent matrices (`WeightDrop`), so an `nn.LSTM`/`nn.GRU` keeps its cuDNN/oneDNN kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from seqlit.errors import SettingError

__all__ = ["EmbeddingDropout", "LockedDropout", "WeightDrop", "check_probability"]


def check_probability(name: str, p: float) -> None:
    """Rejects dropout rates outside [0, 1) (1 would zero everything and divide by zero)."""
    if not 0.0 <= p < 1.0:
        raise SettingError(f"{name} must be in [0, 1), got {p}; use 0 to disable it (typical values are 0.1-0.5).")


class LockedDropout(nn.Module):
    """Variational dropout: one mask per sequence and feature, shared by every time step.

    Redrawing the mask each step (plain `nn.Dropout` on (B, T, H)) lets the net average the noise
    away along the sequence; a locked mask removes the same units for the whole sequence
    (Gal & Ghahramani 2016), which is what regularises a recurrent net.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        check_probability("LockedDropout p", p)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, H, ...) batch first -> same shape, units zeroed per (sequence, feature)."""
        if not self.training or self.p == 0.0:
            return x
        if x.dim() < 2:
            raise ValueError(f"LockedDropout expects a batch-first (B, T, H) tensor, got shape {tuple(x.shape)}.")
        mask_shape = (x.shape[0], 1, *x.shape[2:])
        mask = x.new_empty(mask_shape).bernoulli_(1.0 - self.p).div_(1.0 - self.p)  # (B, 1, H)
        return x * mask  # (B, T, H)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class EmbeddingDropout(nn.Embedding):
    """An `nn.Embedding` that, in training, drops whole word types (Gal & Ghahramani 2016; AWD-LSTM).

    One keep/drop draw per vocabulary row, scaled by 1/(1-p): every occurrence of a dropped word is
    zero in that forward, so the model cannot lean on a word's identity. `weight` stays the
    ordinary Parameter, so `decoder.weight = embedding.weight` ties it to an output layer.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        *,
        dropout: float = 0.0,
        **embedding_kwargs: Any,
    ) -> None:
        super().__init__(
            num_embeddings,
            embedding_dim,
            padding_idx=padding_idx,
            max_norm=max_norm,
            norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq,
            sparse=sparse,
            **embedding_kwargs,
        )
        check_probability("EmbeddingDropout dropout", dropout)
        self.dropout = dropout

    def forward(self, input: Tensor) -> Tensor:
        """input (*) token ids -> (*, E); rows of dropped word types are zero."""
        embedded = super().forward(input)  # (*, E)
        if not self.training or self.dropout == 0.0:
            return embedded
        # Same result and gradient as F.embedding(input, weight * keep) (AWD-LSTM's embedded_dropout),
        # but scales the looked-up rows instead of copying the (V, E) matrix; keeps max_norm's in-place
        # renorm on the real weight and sparse gradients working.
        keep = self.weight.new_empty((self.num_embeddings, 1)).bernoulli_(1.0 - self.dropout)  # (V, 1)
        keep = keep.div_(1.0 - self.dropout)  # (V, 1)
        return embedded * keep[input]  # (*, E)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dropout={self.dropout}"


class WeightDrop(nn.Module):
    """DropConnect on an RNN's hidden-to-hidden matrices, one mask per forward (AWD-LSTM).

    Unlike Keras' `recurrent_dropout`, which masks h at every step and so forces a per-step cell,
    the dropped matrix is handed to the wrapped `nn.LSTM`/`nn.GRU`, so the fused (cuDNN / oneDNN)
    kernel still runs; every step of every sequence in the batch sees the same dropped matrix.

    The trainable weights stay where they were (`module.weight_hh_l0`, a Parameter), so the state
    dict is the wrapped RNN's under a `module.` prefix; each training forward passes
    `dropout(weight)` through `torch.func.functional_call` and nothing dropped outlives the call.
    """

    def __init__(self, rnn: nn.Module, p: float, weight_names: Sequence[str] | None = None) -> None:
        super().__init__()
        check_probability("WeightDrop p", p)
        parameter_names = [name for name, _ in rnn.named_parameters()]
        if weight_names is None:
            weight_names = [name for name in parameter_names if name.rpartition(".")[2].startswith("weight_hh")]
            if not weight_names:
                raise ValueError(
                    f"{type(rnn).__name__} has no parameter named weight_hh*; pass weight_names= from "
                    f"{parameter_names}."
                )
        unknown = [name for name in weight_names if name not in parameter_names]
        if unknown:
            raise ValueError(
                f"WeightDrop weight_names {unknown} are not parameters of {type(rnn).__name__}; "
                f"choose from {parameter_names}."
            )
        self.module = rnn
        self.p = p
        self.weight_names: tuple[str, ...] = tuple(weight_names)

    @property
    def input_size(self) -> int:
        return int(self.module.input_size)

    @property
    def hidden_size(self) -> int:
        return int(self.module.hidden_size)

    @property
    def num_layers(self) -> int:
        return int(self.module.num_layers)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the wrapped RNN (same arguments, same return value) with dropped recurrent weights."""
        if not self.training or self.p == 0.0:
            return self.module(*args, **kwargs)
        dropped = {
            name: F.dropout(self.module.get_parameter(name), self.p, training=True)  # (G*H, H) each
            for name in self.weight_names
        }
        try:
            return functional_call(self.module, dropped, args, kwargs)
        finally:
            self._point_flat_weights_at_parameters()

    def flatten_parameters(self) -> None:
        """Passes through to the wrapped RNN, for code that calls `rnn.flatten_parameters()`."""
        flatten = getattr(self.module, "flatten_parameters", None)
        if callable(flatten):
            flatten()

    def extra_repr(self) -> str:
        return f"p={self.p}, weight_names={list(self.weight_names)}"

    def _point_flat_weights_at_parameters(self) -> None:
        # functional_call restores the Parameter behind RNNBase.__setattr__'s back, so its
        # `_flat_weights` list would keep the dropped tensor until the next forward notices; a direct
        # `flatten_parameters()` call in between would flatten that. Re-assigning the Parameter
        # goes through __setattr__, which re-points the list (no copy, no flattening here).
        for name in self.weight_names:
            owner_name, _, leaf = name.rpartition(".")
            owner = self.module.get_submodule(owner_name)
            if isinstance(owner, nn.RNNBase):
                setattr(owner, leaf, owner.get_parameter(leaf))

