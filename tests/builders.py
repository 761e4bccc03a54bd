"""Small models for tests, built through the tasks' real parts (specs as YAML would give them)."""

from __future__ import annotations

from typing import Any

from seqlit.tasks import Forecaster, LanguageModel, Seq2SeqModel, SequenceClassifier


def spec(class_path: str, **init_args: Any) -> dict[str, Any]:
    return {"class_path": class_path, "init_args": init_args}


def optimization(lr: float = 3e-3, weight_decay: float = 0.01, warmup_fraction: float = 0.05,
                 min_lr_ratio: float = 0.01) -> dict[str, Any]:
    """optimizer + lr_scheduler keyword arguments of a task: AdamW and warmup-cosine."""
    return {
        "optimizer": spec("torch.optim.AdamW", lr=lr, weight_decay=weight_decay),
        "lr_scheduler": spec("seqlit.schedules.WarmupCosineLR", warmup_fraction=warmup_fraction,
                             min_lr_ratio=min_lr_ratio),
    }


def classifier(n_features: int, n_classes: int, class_names: list[str] | None = None, *, cell: Any = "gru",
               hidden_size: int = 64, num_layers: int = 1, bidirectional: bool = True, dropout: float = 0.2,
               pooling: str = "last", label_smoothing: float = 0.0, **optimisation: float) -> SequenceClassifier:
    return SequenceClassifier(
        n_features, n_classes, class_names,
        encoder=spec("seqlit.nn.RNNEncoder", cell=cell, hidden_size=hidden_size, num_layers=num_layers,
                     bidirectional=bidirectional, dropout=dropout),
        pooling=pooling,  # type: ignore[arg-type]
        head=spec("seqlit.nn.ClassificationHead", dropout=dropout),
        label_smoothing=label_smoothing,
        **optimization(**optimisation),
    )


def seq2seq(source_tokens: list[str], target_tokens: list[str], *, cell: Any = "lstm", embedding_size: int = 16,
            encoder_hidden_size: int = 32, encoder_layers: int = 1, bidirectional: bool = True,
            decoder_hidden_size: int = 32, decoder_layers: int = 1, attention: str = "general",
            input_feeding: bool = False, dropout: float = 0.0, teacher_forcing: str = "constant",
            teacher_forcing_k: float | None = None, teacher_forcing_c: float | None = None,
            lr: float = 1e-2, warmup_fraction: float = 0.0, **rest: Any) -> Seq2SeqModel:
    schedule = {"kind": teacher_forcing}
    schedule |= {key: value for key, value in (("k", teacher_forcing_k), ("c", teacher_forcing_c)) if value is not None}
    rest.setdefault("label_smoothing", 0.0)
    return Seq2SeqModel(
        source_tokens, target_tokens, embedding_size=embedding_size, embedding_dropout=dropout,
        encoder=spec("seqlit.nn.RNNEncoder", cell=cell, hidden_size=encoder_hidden_size, num_layers=encoder_layers,
                     bidirectional=bidirectional, dropout=dropout),
        decoder=spec("seqlit.nn.AttentionDecoder", cell=cell, embedding_size=embedding_size,
                     hidden_size=decoder_hidden_size, num_layers=decoder_layers, attention=attention,
                     input_feeding=input_feeding, dropout=dropout),
        teacher_forcing=spec("seqlit.schedules.TeacherForcingSchedule", **schedule),  # type: ignore[arg-type]
        **optimization(lr=lr, warmup_fraction=warmup_fraction), **rest,
    )


NETWORK_OPTIONS = ("embedding_size", "hidden_size", "num_layers", "cell", "layer_norm", "embedding_dropout",
                   "input_dropout", "hidden_dropout", "output_dropout", "weight_drop", "tie_weights", "embedding_init")


def language_model(tokenizer: dict[str, Any], *, lr: float = 3e-3, warmup_fraction: float = 0.02,
                   weight_decay: float = 0.01, **settings: Any) -> LanguageModel:
    network = {key: settings.pop(key) for key in NETWORK_OPTIONS if key in settings}
    return LanguageModel(
        tokenizer, network=spec("seqlit.nn.RecurrentLanguageModel", **network),
        **optimization(lr=lr, warmup_fraction=warmup_fraction, weight_decay=weight_decay), **settings,
    )


def forecaster(n_features: int, horizon: int, seasonality: int = 1, *, network: str = "direct", cell: Any = "gru",
               hidden_size: int = 64, num_layers: int = 1, dropout: float = 0.0, bidirectional: bool = False,
               teacher_forcing: str = "constant", teacher_forcing_k: float | None = None,
               teacher_forcing_c: float | None = None, **rest: Any) -> Forecaster:
    classes = {"direct": "seqlit.nn.DirectForecaster", "encoder_decoder": "seqlit.nn.EncoderDecoderForecaster"}
    if network in classes:
        extra = {"bidirectional": bidirectional} if network == "direct" else {}
        part: Any = spec(classes[network], cell=cell, hidden_size=hidden_size, num_layers=num_layers, dropout=dropout,
                         **extra)
    else:
        part = network
    schedule = {"kind": teacher_forcing}
    schedule |= {key: value for key, value in (("k", teacher_forcing_k), ("c", teacher_forcing_c)) if value is not None}
    return Forecaster(n_features, horizon, seasonality, network=part,
                      teacher_forcing=spec("seqlit.schedules.TeacherForcingSchedule", **schedule),  # type: ignore[arg-type]
                      **rest)
