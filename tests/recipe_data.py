"""Data for bundled configs that train on a user's own file (`configs/classify_csv.yaml`), so the tests that
run every config can run those too."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

from seqlit.data.sources import load_japanese_vowels


def own_file_arguments(config: Path, folder: Path) -> list[str]:
    """`--data.train_path <JapaneseVowels' training split as long-format CSV>` for a config whose data is a
    long-format file it does not name; [] for every other config."""
    data = (yaml.safe_load(config.read_text(encoding="utf-8")).get("data") or {}).get("init_args") or {}
    if data.get("dataset") != "long_format" or data.get("train_path"):
        return []
    records = load_japanese_vowels("train")
    path = folder / "own_train.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["entity", "time", *records.feature_names, "label"])
        for entity, sequence, label in zip(records.entities, records.sequences, records.labels):
            writer.writerows([entity, step, *values.tolist(), label] for step, values in enumerate(sequence))
    return ["--data.train_path", str(path)]
