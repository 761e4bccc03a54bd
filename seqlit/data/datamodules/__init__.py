"""One LightningDataModule per task family."""

from seqlit.data.datamodules.classification import SequenceClassificationDataModule
from seqlit.data.datamodules.forecasting import ForecastingDataModule
from seqlit.data.datamodules.language_model import LanguageModelDataModule
from seqlit.data.datamodules.seq2seq import Seq2SeqDataModule

__all__ = ["ForecastingDataModule", "LanguageModelDataModule", "Seq2SeqDataModule", "SequenceClassificationDataModule"]
