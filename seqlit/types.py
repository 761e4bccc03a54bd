"""Batch contracts shared by data and models, and the shape legend used in every shape comment.

Shape legend: B batch, T time (padded length), H hidden, V vocab, C classes, F features,
D directions (1 or 2), L layers.

The batch is the contract between data and model: padded tensors plus `lengths` and `mask`, so a
model never has to guess where the padding is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

PAD_ID: int = 0
"""Token id used for padding in token-level inputs (vocabularies reserve it)."""

IGNORE_INDEX: int = -100
"""Target value that losses skip (matches `torch.nn.CrossEntropyLoss(ignore_index=-100)`)."""

UNK_ID: int = 1
"""Token id for a token outside the vocabulary (fitted on the training split only)."""

BOS_ID: int = 2
"""Token id that starts every decoder input sequence."""

EOS_ID: int = 3
"""Token id that ends every target sequence; decoding stops when it is produced."""

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<unk>", "<s>", "</s>")
"""Names of PAD_ID, UNK_ID, BOS_ID, EOS_ID, in id order: the first entries of every vocabulary."""


def _non_blocking(device: torch.device | str, requested: bool | None) -> bool:
    """Asynchronous copies to CUDA by default (Lightning passes no flag to custom batch types); a copy from
    pinned memory then overlaps with compute. Other devices copy synchronously, as Lightning does."""
    if requested is not None:
        return requested
    return torch.device(device).type == "cuda"


@dataclass
class SeqBatch:
    """A padded batch of variable-length sequences.

    `inputs` is (B, T, F) float for real-valued series or (B, T) long for token ids; `targets`
    is (B,) for sequence-level labels or (B, T) for per-step targets padded with IGNORE_INDEX.
    `indices` are the dataset positions of the samples, so predictions can be put back in order.
    """

    inputs: Tensor  # (B, T, F) float or (B, T) long
    targets: Tensor  # (B,) long, or (B, T) padded with IGNORE_INDEX
    lengths: Tensor  # (B,) long, real steps per sequence
    mask: Tensor  # (B, T) bool, True on real steps
    indices: Tensor  # (B,) long, dataset positions
    n_tokens: int  # real steps in the batch
    n_pad: int  # padded steps in the batch

    @property
    def batch_size(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def padding_ratio(self) -> float:
        """Fraction of the padded (B, T) grid that is padding."""
        total = self.n_tokens + self.n_pad
        return self.n_pad / total if total else 0.0

    def to(self, device: torch.device | str, non_blocking: bool | None = None) -> SeqBatch:
        """Moves tensors to `device`; `lengths` stays on the CPU, where packing needs it."""
        non_blocking = _non_blocking(device, non_blocking)
        return replace(
            self,
            inputs=self.inputs.to(device, non_blocking=non_blocking),
            targets=self.targets.to(device, non_blocking=non_blocking),
            mask=self.mask.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> SeqBatch:
        """Lets `DataLoader(pin_memory=True)` pin a custom batch type."""
        return replace(
            self,
            inputs=self.inputs.pin_memory(),
            targets=self.targets.pin_memory(),
            mask=self.mask.pin_memory(),
            lengths=self.lengths.pin_memory(),
            indices=self.indices.pin_memory(),
        )


@dataclass
class Seq2SeqBatch:
    """A padded batch of source/target token sequences for encoder-decoder models.

    Shapes: S source length, T target length (+1 for BOS/EOS). `target_inputs` starts with BOS and
    `target_outputs` ends with EOS (shifted by one); outputs are padded with IGNORE_INDEX so the loss
    skips them. `references` holds every acceptable target (token id tuples without BOS/EOS) per item,
    for metrics where several answers are right (e.g. alternate pronunciations). At predict time the
    target tensors are (B, 0) and `references` is empty per item.
    """

    sources: Tensor  # (B, S) long, padded with PAD_ID
    source_lengths: Tensor  # (B,) long, real source tokens per sequence (kept on the CPU)
    source_mask: Tensor  # (B, S) bool, True on real source tokens
    target_inputs: Tensor  # (B, T) long: BOS y_1 .. y_n, padded with PAD_ID
    target_outputs: Tensor  # (B, T) long: y_1 .. y_n EOS, padded with IGNORE_INDEX
    references: list[list[tuple[int, ...]]]  # per item: every acceptable target, ids without BOS/EOS
    indices: Tensor  # (B,) long, dataset positions
    n_tokens: int  # real source tokens in the batch
    n_pad: int  # padded source positions in the batch
    # Real target tokens (including EOS): the count the token-level loss is averaged over. Counted once where
    # the batch is built (on the CPU), so reading it after the move to a GPU costs no synchronisation.
    n_target_tokens: int = -1

    def __post_init__(self) -> None:
        if self.n_target_tokens < 0:
            self.n_target_tokens = int((self.target_outputs != IGNORE_INDEX).sum())

    @property
    def batch_size(self) -> int:
        return int(self.source_lengths.shape[0])

    @property
    def padding_ratio(self) -> float:
        """Fraction of the padded source grid that is padding."""
        total = self.n_tokens + self.n_pad
        return self.n_pad / total if total else 0.0

    def to(self, device: torch.device | str, non_blocking: bool | None = None) -> Seq2SeqBatch:
        """Moves tensors to `device`; `source_lengths` and `indices` stay on the CPU."""
        non_blocking = _non_blocking(device, non_blocking)
        return replace(
            self,
            sources=self.sources.to(device, non_blocking=non_blocking),
            source_mask=self.source_mask.to(device, non_blocking=non_blocking),
            target_inputs=self.target_inputs.to(device, non_blocking=non_blocking),
            target_outputs=self.target_outputs.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> Seq2SeqBatch:
        """Lets `DataLoader(pin_memory=True)` pin a custom batch type."""
        return replace(
            self,
            sources=self.sources.pin_memory(),
            source_lengths=self.source_lengths.pin_memory(),
            source_mask=self.source_mask.pin_memory(),
            target_inputs=self.target_inputs.pin_memory(),
            target_outputs=self.target_outputs.pin_memory(),
            indices=self.indices.pin_memory(),
        )


@dataclass
class LMBatch:
    """One truncated-BPTT chunk of B parallel token streams: `targets` are `inputs` shifted by one.

    Row b of consecutive batches continues the same stretch of text, so a model may carry its hidden
    state from one batch to the next. There is no padding: every target is a real next token.
    `chars_per_token` converts token counts to characters, so bits per character compare across
    char, word and BPE tokenizers. `nominal_length` is the configured chunk length (bptt): the loss
    of a chunk is weighted by its length relative to it (AWD-LSTM's learning-rate rescaling). Prompt
    batches for sampling have empty targets and carry the prompt's `indices`.
    """

    inputs: Tensor  # (B, T) long
    targets: Tensor  # (B, T) long, inputs shifted left by one step; (B, 0) for prompts
    chars_per_token: float  # characters of text per token in this split
    nominal_length: int = 0  # configured steps per chunk (0: use T)
    indices: Tensor | None = None  # (B,) prompt positions when sampling

    @property
    def batch_size(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def n_tokens(self) -> int:
        """Predicted tokens in the chunk (every position is real)."""
        return int(self.targets.numel())

    @property
    def n_pad(self) -> int:
        """Streams are never padded (read by the padding-ratio monitor)."""
        return 0

    def to(self, device: torch.device | str, non_blocking: bool | None = None) -> LMBatch:
        """Moves the token tensors to `device`."""
        non_blocking = _non_blocking(device, non_blocking)
        return replace(
            self,
            inputs=self.inputs.to(device, non_blocking=non_blocking),
            targets=self.targets.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> LMBatch:
        """Lets `DataLoader(pin_memory=True)` pin a custom batch type."""
        return replace(self, inputs=self.inputs.pin_memory(), targets=self.targets.pin_memory())


@dataclass
class ForecastBatch:
    """Context windows of B series (padded at the end) and the next `horizon` values of each.

    Everything is in each window's scaled units: value = (raw - location) / scale, with `location`
    and `scale` computed from the context only (or the series' training span), so a forecast in
    original units is `prediction * scale + location`. Channel 0 of `inputs` is the scaled target;
    further channels are covariates (and an `observed` flag when missing values are masked).
    `target_mask` is False where a target is missing or lies beyond the split's span, and such
    targets count in neither loss nor metrics. `mase_scale` is the in-sample seasonal naive error of
    the series' whole history before the window's first target (NaN where it is not defined).
    """

    inputs: Tensor  # (B, T, F) float, scaled context
    lengths: Tensor  # (B,) long, real context steps per window (kept on the CPU)
    mask: Tensor  # (B, T) bool, True on real context steps
    targets: Tensor  # (B, H) float, scaled, 0 where target_mask is False
    target_mask: Tensor  # (B, H) bool
    location: Tensor  # (B,) float64
    scale: Tensor  # (B,) float64, > 0
    mase_scale: Tensor  # (B,) float64
    indices: Tensor  # (B,) long, dataset positions
    n_tokens: int  # real context steps in the batch
    n_pad: int  # padded context steps in the batch
    # Observed target values: the count a loss over the horizon is averaged over. Counted once where the
    # batch is built (on the CPU), so reading it after the move to a GPU costs no synchronisation.
    n_targets: int = -1

    def __post_init__(self) -> None:
        if self.n_targets < 0:
            self.n_targets = int(self.target_mask.sum())

    @property
    def batch_size(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def padding_ratio(self) -> float:
        total = self.n_tokens + self.n_pad
        return self.n_pad / total if total else 0.0

    def to(self, device: torch.device | str, non_blocking: bool | None = None) -> ForecastBatch:
        """Moves tensors to `device`; `lengths` and `indices` stay on the CPU."""
        non_blocking = _non_blocking(device, non_blocking)
        moved = {
            name: getattr(self, name).to(device, non_blocking=non_blocking)
            for name in ("inputs", "mask", "targets", "target_mask", "location", "scale", "mase_scale")
        }
        return replace(self, **moved)

    def pin_memory(self) -> ForecastBatch:
        """Lets `DataLoader(pin_memory=True)` pin a custom batch type."""
        pinned = {
            name: getattr(self, name).pin_memory()
            for name in ("inputs", "lengths", "mask", "targets", "target_mask", "location", "scale", "mase_scale",
                         "indices")
        }
        return replace(self, **pinned)
