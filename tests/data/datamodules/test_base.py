"""`LoaderSettings` and `SeqlitDataModule`: one validated settings group, one base, for every data module."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from seqlit.cli import SeqlitCLI, main
from seqlit.data.bucketing import BucketBatchSampler
from seqlit.data.datamodules import (
    ForecastingDataModule,
    LanguageModelDataModule,
    LoaderSettings,
    Seq2SeqDataModule,
    SeqlitDataModule,
    SequenceClassificationDataModule,
)
from seqlit.data.datamodules import loaders
from seqlit.errors import DataError

REPO = Path(__file__).resolve().parents[3]

# ---- LoaderSettings validation -------------------------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    settings = LoaderSettings()
    assert dataclasses.asdict(settings) == {
        "batch_size": 32, "eval_batch_size": None, "max_tokens": None, "bucketing": True,
        "bucket_size_multiplier": 100, "sampler_seed": None, "num_workers": None, "pin_memory": None,
    }
    assert settings.batch_size_for("train") == settings.batch_size_for("val") == 32
    assert LoaderSettings(batch_size=8, eval_batch_size=20).batch_size_for("test") == 20
    assert LoaderSettings(batch_size=8, eval_batch_size=20).batch_size_for("train") == 8


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 0}, r"data\.loader\.batch_size must be an int >= 1, got 0"),
        ({"batch_size": None}, r"data\.loader\.batch_size must be an int >= 1, got None"),
        ({"batch_size": 2.5}, r"data\.loader\.batch_size must be an int >= 1, got 2\.5"),
        ({"batch_size": True}, r"data\.loader\.batch_size must be an int >= 1, got True"),
        ({"eval_batch_size": -1}, r"data\.loader\.eval_batch_size must be an int >= 1 or null, got -1"),
        ({"max_tokens": 0}, r"data\.loader\.max_tokens must be an int >= 1 or null, got 0"),
        ({"bucket_size_multiplier": 0}, r"data\.loader\.bucket_size_multiplier must be an int >= 1 or null"),
        ({"sampler_seed": -3}, r"data\.loader\.sampler_seed must be an int >= 0 or null, got -3"),
        ({"num_workers": -1}, r"data\.loader\.num_workers must be an int >= 0 or null, got -1"),
        ({"bucketing": "yes"}, r"data\.loader\.bucketing must be true or false, got 'yes'"),
        ({"bucketing": None}, r"data\.loader\.bucketing must be true or false, got None"),
        ({"pin_memory": 1}, r"data\.loader\.pin_memory must be true, false or null \(automatic\), got 1"),
    ],
)
def test_bad_settings_name_the_option_and_the_valid_range(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message):
        LoaderSettings(**overrides)
    with pytest.raises(ValueError):  # DataError is a ValueError, for callers that catch those
        LoaderSettings(**overrides)


def test_settings_are_frozen_and_numpy_ints_pass() -> None:
    import numpy as np

    settings = LoaderSettings(batch_size=np.int64(4))  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.batch_size = 8  # type: ignore[misc]
    assert dataclasses.replace(settings, batch_size=8).batch_size == 8


def test_nothing_touches_cuda_until_a_loader_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: calls.append("is_available") or True)
    datamodule = SequenceClassificationDataModule(loader=LoaderSettings(batch_size=16))
    assert calls == [] and datamodule.loader.pin_memory is None
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    assert calls and loader.pin_memory is True  # automatic: on because CUDA "is available"
    pinned_off = SequenceClassificationDataModule(loader=LoaderSettings(pin_memory=False, num_workers=0))
    pinned_off.setup("fit")
    assert pinned_off.val_dataloader().pin_memory is False


# ---- every data module takes `loader=` and keeps its defaults -------------------------------------------------


def _write_panel(path: Path) -> Path:
    rows = [{"entity": f"e{e}", "time": 2000 + t, "target": float(10 + e + t)} for e in range(4) for t in range(20)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_default_loader_settings_per_module(tmp_path: Path) -> None:
    assert SequenceClassificationDataModule().loader == LoaderSettings(batch_size=32)
    assert Seq2SeqDataModule().loader == LoaderSettings(batch_size=128, eval_batch_size=256)
    assert LanguageModelDataModule().loader == LoaderSettings(batch_size=32, eval_batch_size=10)
    panel = _write_panel(tmp_path / "panel.csv")
    forecasting = ForecastingDataModule(dataset="long_format", path=str(panel), horizon=2)
    assert forecasting.loader == LoaderSettings(batch_size=64)


def test_every_data_module_takes_loader_settings(tmp_path: Path) -> None:
    settings = LoaderSettings(batch_size=3, eval_batch_size=2, sampler_seed=1, num_workers=0, pin_memory=False)
    panel = _write_panel(tmp_path / "panel.csv")
    modules = [
        SequenceClassificationDataModule(loader=settings),
        Seq2SeqDataModule(loader=settings),
        LanguageModelDataModule(loader=dataclasses.replace(settings, bucketing=True)),
        ForecastingDataModule(dataset="long_format", path=str(panel), horizon=2, loader=settings),
    ]
    for module in modules:
        assert isinstance(module, SeqlitDataModule)
        assert module.loader == settings
    forecasting = modules[-1]
    forecasting.setup("fit")
    train, val = forecasting.train_dataloader(), forecasting.val_dataloader()
    assert max(len(batch) for batch in train.batch_sampler) == 3
    assert max(len(batch) for batch in val.batch_sampler) == 2
    assert train.num_workers == 0 and not train.pin_memory


def test_a_flat_loader_argument_or_a_dict_is_refused() -> None:
    with pytest.raises(TypeError, match="batch_size"):
        SequenceClassificationDataModule(batch_size=16)  # type: ignore[call-arg]
    with pytest.raises(DataError, match=r"data\.loader must be a LoaderSettings"):
        SequenceClassificationDataModule(loader={"batch_size": 16})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"max_tokens": 500}, "data.loader.max_tokens"),
        ({"bucketing": False}, "data.loader.bucketing"),
        ({"bucket_size_multiplier": 10, "max_tokens": 64},
         "data.loader.max_tokens, data.loader.bucket_size_multiplier"),
    ],
)
def test_language_model_refuses_settings_it_cannot_apply(overrides: dict[str, Any], named: str) -> None:
    with pytest.raises(DataError, match=rf"{named} has no effect on LanguageModelDataModule.*data\.bptt"):
        LanguageModelDataModule(loader=LoaderSettings(**overrides))


def test_language_model_streams_follow_the_settings(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("def add(a, b):\n    return a + b\n" * 60, encoding="utf-8")
    data = LanguageModelDataModule(corpus="files", paths=[str(corpus)], bptt=8, val_fraction=0.2, test_fraction=0.2,
                                   loader=LoaderSettings(batch_size=3, eval_batch_size=2, num_workers=0))
    data.setup("fit")
    assert next(iter(data.train_dataloader())).inputs.shape[0] == 3
    assert next(iter(data.val_dataloader())).inputs.shape[0] == 2


# ---- loaders built by the base --------------------------------------------------------------------------------


def test_token_cap_is_honoured_without_bucketing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain DataLoader cannot cap padded tokens, so `bucketing: false` with `max_tokens` uses our sampler."""
    lengths = [3, 9, 4, 10, 2, 8, 7, 1]
    loader = loaders.length_bucketed_loader(list(range(len(lengths))), lengths, list, batch_size=4, shuffle=True,
                                            bucketing=False, seed=0, max_tokens=20)
    assert isinstance(loader.batch_sampler, BucketBatchSampler) and not loader.batch_sampler.sort_by_length
    for batch in loader.batch_sampler:
        assert len(batch) * max(lengths[i] for i in batch) <= 20
    plain = loaders.length_bucketed_loader(list(range(len(lengths))), lengths, list, batch_size=4, shuffle=True,
                                           bucketing=False, seed=0)
    assert not isinstance(plain.batch_sampler, BucketBatchSampler)


def test_loader_before_setup_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="train_dataloader called before setup"):
        SequenceClassificationDataModule().train_dataloader()
    with pytest.raises(RuntimeError, match="predict_dataloader called before setup"):
        LanguageModelDataModule().predict_dataloader()


# ---- YAML: `loader:` is a nested group LightningCLI parses ----------------------------------------------------

RECIPES = {
    "japanese_vowels_gru.yaml": {"batch_size": 16, "eval_batch_size": None, "bucketing": True},
    "g2p_cmudict_small.yaml": {"batch_size": 128, "eval_batch_size": 256, "bucketing": True},
    "lm_pydoc_char.yaml": {"batch_size": 32, "eval_batch_size": 10, "bucketing": True},
    "m1_yearly_gru.yaml": {"batch_size": 64, "eval_batch_size": None, "bucketing": True},
}


def _printed(capsys: pytest.CaptureFixture[str], arguments: list[str]) -> dict[str, Any]:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *arguments, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipes_print_their_loader_group(recipe: str, capsys: pytest.CaptureFixture[str]) -> None:
    loader = _printed(capsys, ["--config", str(REPO / "configs" / recipe)])["data"]["init_args"]["loader"]
    assert {key: loader[key] for key in RECIPES[recipe]} == RECIPES[recipe]
    assert set(loader) == {field.name for field in dataclasses.fields(LoaderSettings)}


def test_one_loader_key_overrides_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(REPO / "configs/japanese_vowels_gru.yaml")
    loader = _printed(capsys, ["--config", config, "--data.init_args.loader.max_tokens", "400"])["data"]["init_args"][
        "loader"]
    assert (loader["batch_size"], loader["max_tokens"], loader["bucketing"]) == (16, 400, True)


def test_an_old_flat_key_is_refused_naming_the_valid_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "configs/japanese_vowels_gru.yaml"), "--data.init_args.batch_size", "8",
              "--print_config"])
    assert "loader" in capsys.readouterr().err


def test_a_yaml_loader_group_reaches_the_data_module(tmp_path: Path) -> None:
    config = tmp_path / "data.yaml"
    config.write_text(
        "data:\n"
        "  class_path: seqlit.data.datamodules.classification.SequenceClassificationDataModule\n"
        "  init_args:\n"
        "    dataset: japanese_vowels\n"
        "    loader: {batch_size: 16, bucketing: true, sampler_seed: 5}\n",
        encoding="utf-8",
    )
    cli = SeqlitCLI(
        args=["--config", str(REPO / "configs/japanese_vowels_gru.yaml"), "--config", str(config),
              "--data.init_args.loader.num_workers", "0"],
        run=False,
    )
    assert cli.datamodule.loader == LoaderSettings(batch_size=16, bucketing=True, sampler_seed=5, num_workers=0)
    cli.datamodule.setup("fit")
    loader: DataLoader = cli.datamodule.train_dataloader()
    assert isinstance(loader.batch_sampler, BucketBatchSampler) and loader.batch_sampler.batch_size == 16
