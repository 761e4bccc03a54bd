"""Map-style data sets over `SequenceRecords`; transforms are applied lazily per item."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from seqlit.data.collate import Sample
from seqlit.data.normalise import FeatureNormalizer
from seqlit.data.sources import SequenceRecords
from seqlit.types import IGNORE_INDEX


class SequenceClassificationDataset(Dataset[Sample]):
    """(T, F) feature sequences with one class index each.

    The normaliser is read at access time, not copied at construction, so statistics restored
    from a checkpoint after `setup` (Lightning restores data module state after setup) apply.
    """

    def __init__(
        self,
        records: SequenceRecords,
        class_to_index: dict[str, int],
        normalizer: FeatureNormalizer | None = None,
    ) -> None:
        self.records = records
        self.normalizer = normalizer
        if records.labels is None:
            self.targets = np.full(len(records), IGNORE_INDEX, dtype=np.int64)
        else:
            self.targets = np.array([class_to_index[label] for label in records.labels], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        sequence = self.records.sequences[index]  # (T, F)
        if self.normalizer is not None:
            sequence = self.normalizer.transform(sequence)
        return Sample(
            index=index,
            inputs=torch.from_numpy(np.ascontiguousarray(sequence, dtype=np.float32)),  # (T, F)
            target=torch.tensor(self.targets[index], dtype=torch.long),
        )

    @property
    def lengths(self) -> np.ndarray:
        return self.records.lengths  # (N,)
