"""Language-model figures: samples at two temperatures continuing fixed prompts cut from the validation text."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from seqlit.figures.artifacts import Artifact, TableArtifact
from seqlit.figures.maker import FigureMaker


class LanguageModelFigures(FigureMaker):
    """Samples of `seqlit.tasks.LanguageModel` (or a module with its `sample(prompt, length, temperature,
    generator)` and `text_tokenizer`). The prompts are `prompt_length` tokens at seeded positions of the
    validation streams; every draw is seeded too, so two epochs differ only by the model."""

    def __init__(self, temperatures: tuple[float, float] = (0.7, 1.0), sample_length: int = 120,
                 prompt_length: int = 32) -> None:
        if sample_length < 1 or prompt_length < 1:
            raise ValueError(f"sample_length and prompt_length must be >= 1, got {sample_length}, {prompt_length}.")
        self.temperatures = tuple(float(t) for t in temperatures)
        self.sample_length = sample_length
        self.prompt_length = prompt_length

    def fixed_items(self, loader: Any, max_items: int, seed: int) -> Tensor | None:
        """(B, P) prompts from the validation streams (a `seqlit.data.streams.StreamChunks` data set)."""
        streams = getattr(getattr(loader, "dataset", None), "streams", None)  # (R, L)
        if not isinstance(streams, Tensor) or streams.dim() != 2 or max_items < 1:
            return None
        n_rows, row_length = streams.shape
        length = min(self.prompt_length, row_length)
        generator = torch.Generator().manual_seed(seed)
        rows = torch.randint(n_rows, (max_items,), generator=generator)  # (B,)
        starts = torch.randint(row_length - length + 1, (max_items,), generator=generator)  # (B,)
        return torch.stack([streams[r, s : s + length] for r, s in zip(rows.tolist(), starts.tolist())])  # (B, P)

    def make(self, module: Any, items: Any | None, epoch: int) -> list[Artifact]:
        if items is None:
            return []
        tokenizer = module.text_tokenizer
        prompts = [tokenizer.decode(row) for row in items.tolist()]
        rows: list[list[Any]] = []
        for temperature in self.temperatures:
            generator = torch.Generator(device=items.device).manual_seed(1000 + round(temperature * 100))
            sampled = module.sample(items, self.sample_length, temperature, generator)  # (B, length)
            for index, (prompt, continuation) in enumerate(zip(prompts, sampled.tolist())):
                rows.append([epoch, index, temperature, prompt, tokenizer.decode(continuation)])
        return [TableArtifact("samples", ["epoch", "prompt_id", "temperature", "prompt", "sample"], rows)]


__all__ = ["LanguageModelFigures"]
