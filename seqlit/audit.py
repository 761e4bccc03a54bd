"""`seqlit audit --config X.yaml`: what each split holds, and proof that nothing leaks, before training.

Instantiates the config (no training, no model forward), runs the data module's setup, which audits its
split on every run (time order per entity, held-out entities, scaler causality for forecasting), and
prints per split: items and tokens/steps, the time span where the data has time (forecasting: the
window origins), entities and how many appear in more than one split, then the padding of one epoch of
the training loader next to random batching (as `seqlit doctor` measures it) and `audit: passed`.
A leak or unusable data prints one `seqlit: error:` line and exits with 1. Overrides
(`--data.init_args.split entity`) work as they do for `seqlit fit`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from seqlit.data.datamodules.classification import SequenceClassificationDataModule
from seqlit.data.datamodules.forecasting import ForecastingDataModule
from seqlit.data.datamodules.language_model import LanguageModelDataModule
from seqlit.data.datamodules.seq2seq import Seq2SeqDataModule
from seqlit.data.split_audit import split_summary
from seqlit.data.splits import SPLIT_NAMES, LeakageError, Split
from seqlit.doctor import Diagnosis, padding
from seqlit.errors import SeqlitError


@dataclass
class AuditReport:
    """Per-split sizes and spans, entity overlap, padding, and what the data module's audit proved."""

    title: str
    columns: list[str]  # table columns after "split"
    rows: dict[str, list[str]] = field(default_factory=dict)  # split -> one cell per column
    overlap: dict[str, int] | None = None  # "train & val" -> entities in both; None: no entities
    overlap_rule: str = ""
    checks: str = ""
    facts: list[tuple[str, str]] = field(default_factory=list)

    @property
    def leaked_entities(self) -> int:
        """Entities in two splits where the split rule forbids it (the data module's audit raises first)."""
        return sum(self.overlap.values()) if self.overlap and self.overlap_rule.startswith("must be 0") else 0

    def render(self) -> str:
        header = ["split", *self.columns]
        table = [header, *([name, *cells] for name, cells in self.rows.items())]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = [f"seqlit audit: {self.title}", ""]
        lines += ["  " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                                   enumerate(zip(row, widths))).rstrip() for row in table]
        lines.append("")
        facts = list(self.facts)
        if self.overlap is not None:
            pairs = ", ".join(f"{pair} {count}" for pair, count in self.overlap.items())
            facts.insert(0, ("entity overlap", f"{pairs} ({self.overlap_rule})"))
        width = max((len(name) for name, _ in facts), default=0)
        lines += [f"  {name.ljust(width)}  {value}" for name, value in facts]
        lines += ["", f"audit: passed ({self.checks})"]
        return "\n".join(lines)


def audit(datamodule: Any) -> AuditReport:
    """Sets the data module up (its audits run) and summarises its splits; no model, no training."""
    datamodule.setup("fit")
    datamodule.setup("test")
    summarise = next((fn for kind, fn in _SUMMARIES if isinstance(datamodule, kind)), _summarise_other)
    report = summarise(datamodule)
    diagnosis = Diagnosis()
    padding(datamodule, diagnosis)
    report.facts += diagnosis.facts
    if report.leaked_entities:  # the data module's own audit should have refused this already
        raise LeakageError(f"{report.leaked_entities} entities appear in more than one split although "
                          f"{report.overlap_rule}: {report.overlap}.")
    return report


def run_audit(datamodule: Any) -> int:
    """`seqlit audit`: prints the report and returns 0, or prints one `seqlit: error: audit failed` line and
    returns 1 (a leak or unusable data), so the command can gate a CI job."""
    try:
        report = audit(datamodule)
    except SeqlitError as error:  # LeakageError, EmptySplitError, DataError: a failed audit or bad data
        print(f"seqlit: error: audit failed: {_one_line(error)}", file=sys.stderr)
        return 1
    except FileNotFoundError as error:
        print(f"seqlit: error: audit failed: file not found: {error.filename or error}", file=sys.stderr)
        return 1
    print(report.render())
    return 0


# ---- one summary per data module family -----------------------------------------------------------------


def _summarise_classification(datamodule: SequenceClassificationDataModule) -> AuditReport:
    records = {name: datamodule.datasets[name].records for name in SPLIT_NAMES}
    has_time = datamodule.dataset == "long_format"  # JapaneseVowels' "times" are just item positions
    positions = _positions([len(records[name]) for name in SPLIT_NAMES])
    entities = np.concatenate([records[name].entities for name in SPLIT_NAMES])
    summary = split_summary(
        positions, entities=entities,
        start_times=np.concatenate([records[name].start_times for name in SPLIT_NAMES]) if has_time else None,
        end_times=np.concatenate([records[name].end_times for name in SPLIT_NAMES]) if has_time else None,
    )
    mode = datamodule.split_mode
    test_source = "a separate test file" if datamodule.test_path else (
        "the official test split" if datamodule.dataset == "japanese_vowels" else "carved from the training file")
    report = AuditReport(
        title=f"{type(datamodule).__name__} ({datamodule.dataset}, {mode} split; test: {test_source})",
        columns=["items", "steps", "entities", *(["time span"] if has_time else [])],
    )
    for name in SPLIT_NAMES:
        row = summary[name]
        cells = [_count(row["n_items"]), _count(int(records[name].lengths.sum())), _count(row["n_entities"])]
        if has_time:
            cells.append(_span(row["min_start"], row["max_end"]))
        report.rows[name] = cells
    report.overlap = _overlap({name: records[name].entities for name in SPLIT_NAMES})
    report.overlap_rule, report.checks = {
        "entity": ("must be 0: entity split", "no entity in two splits; item positions disjoint"),
        "chronological": ("allowed: per entity, val and test come later in time",
                          "per entity, val starts after train ends and test after both; item positions disjoint"),
        "stratified": ("allowed: stratified by class, entities may repeat; use split: entity to hold them out",
                       "item positions disjoint; class proportions kept"),
    }[mode]
    return report


def _summarise_seq2seq(datamodule: Seq2SeqDataModule) -> AuditReport:
    datasets = {name: datamodule.datasets[name] for name in SPLIT_NAMES}
    report = AuditReport(
        title=f"{type(datamodule).__name__} ({datamodule.dataset}, split by headword, seed {datamodule.split_seed})",
        columns=["items", "headwords", "source chars", "target phonemes"],
    )
    for name, dataset in datasets.items():
        assert dataset.targets is not None, "train/val/test items have targets"
        report.rows[name] = [
            _count(len(dataset)), _count(len(np.unique(dataset.item_ids))), _count(int(dataset.lengths.sum())),
            _count(sum(len(target) for target in dataset.targets)),
        ]
    report.overlap = _overlap({name: dataset.item_ids for name, dataset in datasets.items()})
    report.overlap_rule = "must be 0: headwords (with all their pronunciations) are held out whole"
    report.checks = "no headword in two splits, checked over every (word, pronunciation) item"
    report.facts.append(("items", "train: one per (word, pronunciation); val/test: one per headword, all "
                                  "pronunciations as references"))
    return report


def _summarise_language_model(datamodule: LanguageModelDataModule) -> AuditReport:
    lines = datamodule.audit()  # the line split, audited chronologically (by character position)
    report = AuditReport(
        title=f"{type(datamodule).__name__} ({datamodule.corpus} corpus, {datamodule.tokenizer_kind} tokenizer, "
              f"{len(datamodule.tokenizer):,} tokens fitted on train)",
        columns=["lines", "characters", "tokens", "character span"],
    )
    for name in SPLIT_NAMES:
        span = datamodule.spans[name]
        report.rows[name] = [
            _count(len(getattr(lines, name))), _count(span.end - span.start),
            _count(int(datamodule.token_ids(name).numel())), f"{span.start:,}..{span.end:,}",
        ]
    report.checks = "every val line starts after every train line ends, every test line after both"
    report.facts.append(("entities", "none: one text, split by position (train first, then val, then test)"))
    return report


def _summarise_forecasting(datamodule: ForecastingDataModule) -> AuditReport:
    split, panel = datamodule.split, datamodule.panel
    report = AuditReport(
        title=f"{type(datamodule).__name__} ({datamodule.dataset}, {datamodule.split_mode} split, "
              f"fold {datamodule.fold}, horizon {datamodule.horizon}, {len(panel)} series)",
        columns=["windows", "series", "context steps", "target steps", "origins", "last target"],
    )
    for name in SPLIT_NAMES:
        windows = split.stage(name)
        series, cuts, ends = windows.series.tolist(), windows.cut.tolist(), windows.target_end.tolist()
        origins = [panel.times[s][c] for s, c in zip(series, cuts)]
        last_targets = [panel.times[s][e - 1] for s, e in zip(series, ends)]
        report.rows[name] = [
            _count(len(windows)), _count(len(set(series))), _count(int(windows.context_lengths.sum())),
            _count(int((windows.target_end - windows.cut).sum())),
            _span(min(origins, default=None), max(origins, default=None)),
            _span(max(last_targets, default=None), None),
        ]
    report.overlap = _overlap({name: panel.entities[split.stage(name).series] for name in SPLIT_NAMES})
    if datamodule.split_mode == "entity":
        report.overlap_rule = "must be 0: entity split"
        report.checks = "no series in two splits; scalers fitted before every evaluated step"
    else:
        report.overlap_rule = "allowed: every series is split in time"
        report.checks = ("per series, val targets after all train targets and test after val; scalers see no "
                         "evaluated step (planted-future check)")
    skipped = {name: len(entities) for name, entities in split.skipped.items() if entities}
    if skipped:
        report.facts.append(("skipped", ", ".join(f"{count} series too short for a {name} window"
                                                  for name, count in skipped.items())))
    return report


def _summarise_other(datamodule: Any) -> AuditReport:
    """A data module seqlit does not know: its own setup ran; sizes where it exposes datasets."""
    datasets = getattr(datamodule, "datasets", {}) or {}
    report = AuditReport(title=f"{type(datamodule).__name__} (no split details known to seqlit)", columns=["items"])
    for name in SPLIT_NAMES:
        if name in datasets:
            report.rows[name] = [_count(len(datasets[name]))]
    report.checks = "the data module's own setup checks"
    return report


_SUMMARIES: Sequence[tuple[type, Callable[[Any], AuditReport]]] = (
    (SequenceClassificationDataModule, _summarise_classification),
    (Seq2SeqDataModule, _summarise_seq2seq),
    (LanguageModelDataModule, _summarise_language_model),
    (ForecastingDataModule, _summarise_forecasting),
)


# ---- helpers ----------------------------------------------------------------------------------------------


def _positions(sizes: list[int]) -> Split:
    """train / val / test as consecutive position ranges of the concatenated splits."""
    bounds = np.cumsum([0, *sizes])
    return Split(*(np.arange(bounds[i], bounds[i + 1]) for i in range(len(SPLIT_NAMES))))


def _overlap(entities: dict[str, np.ndarray]) -> dict[str, int]:
    """Entities present in both splits of each pair."""
    unique = {name: set(np.asarray(values).tolist()) for name, values in entities.items()}
    return {f"{a} & {b}": len(unique[a] & unique[b]) for a, b in combinations(SPLIT_NAMES, 2)}


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _span(first: Any, last: Any) -> str:
    if first is None:
        return "-"
    first_text = _time(first)
    return first_text if last is None or _time(last) == first_text else f"{first_text}..{_time(last)}"


def _time(value: Any) -> str:
    if isinstance(value, np.datetime64):
        text = str(value.astype("datetime64[s]"))
        return text.removesuffix("T00:00:00")
    return str(value.item() if isinstance(value, np.generic) else value)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
