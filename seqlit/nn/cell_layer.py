"""User-defined recurrent cells: resolve the YAML's `cell`, adapt torch's own cells, step a cell over a segment.

A cell named in YAML (`cell: my_cells.IndRNNCell`, or `{class_path: ..., init_args: {...}}`) is built once
per layer and direction as `factory(input_size, hidden_size)`; `seqlit.nn.segmented` then calls
`cell_runner(cell)` on each length segment, so a custom cell never sees padding (the generic loop).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Union

import torch
from torch import Tensor, nn

from seqlit.errors import SettingError
from seqlit.nn.segmented import SegmentRunner, State

CellFactory = Callable[[int, int], nn.Module]
# "gru" | "lstm" (fused kernels), a dotted import path of a cell class, or a factory (class or partial)
CellSpec = Union[str, CellFactory]
BUILTIN_CELLS: tuple[str, ...] = ("gru", "lstm")

__all__ = [
    "BUILTIN_CELLS", "CellFactory", "CellSpec", "TorchCell", "cell_runner", "cell_state_sizes", "make_cell", "resolve_cell",
]


def resolve_cell(cell: CellSpec | dict[str, Any]) -> str | CellFactory:
    """A built-in name as it is, or the factory a dotted path / class_path spec names."""
    if isinstance(cell, str):
        if cell in BUILTIN_CELLS:
            return cell
        if "." not in cell:
            raise SettingError(
                f"unknown cell {cell!r}; use one of {list(BUILTIN_CELLS)} or the import path of a cell class "
                "(e.g. my_cells.IndRNNCell; see seqlit.nn.protocol for what a cell must provide)."
            )
        return _import(cell)
    if isinstance(cell, dict):
        if "class_path" not in cell:
            raise SettingError(f"a cell spec needs a class_path, got {cell!r}.")
        factory = _import(cell["class_path"])
        init_args = dict(cell.get("init_args") or {})
        return lambda input_size, hidden_size: factory(input_size, hidden_size, **init_args)
    if callable(cell):
        return cell
    raise SettingError(f"cell must be a name, an import path or a cell class, got {type(cell).__name__}.")


def make_cell(factory: CellFactory, input_size: int, hidden_size: int) -> nn.Module:
    """Builds one cell and checks it against the cell protocol; torch's own cells are adapted."""
    cell = factory(input_size, hidden_size)
    if isinstance(cell, nn.RNNCellBase):
        cell = TorchCell(cell)
    if not isinstance(cell, nn.Module) or not hasattr(cell, "hidden_size"):
        raise TypeError(
            f"the cell factory {_name(factory)} built {type(cell).__name__}, which is not an nn.Module with a "
            "hidden_size; a cell is built as Cell(input_size, hidden_size) and called as "
            "cell(x (B, I), state tuple) -> (h (B, H), state) (see seqlit.nn.protocol)."
        )
    if int(cell.hidden_size) != hidden_size:
        raise ValueError(
            f"{type(cell).__name__} was asked for hidden_size={hidden_size} but reports {cell.hidden_size}; its "
            "output must have the hidden size it is built with."
        )
    return cell


def cell_state_sizes(cell: nn.Module) -> tuple[int, ...]:
    """Widths of the cell's state parts: its `state_sizes`, else one part of `hidden_size`."""
    return tuple(int(size) for size in getattr(cell, "state_sizes", (cell.hidden_size,)))


def cell_runner(cell: nn.Module) -> SegmentRunner:
    """Steps `cell` over every time step of a segment whose rows all run to its end."""

    def run(inputs: Tensor, state: State) -> tuple[Tensor, State]:
        outputs = []
        for step in inputs.unbind(1):  # (n, I)
            hidden, state = cell(step, state)  # (n, H)
            outputs.append(hidden)
        return torch.stack(outputs, dim=1), tuple(state)  # (n, t, H)

    return run


class TorchCell(nn.Module):
    """`nn.RNNCell` / `nn.GRUCell` / `nn.LSTMCell` under the cell protocol (state as a tuple)."""

    def __init__(self, cell: nn.RNNCellBase) -> None:
        super().__init__()
        self.cell = cell
        self.hidden_size = cell.hidden_size
        self.state_sizes = (cell.hidden_size, cell.hidden_size) if isinstance(cell, nn.LSTMCell) else (cell.hidden_size,)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """x (B, I), state parts (B, H) -> h (B, H), new state."""
        if isinstance(self.cell, nn.LSTMCell):
            hidden, cell = self.cell(x, (state[0], state[1]))
            return hidden, (hidden, cell)
        hidden = self.cell(x, state[0])
        return hidden, (hidden,)


def _import(path: str) -> Any:
    module_name, _, attribute = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise SettingError(
            f"cannot import the cell {path!r} ({error}); check the module is on the Python path (run from its "
            "folder or install it) and the class name is spelled right."
        ) from None


def _name(factory: Any) -> str:
    return getattr(factory, "__qualname__", None) or type(factory).__name__
