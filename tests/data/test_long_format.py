"""The one long-format reader (`seqlit.data.long_format`), directly and through both of its callers:
classification files (`load_long_format`) and forecasting panels (`load_panel` / `panel_from_frame`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqlit.data.long_format import read_long_format
from seqlit.data.sources import load_long_format, load_panel, panel_from_frame
from seqlit.errors import DataError

KEYS = "entity_column / time_column"


def _frame() -> pd.DataFrame:
    """Two entities, rows out of time order, a numeric feature, a text column and a label."""
    return pd.DataFrame({
        "entity": ["b", "a", "b", "a", "a"],
        "time": [1, 2, 0, 0, 1],
        "x": [11.0, 2.0, 10.0, 0.0, 1.0],
        "note": ["n", "n", "n", "n", "n"],
        "label": ["q", "p", "q", "p", "p"],
    })


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",")
    return path


# ---- the reader itself -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.parquet"])
def test_reads_every_format_and_sorts_by_group_and_time(tmp_path: Path, name: str) -> None:
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    table = read_long_format(_write(_frame(), tmp_path / name), entity_column="entity", time_column="time",
                             reserved=["label"], column_options=KEYS)
    assert table.value_columns == ["x"]  # inferred: numeric, not entity/time/label; text columns skipped
    assert table.frame["entity"].tolist() == ["a", "a", "a", "b", "b"]
    assert table.frame["time"].tolist() == [0, 1, 2, 0, 1]
    groups = [(key, rows["x"].tolist()) for key, rows in table.groups()]
    assert groups == [("a", [0.0, 1.0, 2.0]), ("b", [10.0, 11.0])]


def test_a_data_frame_is_read_the_same_way() -> None:
    table = read_long_format(_frame(), entity_column="entity", time_column="time", value_columns=["x"],
                             column_options=KEYS, name="in memory")
    assert table.source == "in memory" and table.frame["time"].tolist() == [0, 1, 2, 0, 1]


def test_missing_columns_are_named_with_the_columns_found() -> None:
    with pytest.raises(DataError, match=r"t: missing column\(s\) \['label2', 'y'\]; the file has \['entity', 'time', "
                                        r"'x', 'note', 'label'\]\. Rename the columns or set A / B in the data config"):
        read_long_format(_frame(), entity_column="entity", time_column="time", required=["label2", "y"],
                         column_options="A / B", name="t")


def test_value_columns_must_be_numeric_and_present() -> None:
    with pytest.raises(DataError, match=r"feature column\(s\) \['note'\] are not numeric; encode them as numbers or "
                                        r"remove them from data\.feature_columns"):
        read_long_format(_frame(), entity_column="entity", time_column="time", value_columns=["x", "note"],
                         column_options=KEYS, value_option="data.feature_columns")
    with pytest.raises(DataError, match=r"feature column\(s\) \['z'\] not in the file"):
        read_long_format(_frame(), entity_column="entity", time_column="time", value_columns=["z"],
                         column_options=KEYS)


def test_numbers_spoiled_by_text_are_named_not_dropped() -> None:
    spoiled = _frame().assign(x=["1", "2", "?", "4", "5"])
    with pytest.raises(DataError, match=r"column 'x' is mostly numbers but 1 cell\(s\) are text \(first '\?' in row 4\)"
                                        r", so it would be left out of the features"):
        read_long_format(spoiled, entity_column="entity", time_column="time", reserved=["label"], column_options=KEYS)
    with pytest.raises(DataError, match=r"column 'x' is mostly numbers.*so it is not numeric"):
        read_long_format(spoiled, entity_column="entity", time_column="time", value_columns=["x"],
                         column_options=KEYS)


def test_nan_policy_is_the_callers() -> None:
    holes = _frame().assign(x=[11.0, np.nan, 10.0, 0.0, 1.0])
    with pytest.raises(DataError, match=r"1 row\(s\) have NaN/Inf features; first at entity 'a', time 2, column 'x'"):
        read_long_format(holes, entity_column="entity", time_column="time", value_columns=["x"], column_options=KEYS)
    table = read_long_format(holes, entity_column="entity", time_column="time", value_columns=["x"], finite=False,
                             column_options=KEYS)
    assert table.frame["x"].isna().sum() == 1  # left for the caller's policy


def test_repeated_time_stamps_are_refused_per_group() -> None:
    repeated = pd.concat([_frame(), _frame().iloc[[1]]])
    table = read_long_format(repeated, entity_column="entity", time_column="time", value_columns=["x"],
                             column_options=KEYS, group_noun="sequence", duplicate_hint=" or set sequence_column")
    with pytest.raises(DataError, match=r"sequence 'a' has repeated time stamps \(2 occurs more than once\); each "
                                        r"\(sequence, time\) pair must be unique\. Aggregate the duplicates first or "
                                        r"set sequence_column\."):
        list(table.groups())


# ---- both callers go through it, with the same checks and messages ----------------------------------------------


def test_classification_and_forecasting_share_the_missing_column_message(tmp_path: Path) -> None:
    path = _write(_frame().rename(columns={"time": "when"}), tmp_path / "t.csv")
    with pytest.raises(DataError, match=r"missing column\(s\) \['time'\]; the file has .*sequence_column"):
        load_long_format(path)
    with pytest.raises(DataError, match=r"missing column\(s\) \['time', 'target'\]; the file has .*target_column"):
        load_panel(path)


def test_classification_and_forecasting_share_the_repeated_time_message(tmp_path: Path) -> None:
    path = _write(pd.concat([_frame(), _frame().iloc[[2]]]).rename(columns={"x": "target"}), tmp_path / "t.csv")
    with pytest.raises(DataError, match=r"sequence 'b' has repeated time stamps \(0 occurs more than once\).*"
                                        r"or set sequence_column to tell sequences apart"):
        load_long_format(path)
    with pytest.raises(DataError, match=r"entity 'b' has repeated time stamps \(0 occurs more than once\).*"
                                        r"Aggregate the duplicates first\.$"):
        load_panel(path)


def test_classification_and_forecasting_share_the_time_column_check(tmp_path: Path) -> None:
    frame = _frame().assign(time=["0", "1", "x", "2", "3"]).rename(columns={"x": "target"})
    path = _write(frame, tmp_path / "t.csv")
    for read in (load_long_format, load_panel):
        with pytest.raises(DataError, match=r"time column 'time' mixes numbers and text \(first non-number 'x'"):
            read(path)


def test_both_callers_read_rows_in_time_order(tmp_path: Path) -> None:
    frame = _frame().rename(columns={"x": "target"})
    records = load_long_format(_write(frame, tmp_path / "t.csv"), feature_columns=["target"])
    panel = panel_from_frame(frame)
    assert [s[:, 0].tolist() for s in records.sequences] == [[0.0, 1.0, 2.0], [10.0, 11.0]]
    assert [v.tolist() for v in panel.values] == [[0.0, 1.0, 2.0], [10.0, 11.0]]
    assert records.start_times.tolist() == [0, 0] and [t.tolist() for t in panel.times] == [[0, 1, 2], [0, 1]]


def test_forecasting_refuses_a_non_numeric_target(tmp_path: Path) -> None:
    frame = _frame().rename(columns={"note": "target"})
    with pytest.raises(DataError, match=r"target or covariate column\(s\) \['target'\] are not numeric; encode them "
                                        r"as numbers\."):
        panel_from_frame(frame)
