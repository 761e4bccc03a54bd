"""Initialisation practitioners use for recurrent nets: orthogonal recurrent weights, Xavier input
weights, zero biases and an LSTM forget-gate bias of 1 (Jozefowicz et al. 2015)."""

from __future__ import annotations

import torch
from torch import nn


def init_recurrent_(rnn: nn.LSTM | nn.GRU, forget_bias: float = 1.0) -> None:
    """Initialises an `nn.LSTM`/`nn.GRU` in place, gate block by gate block.

    Orthogonal recurrent matrices keep the hidden state's norm through time at start; the forget
    bias of 1 lets an LSTM remember by default. PyTorch adds `bias_ih` and `bias_hh`, so the
    forget bias goes into `bias_ih` only.
    """
    gates = 4 if isinstance(rnn, nn.LSTM) else 3
    hidden = rnn.hidden_size
    with torch.no_grad():
        for name, param in rnn.named_parameters():
            if name.startswith("weight_hh"):
                for block in param.split(hidden, dim=0):  # (H, H) per gate
                    nn.init.orthogonal_(block)
            elif name.startswith("weight_ih"):
                for block in param.split(hidden, dim=0):  # (H, I) per gate
                    nn.init.xavier_uniform_(block)
            elif name.startswith("bias"):
                param.zero_()
                if isinstance(rnn, nn.LSTM) and name.startswith("bias_ih"):
                    param[hidden : 2 * hidden] = forget_bias  # gate order: input, forget, cell, output
            elif name.startswith("weight_hr"):  # LSTM projections
                nn.init.xavier_uniform_(param)
    assert gates * hidden == rnn.weight_hh_l0.shape[0]


def init_linear_(layer: nn.Linear) -> None:
    """Xavier-uniform weights and zero bias for output heads."""
    nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def init_embedding_(embedding: nn.Embedding) -> None:
    """Normal(0, 1/sqrt(E)) rows, so an embedded token starts with about unit norm; the padding row is zero."""
    nn.init.normal_(embedding.weight, std=embedding.embedding_dim**-0.5)
    if embedding.padding_idx is not None:
        with torch.no_grad():
            embedding.weight[embedding.padding_idx].zero_()
