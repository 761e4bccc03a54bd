"""One LightningDataModule per task family, on one base (`SeqlitDataModule`) taking one group of loader
settings (`LoaderSettings`)."""

from seqlit.data.datamodules.base import LoaderSettings, SeqlitDataModule
from seqlit.data.datamodules.classification import SequenceClassificationDataModule
from seqlit.data.datamodules.forecasting import ForecastingDataModule
from seqlit.data.datamodules.language_model import LanguageModelDataModule
from seqlit.data.datamodules.seq2seq import Seq2SeqDataModule

__all__ = [
    "ForecastingDataModule",
    "LanguageModelDataModule",
    "LoaderSettings",
    "Seq2SeqDataModule",
    "SeqlitDataModule",
    "SequenceClassificationDataModule",
]
