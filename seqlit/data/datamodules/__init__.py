"""One LightningDataModule per task family."""

from seqlit.data.datamodules.classification import SequenceClassificationDataModule
from seqlit.data.datamodules.seq2seq import Seq2SeqDataModule

__all__ = ["Seq2SeqDataModule", "SequenceClassificationDataModule"]
