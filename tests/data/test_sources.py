from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqlit.data.sources import load_japanese_vowels, load_long_format
from seqlit.errors import DataError


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "data.csv") -> Path:
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


def _frame() -> pd.DataFrame:
    # Rows deliberately out of time order: the loader must sort within each sequence.
    return pd.DataFrame(
        {
            "entity": ["a", "a", "a", "b", "b"],
            "time": [2, 0, 1, 5, 4],
            "x": [2.0, 0.0, 1.0, 50.0, 40.0],
            "y": [20.0, 0.0, 10.0, 5.0, 4.0],
            "label": ["p", "p", "p", "q", "q"],
        }
    )


def test_japanese_vowels_official_split() -> None:
    train, test = load_japanese_vowels("train"), load_japanese_vowels("test")
    assert (len(train), len(test)) == (270, 370)
    assert all(seq.shape[1] == 12 for seq in train.sequences)
    assert set(train.labels) == {str(i) for i in range(1, 10)}
    assert 7 <= train.lengths.min() and train.lengths.max() <= 29


@pytest.mark.parametrize("name", ["data.csv", "data.parquet"])
def test_long_format_orders_steps_by_time(tmp_path: Path, name: str) -> None:
    records = load_long_format(_write(tmp_path, _frame(), name))
    assert records.feature_names == ["x", "y"]
    assert records.sequence_ids.tolist() == ["a", "b"]
    np.testing.assert_array_equal(records.sequences[0][:, 0], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(records.sequences[1][:, 0], [40.0, 50.0])
    assert records.labels.tolist() == ["p", "q"]
    assert records.start_times.tolist() == [0, 4] and records.end_times.tolist() == [2, 5]


def test_sequence_column_splits_an_entity_into_sequences(tmp_path: Path) -> None:
    frame = _frame().assign(seq=["s1", "s1", "s2", "s3", "s3"])
    records = load_long_format(_write(tmp_path, frame), sequence_column="seq")
    assert len(records) == 3
    assert records.entities.tolist() == ["a", "a", "b"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("entity,time,x,label\n", "no data rows"),
        ("entity,time,x\na,0,1.0\n", "missing column"),
        ("entity,time,x,label\na,0,nan,p\n", "NaN/Inf"),
        ("entity,time,x,label\na,0,1.0,p\na,0,2.0,p\n", "repeated time"),
        ("entity,time,x,label\na,0,1.0,p\na,1,2.0,q\n", "distinct labels"),
        ("entity,time,label\na,0,p\n", "no numeric feature"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_long_format(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found.*nope.csv"):
        load_long_format(tmp_path / "nope.csv")


def test_non_utf8_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("entity,time,x,label\nJos\xe9,0,1.0,p\n".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        load_long_format(path)
