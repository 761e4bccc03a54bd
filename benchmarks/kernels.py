"""Forward+backward throughput of the recurrent kernels seqlit builds on, in real (non-pad) tokens/s.

(a) `nn.LSTM` / `nn.GRU` on a long-tailed batch (seeded log-normal lengths clipped to [1, --max-length]):
    the whole padded (B, T_max, I) batch fed as is, against the packed paths that never read padding:
    `pack_padded_sequence(enforce_sorted=False)` -> RNN -> `pad_packed_sequence` (torch's packed kernel),
    and `RNNEncoder`'s path (`segmented_rnn` on CPU: one fused call per length segment; packing on GPU).
    All are charged only for real tokens, and the loss reads only real steps. Acceptance: the library's
    packed path >= padded. On CPU oneDNN's fused RNN (LSTM only; a CPU GRU is aten's loop of fused
    cells) takes padded input only, so torch's packed input goes through aten's slower per-step loop,
    whose backward also zero-fills a gradient of the whole packed input at every step; the length
    segments keep the whole-sequence kernels and skip the padded steps.
(b) The layer-norm LSTM (`LayerNormLSTM(layer_norm=True)`) against the fused `nn.LSTM`, all sequences
    full length (B, T, I, H). Every implementation of the same layer is timed:
    - `library`: what `LayerNormLSTM` runs (time loop with a hand-written backward, `_LSTMRecurrence`);
    - `autograd loop`: the same cell as plain per-step torch ops differentiated by autograd (what the
      library ran before the hand-written backward);
    - `TorchScript`: `torch.jit.script` of that autograd loop (TorchScript is deprecated in torch 2.x;
      its warnings are silenced here only);
    - `torch.compile`: the autograd step compiled by inductor, loop in Python; the first call's time
      (compilation included) is printed separately and not counted in the throughput.
    Each variant's output is checked against the library's. Acceptance: the fastest >= 0.5x `nn.LSTM`.
    For information: `LayerNormLSTM(layer_norm=False)` vs `nn.LSTM`, `LayerNormGRU` vs `nn.GRU`.
(c) On a GPU only: fp32 against bf16 / fp16 autocast for `nn.LSTM` / `nn.GRU`.

Settings alternate inside each round (rotating the order), for `--rounds` rounds in one process, and
the tables show medians: machines are noisy, only ratios measured side by side mean anything. Each
part stops starting rounds once its share of `--budget-s` is spent (one round always runs), so the run
stays bounded on a busy machine; the rounds actually run are printed. Another busy process on a
2-core machine slows torch's 2-thread OpenMP kernels many times over (the layer-norm loop's small
kernels most): the load average is printed, and `--threads 1` gives steadier ratios then.

    python benchmarks/kernels.py [--rounds 5] [--threads N] [--no-compile] [--no-script]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlit.nn.cells import LayerNormGRU, LayerNormLSTM
from seqlit.nn.encoders import RNNEncoder

StateTuple = tuple[Tensor, Tensor]
LayerFn = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, float], tuple[Tensor, Tensor, Tensor]]


@dataclass
class Case:
    """One timed setting: `run()` does a forward and backward and returns the real tokens it covered."""

    name: str
    run: Callable[[], int]
    reference: str | None = None  # the case its ratio is taken against
    note: str = ""
    model: nn.Module | None = None  # the layer-norm LSTM variant it runs, for the output check
    warmup: int = 1  # untimed calls first (TorchScript's profiling executor optimises on the second)
    seconds: list[float] = field(default_factory=list)
    tokens: int = 0

    def tokens_per_second(self) -> float:
        return self.tokens / statistics.median(self.seconds) if self.seconds else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--budget-s", type=float, default=150.0, help="seconds for the measuring: 30%% for (a), 70%% for (b)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100, help="T of the full-length batch of part (b)")
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=200, help="longest sequence of part (a)'s batch")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    parser.add_argument("--no-script", action="store_true", help="skip the TorchScript variant")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {_load_average()}, cuda: {torch.cuda.is_available()}"
    )
    if _busy():
        print("warning: other processes are using the CPUs; expect slow, noisy figures (see --help)")
    print(
        f"B={args.batch}, I={args.input_size}, H={args.hidden_size}; rounds {args.rounds} "
        f"(budget {args.budget_s:.0f} s), medians; fwd+bwd of one batch per case per round\n"
    )
    _part_packing(args)
    _part_layer_norm(args)
    _part_autocast(args)
    print(f"\nload average at the end {_load_average()}; wall time {time.perf_counter() - started:.0f} s")


# ----------------------------------------------------------------------------- (a) padded vs packed


def _part_packing(args: argparse.Namespace) -> None:
    """Padded vs packed nn.LSTM / nn.GRU on a long-tailed batch."""
    generator = torch.Generator().manual_seed(args.seed)
    lengths = _long_tailed_lengths(args.batch, args.max_length, generator)  # (B,)
    inputs = torch.randn(args.batch, int(lengths.max()), args.input_size, generator=generator)  # (B, T, I)
    cases = []
    for cell in ("LSTM", "GRU"):
        torch.manual_seed(args.seed)
        encoder = RNNEncoder(args.input_size, args.hidden_size, cell=cell.lower())  # (the library's path)
        padded = f"nn.{cell} padded"
        cases.append(Case(padded, _padded_step(encoder.rnn, inputs, lengths)))
        cases.append(Case(f"nn.{cell} torch packed", _packed_step(encoder.rnn, inputs, lengths), reference=padded))
        library = f"RNNEncoder({cell.lower()}) {'packed' if torch.cuda.is_available() else 'length segments'}"
        cases.append(Case(library, _encoder_step(encoder, inputs, lengths), reference=padded))
    rounds = _measure(cases, args.rounds, args.budget_s * 0.3)
    real, grid = int(lengths.sum()), lengths.numel() * int(lengths.max())
    print(
        f"## (a) padded vs packed: long-tailed batch, lengths log-normal clipped to [1, {args.max_length}], "
        f"median {int(lengths.median())}, max {int(lengths.max())}, {lengths.unique().numel()} distinct; "
        f"{real} real of {grid} padded steps ({100 * (1 - real / grid):.0f}% padding); {rounds} rounds\n"
    )
    _print_table(cases, "ratio vs padded")
    for cell in ("LSTM", "GRU"):
        library = next(case for case in cases if case.name.startswith(f"RNNEncoder({cell.lower()})"))
        padded = _by_name(cases, f"nn.{cell} padded")
        verdict = "PASS" if library.tokens_per_second() >= padded.tokens_per_second() else "FAIL"
        print(f"acceptance {library.name} (the packed fused path) >= padded: {verdict}")
    if not torch.cuda.is_available():
        print("(CPU: padded input and the length segments run the whole-sequence kernels, torch's packed input "
              "aten's per-step loop; see the docstring)")
    print()


def _long_tailed_lengths(batch: int, max_length: int, generator: torch.Generator) -> Tensor:
    """(B,) lengths exp(N(3.5, 0.8)) clipped to [1, max_length], with one sequence at max_length (a
    long tail always shows up in a real batch of this size)."""
    lengths = torch.exp(torch.randn(batch, generator=generator) * 0.8 + 3.5).round().clamp(1, max_length).long()
    lengths[0] = max_length
    return lengths


def _padded_step(rnn: nn.Module, inputs: Tensor, lengths: Tensor) -> Callable[[], int]:
    """The whole padded (B, T, I) batch through the RNN; the loss reads real steps only."""
    mask = (torch.arange(inputs.shape[1]) < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)

    def step() -> int:
        outputs, _ = rnn(inputs)  # (B, T, H)
        (outputs * mask).sum().backward()
        return int(lengths.sum())

    return step


def _packed_step(rnn: nn.Module, inputs: Tensor, lengths: Tensor) -> Callable[[], int]:
    """pack (enforce_sorted=False) -> RNN -> pad_packed, as RNNEncoder does; padding is never read."""

    def step() -> int:
        packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
        packed_outputs, _ = rnn(packed)
        outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=inputs.shape[1])  # (B, T, H)
        outputs.sum().backward()
        return int(lengths.sum())

    return step


def _encoder_step(encoder: RNNEncoder, inputs: Tensor, lengths: Tensor) -> Callable[[], int]:
    """What the library runs for a variable-length batch; its outputs are zero on padding."""
    device_lengths = lengths.to(inputs.device)

    def step() -> int:
        encoder(inputs, device_lengths).outputs.sum().backward()  # outputs (B, T, H)
        return int(lengths.sum())

    return step


# ----------------------------------------------------------------------------- (b) layer-norm LSTM


def _part_layer_norm(args: argparse.Namespace) -> None:
    """The layer-norm LSTM's implementations vs the fused nn.LSTM, plus the explicit cells without
    layer norm and the layer-norm GRU for information."""
    sizes = (args.input_size, args.hidden_size)
    inputs = torch.randn(args.batch, args.steps, args.input_size, generator=torch.Generator().manual_seed(args.seed))
    torch.manual_seed(args.seed)
    fused_lstm, fused_gru = nn.LSTM(*sizes, batch_first=True), nn.GRU(*sizes, batch_first=True)
    layer_norm_lstm = LayerNormLSTM(*sizes, layer_norm=True)
    with torch.no_grad():  # non-trivial layer-norm parameters, so the output check means something
        for name, param in layer_norm_lstm.named_parameters():
            if "layer_norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    fused = "nn.LSTM (fused)"
    eager = _VariantLSTM(layer_norm_lstm, _autograd_loop)
    cases = [
        _full_case(fused, fused_lstm, inputs),
        _full_case("LayerNormLSTM, library (hand-written backward)", layer_norm_lstm, inputs, fused),
        _full_case("LayerNormLSTM, autograd loop, eager (previous library code)", eager, inputs, fused),
    ]
    if not args.no_script:
        name = "LayerNormLSTM, autograd loop, TorchScript"
        cases.append(_optional_case(name, _scripted_loop, layer_norm_lstm, inputs))
        cases[-1].warmup = 2
    if not args.no_compile:
        name = "LayerNormLSTM, autograd loop, torch.compile'd step"
        cases.append(_optional_case(name, _compiled_loop, layer_norm_lstm, inputs))
        _first_call(cases[-1], "first call (compiles)")
    cases += [
        _full_case("LayerNormLSTM(layer_norm=False)", LayerNormLSTM(*sizes, layer_norm=False), inputs, fused),
        _full_case("nn.GRU (fused)", fused_gru, inputs),
        _full_case("LayerNormGRU(layer_norm=True)", LayerNormGRU(*sizes), inputs, "nn.GRU (fused)"),
    ]
    notes = _check_outputs(layer_norm_lstm, inputs, cases)
    timed = [case for case in cases if not case.note.startswith("unavailable")]
    rounds = _measure(timed, args.rounds, args.budget_s * 0.7)
    print(f"## (b) layer-norm LSTM, all sequences full length (B={args.batch}, T={args.steps}); {rounds} rounds\n")
    _print_table(cases, "ratio vs fused")
    for note in notes:
        print(note)
    custom = [c for c in timed if c.name.startswith("LayerNormLSTM,")]
    best = max(custom, key=Case.tokens_per_second)
    ratio = best.tokens_per_second() / _by_name(cases, "nn.LSTM (fused)").tokens_per_second()
    verdict = "PASS" if ratio >= 0.5 else "FAIL"
    print(f"fastest layer-norm LSTM: {best.name} at {ratio:.2f}x nn.LSTM; acceptance >= 0.5x: {verdict}\n")


def _full_case(name: str, rnn: nn.Module, inputs: Tensor, reference: str | None = None) -> Case:
    """A case running `rnn` forward and backward on the full-length (B, T, I) batch."""

    def step() -> int:
        outputs, _ = rnn(inputs)  # (B, T, H)
        outputs.sum().backward()
        return inputs.shape[0] * inputs.shape[1]

    return Case(name, step, reference, model=rnn)


class _VariantLSTM(nn.Module):
    """The library's layer-norm LSTM (one layer, its parameters) with another implementation of the
    time loop: `loop(projected (T, B, 4H), h, c, W_hh^T, gain_hh, cell weight, cell bias, eps)`."""

    def __init__(self, lstm: LayerNormLSTM, loop: LayerFn) -> None:
        super().__init__()
        self.lstm = lstm
        self.loop = loop

    def forward(self, x: Tensor) -> tuple[Tensor, StateTuple]:
        """x (B, T, I) -> output (B, T, H), (h, c) each (1, B, H); zero initial state."""
        lstm = self.lstm
        inputs = x.transpose(0, 1)  # (T, B, I)
        norm_ih, norm_hh, norm_cell = lstm.layer_norm_ih[0], lstm.layer_norm_hh[0], lstm.layer_norm_cell[0]
        projected = norm_ih(F.linear(inputs, lstm.weight_ih_l0)) + (lstm.bias_ih_l0 + lstm.bias_hh_l0)  # (T, B, 4H)
        zeros = inputs.new_zeros(inputs.shape[1], lstm.hidden_size)  # (B, H)
        outputs, hidden, cell = self.loop(
            projected, zeros, zeros, lstm.weight_hh_l0.t(), norm_hh.weight, norm_cell.weight, norm_cell.bias,
            norm_hh.eps,
        )  # fmt: skip
        return outputs.transpose(0, 1), (hidden.unsqueeze(0), cell.unsqueeze(0))


def _autograd_step(
    projected: Tensor,
    hidden: Tensor,
    cell: Tensor,
    weight_hh_t: Tensor,
    gain_hh: Tensor,
    cell_weight: Tensor,
    cell_bias: Tensor,
    eps: float,
) -> tuple[Tensor, Tensor]:
    """One layer-norm LSTM step as plain torch ops, as the library ran it before its hand-written
    backward: projected (B, 4H) (LN_ih'd input part, biases included), hidden and cell (B, H) -> (h', c')."""
    batch, size = hidden.shape
    recurrent = (hidden @ weight_hh_t).view(batch, 4, size)  # (B, 4, H)
    gates = projected + F.layer_norm(recurrent, [size], None, None, eps).view(batch, 4 * size) * gain_hh  # (B, 4H)
    squashed = torch.sigmoid(gates)  # (B, 4H); the g block is replaced by its tanh below
    input_gate, forget_gate, output_gate = squashed[:, :size], squashed[:, size : 2 * size], squashed[:, 3 * size :]
    candidate = torch.tanh(gates[:, 2 * size : 3 * size])  # (B, H)
    cell = torch.addcmul(forget_gate * cell, input_gate, candidate)  # (B, H)
    hidden = output_gate * torch.tanh(F.layer_norm(cell, [size], cell_weight, cell_bias, eps))  # (B, H)
    return hidden, cell


def _autograd_loop(
    projected: Tensor,
    hidden: Tensor,
    cell: Tensor,
    weight_hh_t: Tensor,
    gain_hh: Tensor,
    cell_weight: Tensor,
    cell_bias: Tensor,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """projected (T, B, 4H) -> outputs (T, B, H), last h and c (B, H), differentiated by autograd.
    The steps come from `unbind` (one stack in the backward), not `projected[step]`, whose backward
    would zero-fill a whole (T, B, 4H) gradient per step."""
    outputs = []
    for step_projected in projected.unbind(0):  # (B, 4H)
        hidden, cell = _autograd_step(step_projected, hidden, cell, weight_hh_t, gain_hh, cell_weight, cell_bias, eps)
        outputs.append(hidden)
    return torch.stack(outputs), hidden, cell


def _scripted_loop() -> LayerFn:
    """`torch.jit.script` of the autograd loop, with TorchScript's deprecation warning silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* deprecated", category=DeprecationWarning)
        return torch.jit.script(_autograd_loop)


def _compiled_loop() -> LayerFn:
    """The autograd loop with its step compiled by `torch.compile` (shapes static: one graph)."""
    compiled_step = torch.compile(_autograd_step, dynamic=False)

    def loop(
        projected: Tensor,
        hidden: Tensor,
        cell: Tensor,
        weight_hh_t: Tensor,
        gain_hh: Tensor,
        cell_weight: Tensor,
        cell_bias: Tensor,
        eps: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        outputs = []
        for step_projected in projected.unbind(0):  # (B, 4H)
            hidden, cell = compiled_step(
                step_projected, hidden, cell, weight_hh_t, gain_hh, cell_weight, cell_bias, eps
            )  # (B, H) each
            outputs.append(hidden)
        return torch.stack(outputs), hidden, cell

    return loop


def _optional_case(name: str, build: Callable[[], LayerFn], lstm: LayerNormLSTM, inputs: Tensor) -> Case:
    """A variant that may not work on this machine (TorchScript gone, no C++ compiler for inductor):
    on failure it is listed as unavailable, with the reason, and not timed."""
    try:
        return _full_case(name, _VariantLSTM(lstm, build()), inputs, "nn.LSTM (fused)")
    except Exception as error:  # noqa: BLE001 - any failure means "not available here"
        return _unavailable(name, error)


def _first_call(case: Case, label: str) -> None:
    """Times a case's first call (compilation) into its note, or marks it unavailable if that fails."""
    if case.note.startswith("unavailable"):
        return
    try:
        case.note = f"{label} {_timed(case.run):.1f} s, not counted"
    except Exception as error:  # noqa: BLE001
        case.note = _unavailable(case.name, error).note


def _unavailable(name: str, error: Exception) -> Case:
    message = " ".join(str(error).split())[:100]
    return Case(name, lambda: 0, note=f"unavailable: {type(error).__name__}: {message}")


def _check_outputs(lstm: LayerNormLSTM, inputs: Tensor, cases: list[Case]) -> list[str]:
    """Max |output - library output| of every other variant of the layer-norm LSTM (same parameters)
    in float32, next to what float32 rounding alone gives over T steps (library float32 vs float64),
    and the autograd loop against the library in float64. Run with grad enabled, so a compiled
    variant reuses the graph it was timed with."""
    expected = lstm(inputs)[0].detach()  # (B, T, H)
    lstm64 = copy.deepcopy(lstm).double()
    expected64 = lstm64(inputs.double())[0].detach()  # (B, T, H)
    eager64 = _VariantLSTM(lstm64, _autograd_loop)(inputs.double())[0].detach()  # (B, T, H)
    notes = [
        f"output check, float64: autograd loop vs library max |diff| {_max_diff(eager64, expected64):.1e}",
        f"output check, float32 rounding alone (library float32 vs float64): {_max_diff(expected, expected64):.1e}",
    ]
    for case in cases:
        variant = case.model
        if not isinstance(variant, _VariantLSTM) or case.note.startswith("unavailable"):
            continue
        got = variant(inputs)[0].detach()  # (B, T, H)
        notes.append(f"output check, float32, {case.name} vs library: {_max_diff(got, expected):.1e}")
    return notes


def _max_diff(got: Tensor, expected: Tensor) -> float:
    return float((got.double() - expected.double()).abs().max())


# ----------------------------------------------------------------------------- (c) autocast on GPU


def _part_autocast(args: argparse.Namespace) -> None:
    """fp32 vs bf16 / fp16 autocast for nn.LSTM / nn.GRU, on a GPU only."""
    if not torch.cuda.is_available():
        print("## (c) fp32 vs bf16/fp16 autocast: skipped (no CUDA device; CPU autocast is not measured)")
        return
    device = torch.device("cuda")
    inputs = torch.randn(args.batch, args.steps, args.input_size, device=device)
    dtypes = [torch.float16] + ([torch.bfloat16] if torch.cuda.is_bf16_supported() else [])
    cases = []
    for cell, rnn_class in (("LSTM", nn.LSTM), ("GRU", nn.GRU)):
        rnn = rnn_class(args.input_size, args.hidden_size, batch_first=True).to(device)
        fp32 = f"nn.{cell} fp32"
        cases.append(Case(fp32, _cuda_step(rnn, inputs, None)))
        for dtype in dtypes:
            cases.append(Case(f"nn.{cell} {dtype} autocast", _cuda_step(rnn, inputs, dtype), reference=fp32))
    rounds = _measure(cases, args.rounds, args.budget_s * 0.3)
    device_name = torch.cuda.get_device_name()
    print(f"## (c) fp32 vs autocast on {device_name} (B={args.batch}, T={args.steps}); {rounds} rounds\n")
    _print_table(cases, "ratio vs fp32")


def _cuda_step(rnn: nn.Module, inputs: Tensor, dtype: torch.dtype | None) -> Callable[[], int]:
    def step() -> int:
        precision = torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with precision:
            outputs, _ = rnn(inputs)  # (B, T, H)
            loss = outputs.float().sum()
        loss.backward()
        torch.cuda.synchronize()
        return inputs.shape[0] * inputs.shape[1]

    return step


# ----------------------------------------------------------------------------- measuring and printing


def _measure(cases: list[Case], rounds: int, budget_s: float) -> int:
    """Warm-up calls, then rounds of one timed call per case, the order rotating each round; stops
    starting rounds once `budget_s` has passed since the warm-up began (one round at least).
    Returns the rounds run."""
    started = time.perf_counter()
    runnable = [case for case in cases if not case.note.startswith("unavailable")]
    for case in runnable:
        for _ in range(case.warmup):
            case.tokens = case.run()
    done = 0
    for index in range(rounds):
        if done and time.perf_counter() - started > budget_s:
            break
        shift = index % len(runnable)
        for case in runnable[shift:] + runnable[:shift]:
            case.seconds.append(_timed(case.run))
        done += 1
    return done


def _timed(run: Callable[[], int]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _print_table(cases: list[Case], ratio_header: str) -> None:
    print(f"| setting | tokens/s | median s | {ratio_header} | note |")
    print("|---|---:|---:|---:|---|")
    for case in cases:
        if case.note.startswith("unavailable"):
            print(f"| {case.name} | - | - | - | {case.note} |")
            continue
        speed = case.tokens_per_second()
        ratio = speed / _by_name(cases, case.reference).tokens_per_second() if case.reference else 1.0
        print(f"| {case.name} | {speed:,.0f} | {statistics.median(case.seconds):.3f} | {ratio:.2f} | {case.note} |")
    print()


def _by_name(cases: list[Case], name: str | None) -> Case:
    return next(case for case in cases if case.name == name)


def _busy() -> bool:
    """Whether the 1-minute load average says other processes hold more than half a CPU."""
    try:
        return os.getloadavg()[0] > 0.5
    except OSError:
        return False


def _load_average() -> str:
    try:
        return " ".join(f"{load:.2f}" for load in os.getloadavg())
    except OSError:
        return "n/a"


if __name__ == "__main__":
    main()
