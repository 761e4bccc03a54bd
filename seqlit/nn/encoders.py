"""`RNNEncoder`: seqlit's recurrent layer (see `seqlit.nn.protocol`) for any cell, never reading padding.

- `cell: gru | lstm`: `nn.GRU` / `nn.LSTM` on their fused kernels. With lengths, cuDNN runs the packed
  batch on a GPU; on CPU the batch runs as one oneDNN call per length segment (`seqlit.nn.segmented`),
  since a packed batch would fall back to aten's slow per-step loop. Without lengths: one fused call.
- `layer_norm: true`: layer-normalised LSTM/GRU cells (`seqlit.nn.layer_norm`), per length segment.
- `cell: my_module.MyCell` (or a class_path spec, or torch's `nn.GRUCell`...): your cell stepped over
  each length segment (`seqlit.nn.cell_layer`).

`weight_drop` is DropConnect on the recurrent matrices, one mask per forward (AWD-LSTM); the dropped
matrices go straight into the kernel, so the fused path is kept. Recurrent weights of the built-in cells
start orthogonal and the LSTM forget-gate bias at 1.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, _VF, nn

from seqlit.errors import SettingError
from seqlit.nn.cell_layer import BUILTIN_CELLS, CellSpec, cell_runner, cell_state_sizes, make_cell, resolve_cell
from seqlit.nn.device import to_device_async
from seqlit.nn.dropout import check_probability
from seqlit.nn.init import init_recurrent_
from seqlit.nn.layer_norm import LAYER_NORM_CLASSES
from seqlit.nn.protocol import EncoderOutput, State, zero_state
from seqlit.nn.segmented import SegmentRunner, fused_runner, run_segmented
from seqlit.parts import factory_class
from seqlit.validation import require_int_at_least

RNN_CLASSES: dict[str, type[nn.GRU] | type[nn.LSTM]] = {"gru": nn.GRU, "lstm": nn.LSTM}

__all__ = ["EncoderOutput", "RNNEncoder", "RNN_CLASSES"]


class RNNEncoder(nn.Module):
    """A stack of recurrent layers (any cell, optionally bidirectional) that never reads padding.

    Called as `encoder(inputs (B, T, I), lengths (B,) | None, state | None) -> EncoderOutput(outputs
    (B, T, D*H), state)`; a sequence's outputs and final state are the same alone or in a padded batch.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        cell: CellSpec = "gru",
        bidirectional: bool = False,
        dropout: float = 0.0,
        layer_norm: bool = False,
        weight_drop: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            require_int_at_least(f"RNNEncoder {name}", value, 1)
        check_probability("RNNEncoder dropout", dropout)
        check_probability("RNNEncoder weight_drop", weight_drop)
        resolved = resolve_cell(cell)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.weight_drop = weight_drop
        self.cell_name = resolved if isinstance(resolved, str) else _qualified_name(resolved)
        directions = 2 if bidirectional else 1
        if isinstance(resolved, str) and not layer_norm:
            self.kind = "fused"
            # nn.GRU/LSTM apply dropout between layers only; with one layer it would only warn.
            self.rnn = RNN_CLASSES[resolved](
                input_size, hidden_size, num_layers=num_layers, batch_first=True, bidirectional=bidirectional,
                dropout=dropout if num_layers > 1 else 0.0,
            )
            init_recurrent_(self.rnn)
            self._state_sizes = (hidden_size, hidden_size) if resolved == "lstm" else (hidden_size,)
            return
        if layer_norm and not isinstance(resolved, str):
            raise SettingError(
                f"layer_norm applies to the built-in cells {list(BUILTIN_CELLS)}; put layer norm inside your cell "
                f"{self.cell_name} instead."
            )
        if weight_drop > 0 and not isinstance(resolved, str):
            raise SettingError(
                f"weight_drop applies to the built-in cells {list(BUILTIN_CELLS)}; drop weights inside your cell "
                f"{self.cell_name} instead (or set weight_drop: 0)."
            )
        sizes = [input_size if layer == 0 else directions * hidden_size for layer in range(num_layers)]
        if isinstance(resolved, str):
            self.kind = "layer_norm"
            layer_class = LAYER_NORM_CLASSES[resolved]
            cells = [layer_class(size, hidden_size, num_layers=1, layer_norm=True) for size in sizes for _ in range(directions)]
        else:
            self.kind = "cell"
            cells = [make_cell(resolved, size, hidden_size) for size in sizes for _ in range(directions)]
        self.cells = nn.ModuleList(cells)  # layer-major: layer 0 forward, layer 0 backward, layer 1 forward, ...
        self._state_sizes = (
            (hidden_size,) * cells[0].state_parts if self.kind == "layer_norm" else cell_state_sizes(cells[0])
        )

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        return self.num_directions * self.hidden_size

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """Widths of the state parts: (H,) for a GRU, (H, H) for an LSTM, the cell's own for custom cells."""
        return self._state_sizes

    def forward(self, inputs: Tensor, lengths: Tensor | None = None, state: State | None = None) -> EncoderOutput:
        """inputs (B, T, I), lengths (B,) or None, state parts (L*D, B, S_k) or None -> EncoderOutput."""
        if state is None:
            state = zero_state(self, inputs.shape[0], inputs.device, inputs.dtype)
        else:
            state = tuple(state) if isinstance(state, (tuple, list)) else (state,)
        if self.kind == "fused":
            weights = self._flat_weights()
            if lengths is None:
                return self._fused_whole(inputs, state, weights)
            if inputs.device.type == "cuda":
                return self._fused_packed(inputs, lengths, state, weights)
            runners = self._fused_runners(weights)
        else:
            runners = self._cell_runners()
        outputs, final = run_segmented(
            runners, inputs, lengths, state, dropout=self.dropout if self.num_layers > 1 else 0.0,
            training=self.training,
        )
        return EncoderOutput(outputs, final)

    # ---- fused kernels ----------------------------------------------------------------------------
    def _flat_weights(self) -> list[Tensor]:
        """The RNN's weights in kernel order, recurrent matrices weight-dropped in training."""
        weights = list(self.rnn._flat_weights)
        if not self.training or self.weight_drop == 0.0:
            return weights
        names = self.rnn._flat_weights_names
        return [F.dropout(w, self.weight_drop, True) if n.startswith("weight_hh") else w for n, w in zip(names, weights)]

    def _fused_whole(self, inputs: Tensor, state: State, weights: list[Tensor]) -> EncoderOutput:
        """Every row runs all T steps: one fused call over the whole stack."""
        if self.weight_drop == 0.0 or not self.training:
            outputs, final = self.rnn(inputs, state if len(state) == 2 else state[0])  # (B, T, D*H)
            return EncoderOutput(outputs, final if isinstance(final, tuple) else (final,))
        dropout = self.rnn.dropout
        with _contiguity_warning_off():
            if len(state) == 2:
                outputs, hidden, cell = _VF.lstm(
                    inputs, state, weights, self.rnn.bias, self.num_layers, dropout, True, self.bidirectional, True
                )
                return EncoderOutput(outputs, (hidden, cell))
            outputs, hidden = _VF.gru(
                inputs, state[0], weights, self.rnn.bias, self.num_layers, dropout, True, self.bidirectional, True
            )
        return EncoderOutput(outputs, (hidden,))

    def _fused_packed(self, inputs: Tensor, lengths: Tensor, state: State, weights: list[Tensor]) -> EncoderOutput:
        """cuDNN over the packed batch: padded steps are skipped by the kernel itself.

        Packs by hand rather than with `pack_padded_sequence`: that helper copies its sort order to the GPU with a
        blocking copy and `pad_packed_sequence` copies indices back to the host, each a point where the host
        waits for the GPU. Here the order is computed on the host (lengths stay there) and sent asynchronously.
        """
        host_lengths = lengths.cpu()
        order = torch.argsort(host_lengths, descending=True, stable=True)  # (B,) longest first, on the host
        restore = torch.argsort(order)  # (B,)
        order_on_device = to_device_async(order, inputs.device)
        restore_on_device = to_device_async(restore, inputs.device)
        data, batch_sizes = _VF._pack_padded_sequence(inputs.index_select(0, order_on_device), host_lengths[order], True)
        hx = tuple(part.index_select(1, order_on_device) for part in state)
        dropout, training = self.rnn.dropout, self.training
        with _contiguity_warning_off():
            if len(hx) == 2:
                out, hidden, cell = _VF.lstm(
                    data, batch_sizes, hx, weights, self.rnn.bias, self.num_layers, dropout, training,
                    self.bidirectional,
                )
                final: State = (hidden, cell)
            else:
                out, hidden = _VF.gru(
                    data, batch_sizes, hx[0], weights, self.rnn.bias, self.num_layers, dropout, training,
                    self.bidirectional,
                )
                final = (hidden,)
        padded, _ = _VF._pad_packed_sequence(out, batch_sizes, True, 0.0, inputs.shape[1])  # (B, T, D*H) sorted
        outputs = padded.index_select(0, restore_on_device)  # (B, T, D*H)
        return EncoderOutput(outputs, tuple(part.index_select(1, restore_on_device) for part in final))

    # ---- per-segment runners ------------------------------------------------------------------------
    def _fused_runners(self, weights: list[Tensor]) -> list[list[SegmentRunner]]:
        """runners[layer][direction], each one fused kernel call with that slot's (maybe dropped) weights."""
        directions = self.num_directions
        per_slot = len(weights) // (self.num_layers * directions)
        kind = "lstm" if isinstance(self.rnn, nn.LSTM) else "gru"
        return [
            [
                fused_runner(kind, weights[slot * per_slot : (slot + 1) * per_slot], self.rnn.bias, self.training)
                for slot in range(layer * directions, (layer + 1) * directions)
            ]
            for layer in range(self.num_layers)
        ]

    def _cell_runners(self) -> list[list[SegmentRunner]]:
        """runners[layer][direction] stepping a layer-norm layer or a custom cell over each segment."""
        directions = self.num_directions
        make = self._layer_norm_runner if self.kind == "layer_norm" else cell_runner
        return [
            [make(self.cells[slot]) for slot in range(layer * directions, (layer + 1) * directions)]
            for layer in range(self.num_layers)
        ]

    def _layer_norm_runner(self, layer: nn.Module) -> SegmentRunner:
        weight_hh = layer.weight_hh_l0
        if self.training and self.weight_drop > 0:
            weight_hh = F.dropout(weight_hh, self.weight_drop, True)  # one mask per forward, as the fused path

        def run(inputs: Tensor, state: State) -> tuple[Tensor, State]:
            outputs, final = layer.run_layer(0, inputs.transpose(0, 1), state, weight_hh)  # (t, n, H)
            return outputs.transpose(0, 1), final

        return run

    def extra_repr(self) -> str:
        extra = f", weight_drop={self.weight_drop}" if self.weight_drop else ""
        return f"kind={self.kind}, cell={self.cell_name}{extra}"


class _contiguity_warning_off(warnings.catch_warnings):
    """Weight-dropped matrices are new tensors, so cuDNN notes the weights are not one contiguous chunk (and
    copies them, as AWD-LSTM does); that is expected here, not a user problem."""

    def __enter__(self) -> None:
        super().__enter__()
        warnings.filterwarnings("ignore", message=".*RNN module weights are not part of single contiguous.*")


def _qualified_name(factory: object) -> str:
    target = factory_class(factory) or factory
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__name__)}"
