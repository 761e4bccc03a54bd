"""Per-channel feature scaling fitted on the training split only and stored with the checkpoint."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seqlit.errors import DataError, check_checkpoint_matches


class FeatureNormalizer:
    """Standardises each feature channel with the mean and std of the *training* steps.

    Fitting on anything but the training split leaks future statistics into the model, so the
    DataModule fits it once on train and every split (and `seqlit predict`) reuses the same numbers.
    """

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = epsilon
        self.mean: np.ndarray | None = None  # (F,)
        self.std: np.ndarray | None = None  # (F,)

    @property
    def is_fitted(self) -> bool:
        return self.mean is not None

    def fit(self, sequences: Sequence[np.ndarray]) -> FeatureNormalizer:
        if len(sequences) == 0:
            raise DataError("cannot fit the feature normaliser on an empty training split.")
        steps = np.concatenate(sequences, axis=0).astype(np.float64)  # (sum T, F)
        self.mean = steps.mean(axis=0)
        # A constant channel gets std 1 so it maps to zeros instead of dividing by ~0.
        std = steps.std(axis=0)
        self.std = np.where(std < self.epsilon, 1.0, std)
        return self

    def transform(self, sequence: np.ndarray) -> np.ndarray:
        """(T, F) -> (T, F) standardised, float32."""
        if self.mean is None or self.std is None:
            raise RuntimeError("FeatureNormalizer.transform called before fit/load_state_dict")
        if sequence.shape[-1] != self.mean.shape[0]:
            raise DataError(
                f"data has {sequence.shape[-1]} feature channels but the normaliser was fitted on "
                f"{self.mean.shape[0]}; use the same feature columns as in training."
            )
        return ((sequence - self.mean) / self.std).astype(np.float32)

    def state_dict(self) -> dict[str, list[float] | None]:
        return {
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
        }

    def load_state_dict(self, state: dict[str, list[float] | None]) -> None:
        if state.get("mean") is None:
            return
        mean = np.asarray(state["mean"], dtype=np.float64)
        check_checkpoint_matches(
            "feature channels", mean.shape[0], None if self.mean is None else self.mean.shape[0],
            fix="resume or predict with the feature columns used in training.",
        )
        self.mean = mean
        self.std = np.asarray(state["std"], dtype=np.float64)
