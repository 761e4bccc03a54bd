"""seqlit: recurrent sequence models trained with PyTorch Lightning, the way practitioners do it."""

__version__ = "0.1.0"
