"""`seqlit compare`: matched parameter counts, resumable runs, a report with a paired verdict and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqlit import compare
from seqlit.cli import main
from seqlit.errors import SeqlitError
from seqlit.tasks import SequenceClassifier
from seqlit.cli import app
from seqlit.types import SPECIAL_TOKENS
from tests.builders import classifier, forecaster, language_model, seq2seq

REPO = Path(__file__).resolve().parents[1]
TINY = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2"]


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_solver_matches_a_gru_reference_within_two_percent(cell: str, num_layers: int, bidirectional: bool) -> None:
    # A 1-layer GRU of 256 units (~210k parameters); the deepest variant lands near 60 units, where one unit
    # of width is ~3% of the count, so the closest width is always within 2% (not so at 64 units).
    target = compare.count_parameters(classifier(12, 9, cell="gru", hidden_size=256, bidirectional=False))

    def build(sizes: dict[str, int]) -> SequenceClassifier:
        return classifier(12, 9, cell=cell, num_layers=num_layers, bidirectional=bidirectional, **sizes)

    sizes, n_params = compare.solve_sizes(build, {"hidden_size": 256}, target)
    assert n_params == compare.count_parameters(build(sizes))
    assert abs(n_params - target) / target <= 0.02, (sizes, n_params, target)
    # The closest width: one unit more or less is no nearer to the target.
    for width in (sizes["hidden_size"] - 1, sizes["hidden_size"] + 1):
        assert abs(compare.count_parameters(build({"hidden_size": width})) - target) >= abs(n_params - target)


def test_plan_scales_every_width_of_a_seq2seq_model_together() -> None:
    tokens = list(SPECIAL_TOKENS) + list("abcdefghij")
    model = seq2seq(tokens, tokens, cell="lstm", encoder_hidden_size=64, decoder_hidden_size=128, embedding_size=32)
    lstm, bigru = compare.plan_variants(model, ["lstm", "bigru"])
    assert lstm.sizes == {"encoder.hidden_size": 64, "decoder.hidden_size": 128}
    assert abs(bigru.n_params - lstm.n_params) / lstm.n_params <= 0.02
    ratio = bigru.sizes["decoder.hidden_size"] / bigru.sizes["encoder.hidden_size"]
    assert ratio == pytest.approx(2.0, abs=0.05)  # proportions kept


def test_plan_works_for_forecasters_and_refuses_what_cannot_be_compared() -> None:
    gru, lstm = compare.plan_variants(forecaster(1, 6, hidden_size=64), ["gru", "lstm"])
    assert abs(lstm.n_params - gru.n_params) / gru.n_params <= 0.02 and lstm.sizes["network.hidden_size"] < 64
    tokenizer = {"kind": "char", "tokens": list(SPECIAL_TOKENS) + list("abc")}
    two_layers = language_model(tokenizer, hidden_size=32, embedding_size=16, num_layers=2)
    with pytest.raises(SeqlitError, match="no `bidirectional` option"):
        compare.plan_variants(two_layers, ["lstm", "bigru"])
    one_tied_layer = language_model(tokenizer, hidden_size=32, embedding_size=16, num_layers=1, tie_weights=True,
                                    cell="gru")
    with pytest.raises(SeqlitError, match="changes the count by 0.0%"):  # a tied single layer is embedding-sized
        compare.plan_variants(one_tied_layer, ["gru", "lstm"])
    with pytest.raises(SeqlitError, match="unknown variant 'rnn'"):
        compare.parse_variant("rnn")
    assert compare.parse_seeds("3") == [0, 1, 2] and compare.parse_seeds("4,9") == [4, 9]


def _result(variant: str, seed: int, value: float) -> dict[str, object]:
    return {"variant": variant, "seed": seed, "metric": "test/acc", "test": {"test/acc": value}}


def test_verdict_is_a_paired_test_not_a_comparison_of_means() -> None:
    # LSTM is better on every seed by a small, steady margin: significant although the spread is large.
    steady = [_result("gru", s, v) for s, v in enumerate([0.80, 0.90, 0.70, 0.85, 0.95])]
    steady += [_result("lstm", s, v + 0.01 + 0.001 * s) for s, v in enumerate([0.80, 0.90, 0.70, 0.85, 0.95])]
    line = compare.verdict("test/acc", "gru", "lstm", steady)
    assert "lstm is significantly better" in line and "p = " in line
    # A larger mean difference that flips sign between seeds is not significant.
    noisy = [_result("gru", s, 0.9) for s in range(4)] + [_result("lstm", s, 0.9 + d) for s, d in
                                                           enumerate([0.08, -0.06, 0.09, -0.05])]
    assert "no significant difference" in compare.verdict("test/acc", "gru", "lstm", noisy)
    assert "needs at least 2" in compare.verdict("test/acc", "gru", "lstm", steady[:1] + steady[5:6])


def test_interrupted_compare_resumes_without_retraining_finished_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    trained: list[str] = []
    widths: dict[str, int] = {}

    class CountingCLI(app.TimedFitCLI):
        def before_fit(self) -> None:
            encoder = self.config["fit"]["model"]["init_args"]["encoder"]["init_args"]
            trained.append(encoder["cell"])
            widths[encoder["cell"]] = encoder["hidden_size"]
            super().before_fit()

    monkeypatch.setattr(app, "TimedFitCLI", CountingCLI)
    arguments = ["compare", "--config", str(REPO / "configs/japanese_vowels_gru.yaml"), "--variants", "gru,lstm",
                 "--seeds", "2", "--out", "out", *TINY, "--model.init_args.encoder.init_args.hidden_size", "24"]
    finished = compare.run_variant_seed

    def interrupted_after_three(*args: object, **kwargs: object) -> dict[str, object]:
        if len(trained) == 3:
            raise KeyboardInterrupt  # the job is killed before the fourth run
        return finished(*args, **kwargs)

    monkeypatch.setattr(compare, "run_variant_seed", interrupted_after_three)
    with pytest.raises(KeyboardInterrupt):
        main(arguments)
    assert trained == ["gru", "lstm", "gru"]
    runs = tmp_path / "out" / "runs"
    done = sorted(path.relative_to(runs).as_posix() for path in runs.glob("*/*/result.json"))
    assert done == ["gru/seed0/result.json", "gru/seed1/result.json", "lstm/seed0/result.json"]
    before = {path: path.stat().st_mtime_ns for path in (tmp_path / "out/runs").glob("*/*/result.json")}
    (tmp_path / "out/runs/lstm/seed1").mkdir(parents=True)
    (tmp_path / "out/runs/lstm/seed1/metrics.csv").write_text("half a file")  # the killed run's leftovers

    monkeypatch.setattr(compare, "run_variant_seed", finished)
    main(arguments)
    assert trained == ["gru", "lstm", "gru", "lstm"]  # only the unfinished run trained again
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in before.items())
    report = (tmp_path / "out/report.md").read_text()
    assert "| gru |" in report and "| lstm |" in report and "lstm vs gru on test/acc" in report
    assert (tmp_path / "out/val_curves.png").stat().st_size > 10_000
    plan = json.loads((tmp_path / "out/plan.json").read_text())
    assert abs(plan[1]["n_params"] - plan[0]["n_params"]) / plan[0]["n_params"] <= 0.02
    # A width among the flags sets the reference; it never overrides a matched width.
    matched = plan[1]["sizes"]["encoder.hidden_size"]
    assert widths == {"gru": 24, "lstm": matched} and matched < 24
    result = json.loads((tmp_path / "out/runs/lstm/seed1/result.json").read_text())
    assert result["seed"] == 1 and result["sizes"] == plan[1]["sizes"] and len(result["val_curve"]) == 2


def test_a_finished_run_of_another_setup_is_not_reused(tmp_path: Path) -> None:
    variant = compare.Variant("gru", "gru", False, {"encoder.hidden_size": 64}, 1000)
    run_dir = tmp_path / "runs" / "gru" / "seed0"
    run_dir.mkdir(parents=True)
    settings = compare.variant_settings(classifier(2, 2).__class__, "gru", False, variant.sizes)
    base = {"trainer": {"max_epochs": 5}, "model": {"init_args": {}}}
    (run_dir / "result.json").write_text(json.dumps({"config_digest": compare.config_digest({"trainer": {"max_epochs": 1}}),
                                                     "settings": settings}))

    def never(config: dict) -> None:
        raise AssertionError("a run of another setup must not be retrained over silently")

    with pytest.raises(SeqlitError, match="another setup"):
        compare.run_variant_seed(never, base, classifier(2, 2).__class__, variant, 0, tmp_path)


def test_settings_by_dotted_path_step_into_parts() -> None:
    hparams = {"encoder": {"class_path": "seqlit.nn.RNNEncoder", "init_args": {"hidden_size": 8}}}
    assert compare.get_setting(hparams, "encoder.hidden_size") == 8
    assert compare.get_setting(hparams, "encoder.num_layers") == 1  # the class's default
    compare.set_setting(hparams, "encoder.cell", "lstm")
    assert hparams["encoder"]["init_args"] == {"hidden_size": 8, "cell": "lstm"}
    with pytest.raises(SeqlitError, match="no setting 'decoder.hidden_size'"):
        compare.get_setting(hparams, "decoder.hidden_size")
