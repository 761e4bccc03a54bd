"""`seqlit predict` checks the file to label against what the model was trained with, as training files are
checked against a checkpoint: other feature columns are one error line; the same columns in another order are
put back in the training order."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from seqlit.cli import SeqlitCLI, main
from tests.test_bad_inputs import TINY, labelled_frame, snapshot, write_csv


def test_predict_file_with_other_feature_columns_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    train = write_csv(tmp_path / "train.csv", labelled_frame().rename(columns={"x": "f1", "y": "f2"}))
    data = [*TINY, "--data.init_args.train_path", str(train)]
    fitted = SeqlitCLI(args=["fit", *data, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
                             "--trainer.limit_val_batches", "1", "--test_after_fit", "false"])
    checkpoint = fitted.trainer.checkpoint_callback.last_model_path
    unlabelled = labelled_frame(3, seed=1).drop(columns="label")
    other = write_csv(tmp_path / "other.csv", unlabelled.rename(columns={"x": "f1", "y": "f9"}))
    before = snapshot(tmp_path / "runs")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", *data, "--ckpt_path", checkpoint, "--data.init_args.predict_path", str(other)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("seqlit: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "has feature columns ['f1', 'f9'] but the model was trained with ['f1', 'f2']" in errors[0]
    assert snapshot(tmp_path / "runs") == before  # no predictions.csv, no new version folder

    same = unlabelled.rename(columns={"x": "f1", "y": "f2"})
    in_order = write_csv(tmp_path / "same.csv", same)
    swapped = write_csv(tmp_path / "swapped.csv", same[["entity", "time", "f2", "f1"]])
    outputs = []
    for path in (in_order, swapped):
        target = tmp_path / f"{path.stem}-predictions.csv"
        SeqlitCLI(args=["predict", *data, "--ckpt_path", checkpoint, "--data.init_args.predict_path", str(path),
                        "--predictions_path", str(target)])
        outputs.append(pd.read_csv(target))
    pd.testing.assert_frame_equal(outputs[0], outputs[1])
