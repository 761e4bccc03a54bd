"""Variable-length recurrent layers as a few whole-sequence calls over length segments, never reading padding.

oneDNN's fused RNN (the fast CPU kernel) takes padded input only; a `PackedSequence` falls back to
aten's per-step loop, about 6x slower on a long-tailed batch. So the batch is sorted by length and the
time axis cut at every distinct length: within one segment every active sequence is still running, so
one call covers it, and the sequences ending at its start drop out with their final state. The result
equals packing (same outputs, zero on padding; the same final states) and skips the same padded steps.
With bucketed batches there are only a handful of distinct lengths per batch.

What runs a segment is a `SegmentRunner`: a fused kernel call (`fused_runner`), a layer-normalised
explicit layer, or a user's cell stepped over the segment's time steps (`seqlit.nn.cell_layer`), so every
recurrent layer in seqlit shares this one length handling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, _VF

from seqlit.nn.device import to_device_async

State = tuple[Tensor, ...]  # (h,) for a GRU-like layer, (h, c) for an LSTM; every part (B, S_k)
# inputs (n, t, I) batch first, every row running all t steps; state parts (n, S_k) -> outputs (n, t, H), state
SegmentRunner = Callable[[Tensor, State], tuple[Tensor, State]]


def run_segmented(
    runners: Sequence[Sequence[SegmentRunner]],
    inputs: Tensor,
    lengths: Tensor | None,
    initial_state: State,
    dropout: float = 0.0,
    training: bool = False,
) -> tuple[Tensor, State]:
    """A stack of recurrent layers over a padded batch.

    runners[layer][direction] runs one layer and direction; inputs (B, T, F) batch first; lengths (B,) >= 1
    (None: every row has all T steps); initial_state parts (L*D, B, S_k) in torch's layer-major order.
    Returns outputs (B, T, D*H), zero past each length, and the state of every layer and direction at
    each sequence's last step (backward directions: at its first step), parts (L*D, B, S_k). `dropout`
    applies between layers, as in `nn.LSTM`.
    """
    batch, total_length = inputs.shape[:2]
    directions = len(runners[0])
    if lengths is None:
        order, sorted_lengths = None, [total_length] * batch
    else:
        if int(lengths.min()) < 1:
            raise ValueError(f"every sequence needs at least one step; got a length of {int(lengths.min())}.")
        order = torch.argsort(lengths.cpu(), descending=True, stable=True)  # (B,) longest first
        sorted_lengths = lengths.cpu()[order].tolist()
        order = to_device_async(order, inputs.device)
        inputs = inputs.index_select(0, order)  # (B, T, F) longest first
        initial_state = tuple(part.index_select(1, order) for part in initial_state)
    reverse_index = _reverse_index(sorted_lengths, total_length, inputs.device) if directions == 2 else None
    finals: list[State] = []
    layer_inputs = inputs
    for layer, layer_runners in enumerate(runners):
        direction_outputs = []
        for direction, runner in enumerate(layer_runners):
            slot = layer * directions + direction
            state = tuple(part[slot] for part in initial_state)  # (B, S_k) each
            steps = layer_inputs if direction == 0 else _flip_valid(layer_inputs, reverse_index)
            outputs, final = _one_direction(runner, steps, sorted_lengths, state)  # (B, T, H)
            direction_outputs.append(outputs if direction == 0 else _flip_valid(outputs, reverse_index))
            finals.append(final)
        layer_inputs = torch.cat(direction_outputs, dim=2) if directions == 2 else direction_outputs[0]  # (B, T, D*H)
        if layer < len(runners) - 1 and dropout > 0:
            layer_inputs = F.dropout(layer_inputs, dropout, training)
    state = tuple(torch.stack([final[part] for final in finals]) for part in range(len(finals[0])))  # (L*D, B, S_k)
    if order is None:
        return layer_inputs, state
    restore = torch.argsort(order)  # (B,) sorted position of each original row
    return layer_inputs.index_select(0, restore), tuple(part.index_select(1, restore) for part in state)


def fused_runner(kind: str, weights: list[Tensor], has_biases: bool, training: bool) -> SegmentRunner:
    """One layer and direction of a GRU/LSTM's fused kernel (oneDNN on CPU, cuDNN on GPU) with these weights."""

    def run(inputs: Tensor, state: State) -> tuple[Tensor, State]:
        hidden = tuple(part.unsqueeze(0).contiguous() for part in state)  # (1, n, H) each
        if kind == "lstm":
            outputs, h, c = _VF.lstm(inputs, hidden, weights, has_biases, 1, 0.0, training, False, True)
            return outputs, (h[0], c[0])
        outputs, h = _VF.gru(inputs, hidden[0], weights, has_biases, 1, 0.0, training, False, True)
        return outputs, (h[0],)

    return run


def _one_direction(
    runner: SegmentRunner, inputs: Tensor, lengths: list[int], state: State
) -> tuple[Tensor, State]:
    """One layer and direction over inputs (B, T, F) sorted longest first: one runner call per segment
    between distinct lengths. Returns outputs (B, T, H) zero past each length and the state parts (B, S_k)
    at every sequence's last step."""
    batch, total_length = inputs.shape[:2]
    if lengths[-1] == total_length:  # no padding at all: one call
        return runner(inputs, state)
    segment_outputs: list[Tensor] = []  # (B, t_end - t_start, H) each
    ended: list[State] = []  # final states of the rows that stop at a boundary, last rows first
    start, active = 0, batch
    for end in sorted(set(lengths)):
        still_running = sum(1 for length in lengths if length >= end)  # a prefix: rows are sorted
        if still_running < active:  # rows [still_running, active) ended at `start`
            ended.append(tuple(part[still_running:active] for part in state))
            state = tuple(part[:still_running] for part in state)
            active = still_running
        outputs, state = runner(inputs[:active, start:end], state)  # (active, end - start, H)
        segment_outputs.append(F.pad(outputs, (0, 0, 0, 0, 0, batch - active)))
        start = end
    if start < total_length:
        segment_outputs.append(segment_outputs[0].new_zeros(batch, total_length - start, segment_outputs[0].shape[2]))
    ended.append(state)
    final = tuple(torch.cat([rows[part] for rows in reversed(ended)], dim=0) for part in range(len(state)))
    return torch.cat(segment_outputs, dim=1), final


def _reverse_index(lengths: list[int], total_length: int, device: torch.device) -> Tensor:
    """(B, T) time index that reverses each row's valid steps in place and leaves padding where it is."""
    steps = torch.arange(total_length)  # (T,)
    rows = torch.tensor(lengths)[:, None]  # (B, 1)
    return to_device_async(torch.where(steps < rows, rows - 1 - steps, steps), device)  # (B, T)


def _flip_valid(values: Tensor, reverse_index: Tensor | None) -> Tensor:
    """values (B, T, F) with each row's valid steps reversed (its own inverse)."""
    assert reverse_index is not None
    return values.gather(1, reverse_index.unsqueeze(-1).expand(-1, -1, values.shape[2]))
