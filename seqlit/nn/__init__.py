"""seqlit's networks: plain `torch.nn` modules (no Lightning), each swappable from YAML by `class_path`.

The contracts a recurrent layer or cell follows are in `seqlit.nn.protocol`.
"""

from seqlit.nn.attention import Attention
from seqlit.nn.cell_layer import TorchCell
from seqlit.nn.decoders import AttentionDecoder
from seqlit.nn.dropout import EmbeddingDropout, LockedDropout, WeightDrop
from seqlit.nn.encoders import RNNEncoder
from seqlit.nn.forecasting import BaselineForecaster, DirectForecaster, EncoderDecoderForecaster
from seqlit.nn.frontend import ConvFrontend
from seqlit.nn.heads import ClassificationHead
from seqlit.nn.language_model import RecurrentLanguageModel
from seqlit.nn.layer_norm import LayerNormGRU, LayerNormLSTM
from seqlit.nn.pooling import SequencePooling
from seqlit.nn.protocol import EncoderOutput, RecurrentCell, RecurrentLayer

__all__ = [
    "Attention",
    "AttentionDecoder",
    "BaselineForecaster",
    "ClassificationHead",
    "ConvFrontend",
    "DirectForecaster",
    "EmbeddingDropout",
    "EncoderDecoderForecaster",
    "EncoderOutput",
    "LayerNormGRU",
    "LayerNormLSTM",
    "LockedDropout",
    "RNNEncoder",
    "RecurrentCell",
    "RecurrentLanguageModel",
    "RecurrentLayer",
    "SequencePooling",
    "TorchCell",
    "WeightDrop",
]
