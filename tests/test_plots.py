"""Attention heatmap helper: writes a PNG, rejects mismatched labels."""

from pathlib import Path

import numpy as np
import pytest
import torch

from seqlit.plots import save_attention_heatmap, save_validation_curves


def test_heatmap_png_is_written(tmp_path: Path) -> None:
    weights = torch.softmax(torch.randn(4, 6), dim=-1)  # (T_out, S)
    path = save_attention_heatmap(weights, list("phonem"), ["F", "OW1", "N", "IY2"], tmp_path / "sub" / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 1000


def test_heatmap_rejects_labels_that_do_not_match_the_matrix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one label per row and per column"):
        save_attention_heatmap(np.ones((2, 3)) / 3, list("ab"), ["X", "Y"], tmp_path / "a.png")
    with pytest.raises(ValueError, match="2-D"):
        save_attention_heatmap(np.ones(3), list("abc"), ["X"], tmp_path / "a.png")


def test_saving_a_plot_leaves_the_callers_matplotlib_backend_alone(tmp_path: Path) -> None:
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a backend a notebook or script might have chosen (not Agg, which we draw with)
    try:
        path = save_validation_curves({"gru": [[0.5, 0.7]]}, tmp_path / "curves.png", "val/acc")
        save_attention_heatmap(torch.eye(2), ["a", "b"], ["A", "B"], tmp_path / "map.png")
        assert matplotlib.get_backend() == "svg"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        matplotlib.use(before)


def test_plots_command_writes_the_heatmap_into_the_checkpoints_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's `python -m seqlit.plots --checkpoint runs/.../checkpoints/last.ckpt --word ...` leaves the PNG
    beside the run's logs, not in the folder it was run from."""
    import lightning.pytorch as pl

    from seqlit.plots import main
    from seqlit.types import SPECIAL_TOKENS
    from tests.builders import seq2seq

    model = seq2seq(list(SPECIAL_TOKENS) + list("abc"), list(SPECIAL_TOKENS) + ["A", "B", "K"], embedding_size=8,
                    encoder_hidden_size=8, encoder_layers=1, decoder_hidden_size=8)
    run = tmp_path / "runs/g2p/version_0"
    (run / "checkpoints").mkdir(parents=True)
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                  "pytorch-lightning_version": pl.__version__}
    torch.save(checkpoint, run / "checkpoints/last.ckpt")
    monkeypatch.chdir(tmp_path)
    main(["--checkpoint", "runs/g2p/version_0/checkpoints/last.ckpt", "--word", "cab"])
    assert (run / "cab_attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.png"))
    assert capsys.readouterr().out.endswith(f"seqlit: wrote {Path('runs/g2p/version_0/cab_attention.png')}\n")
