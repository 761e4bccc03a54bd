"""An AWD-LSTM-style recurrent language model (Merity et al. 2018) whose state can be carried across chunks.

Embedding (with word-type dropout) -> locked dropout -> a stack of single-layer RNNs (weight drop on the
recurrent matrices, locked dropout between layers) -> locked dropout -> a softmax layer whose weight is
optionally tied to the embedding. Every layer is its own module, so the last one can have the embedding
size that weight tying needs while the others are wider.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlit.nn.cell_layer import CellSpec
from seqlit.nn.dropout import EmbeddingDropout, LockedDropout
from seqlit.nn.encoders import RNNEncoder
from seqlit.nn.init import EmbeddingInit, init_embedding_
from seqlit.nn.protocol import State, zero_state
from seqlit.validation import require_int_at_least

LMState = list[State]  # one state per layer, parts (1, B, H_i): (h,) for a GRU, (h, c) for an LSTM


class RecurrentLanguageModel(nn.Module):
    """Next-token logits for token ids, continuing from a carried state.

    With `tie_weights` the last layer's size is `embedding_size` (Inan et al. 2017; Press & Wolf 2017),
    whatever `hidden_size` says; the decoder then has no weight matrix of its own.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int = 400,
        hidden_size: int = 1150,
        num_layers: int = 3,
        cell: CellSpec = "lstm",
        layer_norm: bool = False,
        embedding_dropout: float = 0.1,
        input_dropout: float = 0.65,
        hidden_dropout: float = 0.3,
        output_dropout: float = 0.4,
        weight_drop: float = 0.5,
        tie_weights: bool = True,
        embedding_init: EmbeddingInit = "uniform",
    ) -> None:
        super().__init__()
        for name, value in (("embedding_size", embedding_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            require_int_at_least(f"{type(self).__name__} {name}", value, 1)
        self.embedding = EmbeddingDropout(vocab_size, embedding_size, dropout=embedding_dropout)
        init_embedding_(self.embedding, embedding_init)
        sizes = [embedding_size] + [hidden_size] * (num_layers - 1)
        sizes.append(embedding_size if tie_weights else hidden_size)
        self.layers = nn.ModuleList(
            RNNEncoder(sizes[i], sizes[i + 1], cell=cell, layer_norm=layer_norm, weight_drop=weight_drop)
            for i in range(num_layers)
        )
        self.input_dropout = LockedDropout(input_dropout)
        self.hidden_dropout = LockedDropout(hidden_dropout)
        self.output_dropout = LockedDropout(output_dropout)
        self.decoder = nn.Linear(sizes[-1], vocab_size)
        if tie_weights:
            self.decoder.weight = self.embedding.weight
        else:
            # Like a tied decoder (the embedding's uniform ±sqrt(3/E) rows): each logit starts with about the
            # variance of its input. Xavier's ±sqrt(6/(V+H)) shrinks with the vocabulary (±0.04 for 4,034 words
            # × 200) and makes an untied model learn far more slowly (pytorch/examples uses ±0.1).
            bound = (3.0 / sizes[-1]) ** 0.5
            nn.init.uniform_(self.decoder.weight, -bound, bound)
        nn.init.zeros_(self.decoder.bias)
        self.hidden_sizes = sizes[1:]

    def forward(self, ids: Tensor, state: LMState | None = None) -> tuple[Tensor, LMState]:
        """ids (B, T) -> logits (B, T, V) and the state after the last step (feed it to the next chunk)."""
        x = self.input_dropout(self.embedding(ids))  # (B, T, E)
        new_state: LMState = []
        for index, layer in enumerate(self.layers):
            x, layer_state = layer(x, None, None if state is None else state[index])  # (B, T, H_i)
            new_state.append(layer_state)
            if index < len(self.layers) - 1:
                x = self.hidden_dropout(x)  # (B, T, H_i)
        return self.decoder(self.output_dropout(x)), new_state  # (B, T, V)

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> LMState:
        """All-zero state for `batch_size` streams (what `forward(state=None)` starts from)."""
        device = device or self.decoder.weight.device
        return [zero_state(layer, batch_size, device, self.decoder.weight.dtype) for layer in self.layers]


def detach_state(state: LMState | None) -> LMState | None:
    """The same state cut from the graph: the next chunk's backward stops here (truncated BPTT)."""
    if state is None:
        return None
    return [tuple(part.detach() for part in layer_state) for layer_state in state]


def state_batch_size(state: LMState) -> int:
    """Streams in a carried state (B of its (1, B, H) tensors)."""
    return int(state[0][0].shape[1])
