"""`seqlit init --data my.csv --task classify|forecast`: reads a long-format file, finds its id, time, label (or
target) and feature columns, and writes the small config that trains on it (the rest comes from the shared base)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqlit.data.long_format import read_table
from seqlit.errors import DataError

TASKS = ("classify", "forecast")
DESCRIPTION = "Inspect a data file (columns, sequences, lengths, classes) and write the config that trains on it."

# Column names recognised without a flag, most specific first (compared in lower case).
_ID_NAMES = ("sequence_id", "sequence", "seq_id", "seq", "series_id", "series", "sample_id", "sample", "recording",
             "session", "entity", "id", "unique_id", "subject", "item_id", "item", "station", "sensor", "store")
_TIME_NAMES = ("time", "timestamp", "t", "step", "time_step", "timestep", "frame", "date", "datetime", "ds", "tick",
               "period", "hour", "day", "week", "month", "year")
_LABEL_NAMES = ("label", "class", "target", "y", "category", "activity")
_TARGET_NAMES = ("target", "value", "y", "sales", "demand", "load", "count")


@dataclass(frozen=True)
class DataSummary:
    """What `seqlit init` learned from a classification file."""

    path: str
    id_column: str
    time_column: str
    label_column: str
    feature_columns: list[str]
    n_sequences: int
    min_length: int
    max_length: int
    class_counts: dict[str, int]
    time_restarts: bool  # most sequences start at the same time stamp: no shared time axis

    @property
    def split(self) -> str:
        return "stratified" if self.time_restarts else "chronological"

    def describe(self) -> str:
        classes = ", ".join(f"{name} {count}" for name, count in self.class_counts.items())
        time = ("time restarts in every sequence" if self.time_restarts
                else "sequences share one time axis")
        return (f"{self.n_sequences} sequences ({self.id_column}), {len(self.class_counts)} classes ({classes}), "
                f"{len(self.feature_columns)} features, lengths {self.min_length}-{self.max_length} steps; {time}")


@dataclass(frozen=True)
class ForecastSummary:
    """What `seqlit init` learned from a forecasting panel (one row per entity and time step)."""

    path: str
    id_column: str
    time_column: str
    target_column: str
    covariate_columns: list[str]
    n_series: int
    min_length: int
    max_length: int
    horizon: int

    def describe(self) -> str:
        covariates = ", ".join(self.covariate_columns) or "none"
        return (f"{self.n_series} series ({self.id_column}), target {self.target_column!r}, covariates: {covariates}, "
                f"lengths {self.min_length}-{self.max_length} steps, horizon {self.horizon}")


def main(args: list[str]) -> None:
    """`seqlit init ...`: prints two lines on success; a bad file or flag is a `DataError` (the CLI's one line)."""
    options = _parser().parse_args(args)
    out = Path(options.out) if options.out else Path(Path(options.data).stem + ".yaml")
    if out.exists() and not options.force:
        raise DataError(f"{out} exists; pass --out with another name, or --force to overwrite it.")
    summary: DataSummary | ForecastSummary
    if options.task == "forecast":
        if options.horizon is None or options.horizon < 1:
            raise DataError("init: --task forecast needs --horizon N, the number of steps to forecast (N >= 1).")
        summary = inspect_forecasting(Path(options.data), horizon=options.horizon, id_column=options.id_column,
                                      time_column=options.time_column, target_column=options.target_column)
        text = forecasting_config(summary, out)
    else:
        summary = inspect_classification(Path(options.data), id_column=options.id_column,
                                         time_column=options.time_column, label_column=options.label_column)
        text = classification_config(summary, out)
    out.write_text(text, encoding="utf-8")
    print(f"seqlit: wrote {out}: {summary.describe()}.")
    print(f"seqlit: train with `seqlit fit --config {out}`")


def _read_with_columns(path: Path, given: dict[str, str | None]) -> tuple[Any, list[str]]:
    """The file as a frame and its column names; a column named by a flag (`--id_column` ...) must be one of them."""
    frame = read_table(path)
    columns = [str(c) for c in frame.columns]
    for flag, column in given.items():
        if column is not None and column not in columns:
            raise DataError(f"{path}: no column {column!r} ({flag}); the file has {columns}.")
    return frame, columns


def inspect_classification(path: Path, *, id_column: str | None = None, time_column: str | None = None,
                           label_column: str | None = None) -> DataSummary:
    """Finds the columns of a long-format classification file and summarises its sequences."""
    frame, columns = _read_with_columns(
        path, {"--id_column": id_column, "--time_column": time_column, "--label_column": label_column}
    )
    time = _pick(columns, time_column, _TIME_NAMES, "time", "--time_column", path)
    sequence = _pick([c for c in columns if c != time], id_column, _ID_NAMES, "sequence id", "--id_column", path)
    others = [c for c in columns if c not in (time, sequence)]
    label = (_pick(others, label_column, _LABEL_NAMES, "label", "--label_column", path) if label_column
             else _find_label(frame, others, sequence, path))
    features = [c for c in columns if c not in (time, sequence, label) and _is_numeric(frame[c])]
    if not features:
        raise DataError(f"{path}: no numeric feature columns besides {sequence!r}, {time!r} and {label!r}; the file "
                        f"has {columns}.")
    groups = frame.groupby(sequence, sort=False)
    labels_per_sequence = groups[label].nunique(dropna=False)
    if (labels_per_sequence > 1).any():
        example = str(labels_per_sequence.index[np.flatnonzero(labels_per_sequence.to_numpy() > 1)[0]])
        raise DataError(f"{path}: sequence {example!r} has more than one {label!r} value; a sequence has one label. "
                        f"If {sequence!r} is not the sequence id, pass --id_column.")
    lengths = groups.size().to_numpy()
    starts = groups[time].min().to_numpy()
    _, start_counts = np.unique(starts.astype(str), return_counts=True)
    counts = groups[label].first().astype(str).value_counts()
    class_counts = {name: int(counts[name]) for name in _sorted_names(list(counts.index))}
    return DataSummary(
        path=str(path), id_column=sequence, time_column=time, label_column=label, feature_columns=features,
        n_sequences=len(lengths), min_length=int(lengths.min()), max_length=int(lengths.max()),
        class_counts=class_counts, time_restarts=bool(start_counts.max() * 2 > len(starts)),
    )


def inspect_forecasting(path: Path, *, horizon: int, id_column: str | None = None, time_column: str | None = None,
                        target_column: str | None = None) -> ForecastSummary:
    """Finds the columns of a long-format forecasting panel and summarises its series."""
    frame, columns = _read_with_columns(
        path, {"--id_column": id_column, "--time_column": time_column, "--target_column": target_column}
    )
    time = _pick(columns, time_column, _TIME_NAMES, "time", "--time_column", path)
    series = _pick([c for c in columns if c != time], id_column, _ID_NAMES, "series id", "--id_column", path)
    numeric = [c for c in columns if c not in (time, series) and _is_numeric(frame[c])]
    target = _pick(numeric, target_column, _TARGET_NAMES, "target", "--target_column", path)
    lengths = frame.groupby(series, sort=False).size().to_numpy()
    return ForecastSummary(
        path=str(path), id_column=series, time_column=time, target_column=target,
        covariate_columns=[c for c in numeric if c != target], n_series=len(lengths),
        min_length=int(lengths.min()), max_length=int(lengths.max()), horizon=horizon,
    )


def _header(command: str, description: str, out: Path) -> str:
    """The comment block at the top of a written config: how it was made and how to train it."""
    return (
        f"# Written by `{command}`:\n# {description}.\n"
        f"# Train: seqlit fit --config {out}    (trainer, checkpoints, early stopping and loggers come from seqlit's\n"
        f"# shared base; `seqlit fit --config {out} --print_config` shows everything)\n"
    )


def forecasting_config(summary: ForecastSummary, out: Path) -> str:
    """The config `seqlit init --task forecast` writes: every series split in time, the last horizon as test."""
    covariates = ", ".join(summary.covariate_columns)
    command = f"seqlit init --data {summary.path} --task forecast --horizon {summary.horizon} --out {out}"
    return _header(command, summary.describe(), out) + f"""\
model: seqlit.tasks.Forecaster
data:
  class_path: seqlit.data.datamodules.ForecastingDataModule
  init_args:
    dataset: long_format
    path: {summary.path}
    entity_column: {summary.id_column}
    time_column: {summary.time_column}
    target_column: {summary.target_column}
    covariate_columns: [{covariates}]
    horizon: {summary.horizon}
    split: chronological    # every series: its last horizon is test, the one before validation
"""


def classification_config(summary: DataSummary, out: Path) -> str:
    """The config `seqlit init` writes: the data section and the task; the rest comes from the shared base."""
    split_reason = ("time restarts in every sequence: hold out whole sequences, per class" if summary.time_restarts
                    else "sequences share one time axis: validation and test come after training")
    features = ", ".join(summary.feature_columns)
    command = f"seqlit init --data {summary.path} --task classify --out {out}"
    return _header(command, summary.describe(), out) + f"""\
model: seqlit.tasks.SequenceClassifier
data:
  class_path: seqlit.data.datamodules.SequenceClassificationDataModule
  init_args:
    dataset: long_format
    train_path: {summary.path}
    entity_column: {summary.id_column}
    time_column: {summary.time_column}
    label_column: {summary.label_column}
    feature_columns: [{features}]
    split: {summary.split}    # {split_reason}
"""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are `DataError`s, so `seqlit init` fails with the CLI's one `seqlit: error:` line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise DataError(f"init: {message} (see `seqlit init --help`)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="seqlit init", description=DESCRIPTION)
    parser.add_argument("--data", required=True, help="the training file (CSV, TSV or Parquet; one row per time step)")
    parser.add_argument("--task", required=True, choices=TASKS,
                        help="what to learn: classify whole sequences, or forecast each series --horizon steps ahead")
    parser.add_argument("--horizon", type=int, default=None, help="steps to forecast (--task forecast)")
    parser.add_argument("--out", default=None, help="config file to write (default: <data file name>.yaml here)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--id_column", default=None, help="column whose value tells sequences apart (default: found)")
    parser.add_argument("--time_column", default=None, help="column that orders the steps (default: found)")
    parser.add_argument("--label_column", default=None, help="column with each sequence's class (default: found)")
    parser.add_argument("--target_column", default=None, help="column to forecast (--task forecast; default: found)")
    return parser


def _pick(columns: list[str], given: str | None, names: tuple[str, ...], what: str, flag: str, path: Path) -> str:
    if given is not None:
        return given
    by_lower = {c.lower(): c for c in columns}
    for name in names:
        if name in by_lower:
            return by_lower[name]
    raise DataError(f"{path}: could not tell which column is the {what} (none of {columns} is named like "
                    f"{list(names[:4])}); pass {flag} NAME.")


def _find_label(frame, columns: list[str], sequence: str, path: Path) -> str:  # frame: pandas.DataFrame
    """The label column: one value per sequence, named like a label (`label`, `class`, ...), else the only text
    column with one value per sequence."""
    constant = [c for c in columns if bool((frame.groupby(sequence, sort=False)[c].nunique(dropna=False) == 1).all())]
    by_lower = {c.lower(): c for c in constant}
    named = sorted((by_lower[name] for name in _LABEL_NAMES if name in by_lower),
                   key=lambda c: _is_numeric(frame[c]))  # text labels first: a numeric `y` may be a feature
    text = [c for c in constant if not _is_numeric(frame[c])]
    if named or len(text) == 1:
        return (named or text)[0]
    raise DataError(f"{path}: could not tell which column is the label (a column with one value per sequence, "
                    f"named like {list(_LABEL_NAMES[:3])}; the file has {list(frame.columns)}); pass --label_column "
                    "NAME.")


def _is_numeric(series: object) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series)) and not pd.api.types.is_bool_dtype(series)


def _sorted_names(names: list[str]) -> list[str]:
    """Numerically when every name is a number ('2' before '10'), as the data module orders classes."""
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)
