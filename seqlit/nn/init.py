"""Initialisation practitioners use for recurrent nets: orthogonal recurrent weights, Xavier input
weights, zero biases and an LSTM forget-gate bias of 1 (Jozefowicz et al. 2015)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from seqlit.errors import SettingError

EmbeddingInit = Literal["normal", "uniform"]
EMBEDDING_INITS: tuple[str, ...] = ("normal", "uniform")


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


def init_embedding_(embedding: nn.Embedding, distribution: EmbeddingInit = "normal") -> None:
    """Rows with variance 1/E (normal, or uniform in ±sqrt(3/E)), so an embedded token starts with about
    unit norm whatever E is; the padding row is zero."""
    if distribution not in EMBEDDING_INITS:
        raise SettingError(f"unknown embedding init {distribution!r}; choose one of {list(EMBEDDING_INITS)}.")
    scale = embedding.embedding_dim**-0.5
    if distribution == "normal":
        nn.init.normal_(embedding.weight, std=scale)
    else:
        nn.init.uniform_(embedding.weight, -(3**0.5) * scale, (3**0.5) * scale)
    if embedding.padding_idx is not None:
        with torch.no_grad():
            embedding.weight[embedding.padding_idx].zero_()


@dataclass(frozen=True)
class EmbeddingCoverage:
    """How many vocabulary entries a pretrained-vector file covered, with examples of those it missed."""

    covered: int
    uncovered: int
    uncovered_examples: list[str]

    def __str__(self) -> str:
        total = self.covered + self.uncovered
        share = 100.0 * self.covered / total if total else 0.0
        return (
            f"{self.covered} of {total} vocabulary tokens covered by pretrained vectors ({share:.1f}%), "
            f"{self.uncovered} uncovered (e.g. {self.uncovered_examples[:10]})"
        )


def load_pretrained_embeddings_(
    embedding: nn.Embedding, path: str | Path, tokens: Sequence[str], skip: Sequence[str] = ()
) -> EmbeddingCoverage:
    """Copies vectors from a word2vec / GloVe text file (`word v1 ... vE` per line, optional `N E`
    header) into the rows of `tokens`; exact spelling first, then lower case.

    Uncovered rows keep their initialisation, rescaled to the pretrained vectors' standard deviation
    so both kinds of row start on the same scale. `skip` lists tokens never looked up (specials).
    """
    candidates = [index for index, token in enumerate(tokens) if token not in skip]
    by_spelling: dict[str, list[int]] = {}
    by_lower: dict[str, list[int]] = {}
    for index in candidates:
        by_spelling.setdefault(tokens[index], []).append(index)
        by_lower.setdefault(tokens[index].lower(), []).append(index)
    dim = embedding.embedding_dim
    found: dict[int, Tensor] = {}
    exact: set[int] = set()
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            parts = line.rstrip().split(" ")
            if line_number == 1 and len(parts) == 2 and all(part.isdigit() for part in parts):
                continue  # word2vec header: vocabulary size and dimension
            word, values = parts[0], parts[1:]
            if word not in by_spelling and word not in by_lower:
                continue
            if len(values) != dim:
                raise ValueError(
                    f"{path}:{line_number}: the vector for {word!r} has {len(values)} values but the embedding "
                    f"has {dim} dimensions; set embedding_size: {len(values)} or use a {dim}-d vector file."
                )
            vector = torch.tensor([float(value) for value in values])  # (E,)
            for index in by_spelling.get(word, []):  # the exact spelling wins over a lower-cased match
                found[index] = vector
                exact.add(index)
            for index in by_lower.get(word, []):
                if index not in exact:
                    found[index] = vector
    missing = [tokens[index] for index in candidates if index not in found]
    if found:
        stacked = torch.stack(list(found.values()))  # (N, E)
        with torch.no_grad():
            weight = embedding.weight
            uncovered_rows = [index for index in candidates if index not in found]
            if uncovered_rows:
                rows = weight[uncovered_rows]  # (U, E)
                weight[uncovered_rows] = rows * (stacked.std() / rows.std().clamp_min(1e-12))
            for index, vector in found.items():
                weight[index] = vector.to(weight.dtype)
    return EmbeddingCoverage(covered=len(found), uncovered=len(missing), uncovered_examples=missing[:20])
