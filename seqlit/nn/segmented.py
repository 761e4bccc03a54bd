"""Variable-length GRU/LSTM on CPU as a few fused calls over length segments, never reading padding.

oneDNN's fused RNN (the fast CPU kernel) takes padded input only; a `PackedSequence` falls back to
aten's per-step loop, about 6x slower on a long-tailed batch. So on CPU the batch is sorted by length
and the time axis cut at every distinct length: within one segment every active sequence is still
running, so one fused call covers it, and the sequences ending at its start drop out with their final
state. The result equals packing (same outputs, zero on padding; the same final states) and skips the
same padded steps. With bucketed batches there are only a handful of distinct lengths per batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, _VF, nn

State = tuple[Tensor, ...]  # (h,) for a GRU, (h, c) for an LSTM; each (L*D, B, H)


def segmented_rnn(
    rnn: nn.GRU | nn.LSTM, inputs: Tensor, lengths: Tensor, initial_state: State | None = None
) -> tuple[Tensor, State]:
    """inputs (B, T, F) batch-first, lengths (B,) >= 1 -> outputs (B, T, D*H) zero past each length,
    and the final state of every layer and direction, as `rnn` gives for the packed batch."""
    if not rnn.batch_first or getattr(rnn, "proj_size", 0):
        raise ValueError("segmented_rnn needs a batch_first RNN without proj_size.")
    if int(lengths.min()) < 1:
        raise ValueError(f"every sequence needs at least one step; got a length of {int(lengths.min())}.")
    batch, total_length = inputs.shape[:2]
    directions = 2 if rnn.bidirectional else 1
    order = torch.argsort(lengths.cpu(), descending=True, stable=True)  # (B,) longest first
    sorted_lengths = lengths.cpu()[order].tolist()
    order = order.to(inputs.device)
    layer_inputs = inputs.index_select(0, order)  # (B, T, F) longest first
    if initial_state is None:
        zeros = inputs.new_zeros(rnn.num_layers * directions, batch, rnn.hidden_size)  # (L*D, B, H)
        initial_state = (zeros,) * (2 if isinstance(rnn, nn.LSTM) else 1)
    else:
        initial_state = tuple(state.index_select(1, order) for state in initial_state)
    reverse_index = _reverse_index(sorted_lengths, total_length, inputs.device) if directions == 2 else None
    finals: list[State] = []
    weights_per_direction = len(rnn._flat_weights) // (rnn.num_layers * directions)
    for layer in range(rnn.num_layers):
        direction_outputs = []
        for direction in range(directions):
            slot = layer * directions + direction
            weights = rnn._flat_weights[slot * weights_per_direction : (slot + 1) * weights_per_direction]
            state = tuple(initial[slot : slot + 1] for initial in initial_state)  # (1, B, H) each
            steps = layer_inputs if direction == 0 else _flip_valid(layer_inputs, reverse_index)
            outputs, final = _one_direction(rnn, weights, steps, sorted_lengths, state)  # (B, T, H)
            direction_outputs.append(outputs if direction == 0 else _flip_valid(outputs, reverse_index))
            finals.append(final)
        layer_inputs = torch.cat(direction_outputs, dim=2) if directions == 2 else direction_outputs[0]  # (B, T, D*H)
        if layer < rnn.num_layers - 1 and rnn.dropout > 0:
            layer_inputs = F.dropout(layer_inputs, rnn.dropout, rnn.training)
    restore = torch.argsort(order)  # (B,) sorted position of each original row
    outputs = layer_inputs.index_select(0, restore)  # (B, T, D*H)
    state = tuple(
        torch.cat([final[part] for final in finals], dim=0).index_select(1, restore)  # (L*D, B, H)
        for part in range(len(finals[0]))
    )
    return outputs, state


def _one_direction(
    rnn: nn.GRU | nn.LSTM, weights: list[Tensor], inputs: Tensor, lengths: list[int], state: State
) -> tuple[Tensor, State]:
    """One layer and direction over inputs (B, T, F) sorted longest first: one fused call per segment
    between distinct lengths. Returns outputs (B, T, H) zero past each length and the state (1, B, H)
    each at every sequence's last step."""
    batch, total_length = inputs.shape[:2]
    segment_outputs: list[Tensor] = []  # (B, t_end - t_start, H) each
    ended: list[State] = []  # final states of the rows that stop at a boundary, last rows first
    start, active = 0, batch
    for end in sorted(set(lengths)):
        still_running = sum(1 for length in lengths if length >= end)  # a prefix: rows are sorted
        if still_running < active:  # rows [still_running, active) ended at `start`
            ended.append(tuple(part[:, still_running:active] for part in state))
            state = tuple(part[:, :still_running] for part in state)
            active = still_running
        outputs, state = _fused_call(rnn, weights, inputs[:active, start:end], state)  # (active, end - start, H)
        segment_outputs.append(F.pad(outputs, (0, 0, 0, 0, 0, batch - active)))
        start = end
    segment_outputs.append(inputs.new_zeros(batch, total_length - start, segment_outputs[0].shape[2]))
    ended.append(state)
    final = tuple(torch.cat([rows[part] for rows in reversed(ended)], dim=1) for part in range(len(state)))
    return torch.cat(segment_outputs, dim=1), final


def _fused_call(rnn: nn.GRU | nn.LSTM, weights: list[Tensor], inputs: Tensor, state: State) -> tuple[Tensor, State]:
    """One layer, one direction of `rnn`'s fused kernel over inputs (n, t, F) with no padding."""
    state = tuple(part.contiguous() for part in state)
    if isinstance(rnn, nn.LSTM):
        outputs, hidden, cell = _VF.lstm(inputs, state, weights, rnn.bias, 1, 0.0, rnn.training, False, True)
        return outputs, (hidden, cell)
    outputs, hidden = _VF.gru(inputs, state[0], weights, rnn.bias, 1, 0.0, rnn.training, False, True)
    return outputs, (hidden,)


def _reverse_index(lengths: list[int], total_length: int, device: torch.device) -> Tensor:
    """(B, T) time index that reverses each row's valid steps in place and leaves padding where it is."""
    steps = torch.arange(total_length)  # (T,)
    rows = torch.tensor(lengths)[:, None]  # (B, 1)
    return torch.where(steps < rows, rows - 1 - steps, steps).to(device)  # (B, T)


def _flip_valid(values: Tensor, reverse_index: Tensor) -> Tensor:
    """values (B, T, F) with each row's valid steps reversed (its own inverse)."""
    return values.gather(1, reverse_index.unsqueeze(-1).expand(-1, -1, values.shape[2]))
