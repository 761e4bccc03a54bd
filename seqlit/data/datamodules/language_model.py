"""Language-model data: text files (or Python's bundled docs) split by position, tokenized with a
tokenizer fitted on the training text only, laid out as B contiguous streams for truncated BPTT."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from seqlit.data.bucketing import resolve_num_replicas, resolve_rank
from seqlit.data.datamodules.base import LoaderSettings, SeqlitDataModule
from seqlit.data.long_format import require_data_file
from seqlit.data.split_audit import audit
from seqlit.data.splits import Split
from seqlit.data.streams import ChunkBatchSampler, StreamChunks, batchify
from seqlit.data.tokenizers import TOKENIZER_KINDS, TextTokenizer, TokenizerKind, fit_tokenizer
from seqlit.errors import DataError
from seqlit.types import EOS_ID, LMBatch

Stage = Literal["train", "val", "test"]
STAGES: tuple[Stage, ...] = ("train", "val", "test")
CORPORA: tuple[str, ...] = ("pydoc", "files", "splits")
# Streams are cut into chunks of `bptt` steps and never padded, so these loader settings have nothing to act on.
IGNORED_LOADER_SETTINGS: tuple[str, ...] = ("max_tokens", "bucketing", "bucket_size_multiplier")
DEFAULT_LOADER = LoaderSettings(batch_size=32, eval_batch_size=10)


@dataclass(frozen=True)
class TextSpan:
    """Characters [start, end) of the concatenated corpus."""

    start: int
    end: int


class LanguageModelDataModule(SeqlitDataModule):
    """Next-token prediction over one long text, batched as `batch_size` parallel streams.

    The corpus (the user's UTF-8 files in the given order, or `pydoc`: the ~465k characters of Python's
    own documentation topics from the standard library's `pydoc_data`) is split by position: train is
    the first part, then validation, then test, so nothing evaluated precedes what was trained on. Split
    points move forward to the next line start, so no line is cut in two. With `corpus: splits` the user's
    own `train_path` / `val_path` / `test_path` files are the splits (the PTB / WikiText layout). The
    tokenizer is fitted on the training text only; every document ends with a newline and then EOS.

    Args:
        corpus: `pydoc` (bundled), `files` (`paths`, UTF-8 text files, each one document, split by position)
            or `splits` (`train_path`, `val_path`, `test_path`: one file per split, fractions unused).
        tokenizer: `char`, `word` (words, punctuation and newlines) or `bpe` (byte-level, `vocab_size` ids).
        min_count: tokens seen fewer times in training become UNK (char/word); BPE merge min frequency.
        val_fraction / test_fraction: shares of the corpus, by characters, held out at its end.
        bptt: steps per truncated-BPTT chunk; `variable_length` redraws chunk lengths every epoch (AWD-LSTM).
        prompts / predict_path: texts to continue in `seqlit predict` (the file has one prompt per line).
        loader: `LoaderSettings`; here `batch_size` / `eval_batch_size` count parallel streams per rank in
            training / evaluation, and `sampler_seed`, `num_workers`, `pin_memory` apply as elsewhere. Chunks
            are never padded, so `max_tokens`, `bucketing` and `bucket_size_multiplier` have nothing to act on:
            setting one is an error rather than silently ignored. None: `DEFAULT_LOADER`, 32 training and 10
            evaluation streams.
            `seqlit predict` continues one prompt per batch.
    """

    default_task = "seqlit.tasks.LanguageModel"

    def __init__(
        self,
        corpus: Literal["pydoc", "files"] = "pydoc",
        paths: list[str] | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        tokenizer: TokenizerKind = "char",
        vocab_size: int = 2000,
        min_count: int = 1,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        bptt: int = 100,
        variable_length: bool = False,
        prompts: list[str] | None = None,
        predict_path: str | None = None,
        loader: LoaderSettings | None = None,
    ) -> None:
        super().__init__(loader or DEFAULT_LOADER)
        _refuse_ignored_settings(self.loader)
        if corpus not in CORPORA:
            raise DataError(f"unknown data.corpus {corpus!r}; choose one of {list(CORPORA)}.")
        if corpus == "files" and not paths:
            raise DataError("data.corpus 'files' needs data.paths: a list of UTF-8 text files; or use corpus 'pydoc'.")
        split_paths = {"train_path": train_path, "val_path": val_path, "test_path": test_path}
        _check_split_paths(corpus, paths, split_paths)
        if tokenizer not in TOKENIZER_KINDS:
            raise DataError(f"unknown data.tokenizer {tokenizer!r}; choose one of {list(TOKENIZER_KINDS)}.")
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < value < 1.0:
                raise DataError(f"data.{name} must be in (0, 1), got {value}.")
        if val_fraction + test_fraction >= 1.0:
            raise DataError(
                f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction:.2f} leaves no training text; "
                "keep their sum below 1."
            )
        if isinstance(bptt, bool) or not isinstance(bptt, int) or bptt < 1:
            raise DataError(f"data.bptt must be a positive int, got {bptt!r}.")
        self.corpus = corpus
        self.paths = list(paths) if paths else []
        self.split_paths: dict[Stage, str] = (
            {"train": str(train_path), "val": str(val_path), "test": str(test_path)} if corpus == "splits" else {}
        )
        self.tokenizer_kind = tokenizer
        self.vocab_size = vocab_size
        self.min_count = min_count
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.bptt = bptt
        self.variable_length = variable_length
        self.prompts = prompts
        self.predict_path = predict_path

    # ---- what the CLI links into the model (apply_on="instantiate", so known before `setup`) ----------
    @property
    def tokenizer_state(self) -> dict[str, Any]:
        """The fitted tokenizer as plain data; the model stores it in its checkpoint."""
        return self.tokenizer.state_dict()

    @cached_property
    def tokenizer(self) -> TextTokenizer:
        """Fitted on the training documents only."""
        tokenizer = fit_tokenizer(
            self.tokenizer_kind,
            self.split_documents["train"],
            min_count=self.min_count,
            vocab_size=self.vocab_size,
        )
        rank_zero_info(f"seqlit: {self.tokenizer_kind} tokenizer fitted on the training text: {len(tokenizer)} tokens.")
        return tokenizer

    @cached_property
    def documents(self) -> list[str]:
        """The corpus, one string per document, in corpus order, each ending with a newline (so one
        document's last line is never joined to the next one's first line)."""
        if self.corpus == "pydoc":
            from pydoc_data.topics import topics

            return [_end_with_newline(topics[name]) for name in sorted(topics)]
        paths = list(self.split_paths.values()) if self.split_paths else self.paths
        documents = [_end_with_newline(_read_text_file(path)) for path in paths]
        empty = [path for path, text in zip(paths, documents) if not text.strip()]
        if empty:
            if self.split_paths:
                raise DataError(f"these data.train_path/val_path/test_path files have no text: {empty}; give each "
                                "split a file with text.")
            raise DataError(f"these data.paths files have no text: {empty}; remove them from the list.")
        return documents

    @cached_property
    def corpus_text(self) -> str:
        """The documents concatenated: the positions `spans` refer to."""
        return "".join(self.documents)

    @cached_property
    def spans(self) -> dict[Stage, TextSpan]:
        """Character range of each split in the concatenated corpus: train < val < test."""
        text = self.corpus_text
        total = len(text)
        if self.split_paths:  # one document per split, in train, val, test order
            val_start, test_start = np.cumsum([len(document) for document in self.documents[:2]]).tolist()
        else:
            val_start = _next_line_start(text, round(total * (1.0 - self.val_fraction - self.test_fraction)))
            test_start = _next_line_start(text, max(val_start, round(total * (1.0 - self.test_fraction))))
        spans = {
            "train": TextSpan(0, val_start),
            "val": TextSpan(val_start, test_start),
            "test": TextSpan(test_start, total),
        }
        for stage, span in spans.items():
            if span.end <= span.start:
                raise DataError(
                    f"the {stage} split is empty ({total} characters in the corpus, val_fraction="
                    f"{self.val_fraction}, test_fraction={self.test_fraction}); add text or change the fractions."
                )
        return spans

    @cached_property
    def split_documents(self) -> dict[Stage, list[str]]:
        """The document pieces falling inside each split's span (a document may straddle a boundary)."""
        pieces: dict[Stage, list[str]] = {stage: [] for stage in STAGES}
        offset = 0
        for document in self.documents:
            for stage, span in self.spans.items():
                start, end = max(span.start, offset), min(span.end, offset + len(document))
                if start < end:
                    pieces[stage].append(document[start - offset : end - offset])
            offset += len(document)
        return pieces

    def audit(self) -> Split:
        """The leakage audit over the corpus's lines: every val line starts after every train line ends, and
        every test line after both (raises `LeakageError` otherwise). Returns the line split."""
        text = self.corpus_text
        starts = np.array([0, *(match.end() for match in re.finditer("\n", text) if match.end() < len(text))])
        ends = np.append(starts[1:], len(text)) - 1  # last character of each line
        members = {
            stage: np.flatnonzero((starts >= span.start) & (starts < span.end)) for stage, span in self.spans.items()
        }
        split = Split(train=members["train"], val=members["val"], test=members["test"])
        audit(split, mode="chronological", start_times=starts, end_times=ends)
        return split

    def token_ids(self, stage: Stage) -> torch.Tensor:
        """(N,) ids of a split: its document pieces, each ending with EOS where a document ends."""
        ids: list[int] = []
        document_ends = set(np.cumsum([len(document) for document in self.documents]).tolist())
        position = self.spans[stage].start  # the split's pieces are contiguous in the corpus
        for piece in self.split_documents[stage]:
            ids.extend(self.tokenizer.encode(piece))
            position += len(piece)
            # A piece cut short by the split boundary is not the end of its document.
            if position in document_ends:
                ids.append(EOS_ID)
        return torch.tensor(ids, dtype=torch.long)

    # ---- Lightning hooks ------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage != "predict":
            self.audit()
        needed: dict[str, tuple[Stage, ...]] = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for split in needed.get(stage, ()):
            if split not in self.datasets:
                self.datasets[split] = self._stream_dataset(split)
        if stage == "predict":
            self.datasets["predict"] = PromptDataset(self._prompt_texts(), self.tokenizer)

    def dataloader_for(self, stage: str) -> DataLoader:
        """Chunks of every stream (train, val, test; seeded, resumable in training), or one prompt per batch."""
        dataset = self.dataset_for(stage)
        if stage == "predict":
            return DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=dataset.collate)
        assert isinstance(dataset, StreamChunks)
        training = stage == "train"
        sampler = ChunkBatchSampler(
            row_length=int(dataset.streams.shape[1]),
            batch_size=self.loader.batch_size_for(stage),
            bptt=self.bptt,
            variable_length=self.variable_length and training,
            seed=self.seed,
            rank=resolve_rank(None, None),
            num_replicas=resolve_num_replicas(None, None),
            resume_from=self._resume_position if training else None,
        )
        return DataLoader(dataset, batch_sampler=sampler, **self.worker_options(_Collate(dataset, self.bptt)))

    def item_ids(self, stage: str) -> list[str]:
        """The prompts, by index (labels the rows `seqlit predict` writes)."""
        if stage != "predict":
            raise ValueError("language-model item ids exist for the predict stage only (the prompts).")
        return list(self.datasets["predict"].prompts)

    # ---- helpers --------------------------------------------------------------------------------------
    def _stream_dataset(self, stage: Stage) -> StreamChunks:
        ids = self.token_ids(stage)  # (N,)
        replicas = resolve_num_replicas(None, None)
        streams = self.loader.batch_size_for(stage)
        try:
            rows = batchify(ids, streams * replicas)  # (R, L)
        except DataError as error:
            raise DataError(f"{stage} split: {error}") from None
        span = self.spans[stage]
        dataset = StreamChunks(rows, chars_per_token=(span.end - span.start) / max(1, ids.numel()))
        rank_zero_info(
            f"seqlit: {stage} split: characters {span.start:,}..{span.end:,}, {ids.numel():,} tokens in "
            f"{rows.shape[0]} streams of {rows.shape[1]:,} ({ids.numel() - rows.numel()} tail tokens unused)."
        )
        return dataset

    def _prompt_texts(self) -> list[str]:
        if self.predict_path is not None:
            lines = _read_text_file(self.predict_path).splitlines()
            return [line.replace("\\n", "\n") for line in lines]
        if self.prompts:
            return list(self.prompts)
        raise DataError(
            "`seqlit predict` needs prompts to continue: set data.prompts (a list of strings, '' starts a new "
            "document) or data.predict_path (one prompt per line, '\\n' for a newline)."
        )


class _Collate:
    """Picklable collate for worker processes: stacks chunks and records the nominal chunk length."""

    def __init__(self, dataset: StreamChunks, nominal_length: int) -> None:
        self.dataset = dataset
        self.nominal_length = nominal_length

    def __call__(self, pieces: list[torch.Tensor]) -> LMBatch:
        return self.dataset.collate(pieces, self.nominal_length)


class PromptDataset(Dataset[LMBatch]):
    """Prompts for sampling, each encoded after an EOS (a document start), one prompt per batch."""

    def __init__(self, prompts: list[str], tokenizer: TextTokenizer) -> None:
        self.prompts = prompts
        self.ids = [[EOS_ID, *tokenizer.encode(prompt)] for prompt in prompts]

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> tuple[int, list[int]]:
        return index, self.ids[index]

    @staticmethod
    def collate(items: list[tuple[int, list[int]]]) -> LMBatch:
        (index, ids), = items
        inputs = torch.tensor([ids], dtype=torch.long)  # (1, P)
        return LMBatch(
            inputs=inputs,
            targets=inputs.new_empty((1, 0)),
            chars_per_token=1.0,
            indices=torch.tensor([index]),
        )


def _refuse_ignored_settings(loader: LoaderSettings) -> None:
    """Loader settings the streams have no use for are an error, not silently dropped."""
    ignored = [name for name in loader.changed_from_defaults() if name in IGNORED_LOADER_SETTINGS]
    if ignored:
        names = ", ".join(f"data.loader.{name}" for name in ignored)
        raise DataError(
            f"{names} has no effect on LanguageModelDataModule: it batches `batch_size` parallel token streams cut "
            "into chunks of data.bptt steps, which are never padded or bucketed. Remove it from data.loader (set "
            "the chunk length with data.bptt, the streams per batch with data.loader.batch_size)."
        )


def _check_split_paths(corpus: str, paths: list[str] | None, split_paths: dict[str, str | None]) -> None:
    """`corpus: splits` needs all three split files and no `paths`; the split files need `corpus: splits`."""
    given = [name for name, path in split_paths.items() if path]
    if corpus != "splits":
        if given:
            raise DataError(
                f"data.{given[0]} is set but data.corpus is {corpus!r}: set data.corpus 'splits' to use your own "
                "train/val/test files (or remove the *_path settings)."
            )
        return
    missing = [name for name in split_paths if name not in given]
    if missing:
        raise DataError(
            f"data.corpus 'splits' needs {', '.join(f'data.{name}' for name in missing)}: one UTF-8 text file per "
            "split (train_path, val_path, test_path)."
        )
    if paths:
        raise DataError("data.paths is for data.corpus 'files'; with corpus 'splits' give train_path/val_path/test_path.")


def _read_text_file(path: str) -> str:
    """A UTF-8 text file's contents (a byte-order mark is not text), or one clear error."""
    require_data_file(Path(path))
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path} is not UTF-8 text (byte {error.start}: {error.reason}); re-encode it, "
            f"e.g. `iconv -f latin1 -t utf-8 {path}`."
        ) from None


def _end_with_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def _next_line_start(text: str, position: int) -> int:
    """The first line start at or after `position` (the end of the text if none)."""
    if position <= 0 or position >= len(text) or text[position - 1] == "\n":
        return min(max(position, 0), len(text))
    newline = text.find("\n", position)
    return len(text) if newline < 0 else newline + 1
