"""Embedding initialisation: scaled defaults and pretrained word2vec / GloVe text files with coverage counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from seqlit.nn.init import init_embedding_, load_pretrained_embeddings_
from seqlit.types import SPECIAL_TOKENS

TOKENS = [*SPECIAL_TOKENS, "the", "The", "cat", "zebra"]


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_default_init_gives_rows_of_about_unit_norm(distribution: str) -> None:
    torch.manual_seed(0)
    embedding = nn.Embedding(2000, 256, padding_idx=0)
    init_embedding_(embedding, distribution)  # type: ignore[arg-type]
    norms = embedding.weight.detach()[1:].norm(dim=1)
    assert 0.9 < float(norms.mean()) < 1.1
    assert float(embedding.weight.detach()[0].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="choose one of"):
        init_embedding_(embedding, "xavier")  # type: ignore[arg-type]


@pytest.mark.parametrize("header", [True, False], ids=["word2vec", "glove"])
def test_vectors_are_copied_with_a_coverage_count(tmp_path: Path, header: bool) -> None:
    lines = ["the 1 2 3", "cat 4 5 6", "dog 7 8 9"]
    path = tmp_path / "vectors.txt"
    path.write_text(("3 3\n" if header else "") + "\n".join(lines) + "\n", encoding="utf-8")
    embedding = nn.Embedding(len(TOKENS), 3)
    coverage = load_pretrained_embeddings_(embedding, path, TOKENS, skip=SPECIAL_TOKENS)
    assert (coverage.covered, coverage.uncovered) == (3, 1)  # the, The (via lower case), cat; not zebra
    assert coverage.uncovered_examples == ["zebra"]
    assert embedding.weight[TOKENS.index("cat")].tolist() == [4.0, 5.0, 6.0]
    assert embedding.weight[TOKENS.index("The")].tolist() == [1.0, 2.0, 3.0]
    assert "3 of 4 vocabulary tokens covered" in str(coverage)


def test_exact_spelling_wins_over_lower_case_and_dimension_mismatch_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "vectors.txt"
    path.write_text("the 1 1\nThe 2 2\n", encoding="utf-8")
    embedding = nn.Embedding(len(TOKENS), 2)
    load_pretrained_embeddings_(embedding, path, TOKENS, skip=SPECIAL_TOKENS)
    assert embedding.weight[TOKENS.index("The")].tolist() == [2.0, 2.0]
    with pytest.raises(ValueError, match="embedding_size: 2"):
        load_pretrained_embeddings_(nn.Embedding(len(TOKENS), 5), path, TOKENS)
