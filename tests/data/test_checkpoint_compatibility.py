"""The data side's checkpoint checks all go through `seqlit.errors.check_checkpoint_matches`: each message names
the setting, the checkpoint's value, this run's value and the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqlit.data.normalise import FeatureNormalizer
from seqlit.data.scaling import SeriesScaler
from seqlit.data.sources import panel_from_frame
from seqlit.errors import CheckpointMismatchError


def test_normaliser_with_other_channels_is_refused() -> None:
    fitted = FeatureNormalizer().fit([np.ones((4, 3)), np.zeros((2, 3))])
    other = FeatureNormalizer().fit([np.ones((4, 2))])
    with pytest.raises(CheckpointMismatchError, match=r"trained with feature channels 3 but this run has 2; resume or "
                                                      r"predict with the feature columns used in training"):
        other.load_state_dict(fitted.state_dict())
    fresh = FeatureNormalizer()
    fresh.load_state_dict(fitted.state_dict())  # nothing fitted yet: the checkpoint's numbers are taken
    np.testing.assert_allclose(fresh.mean, fitted.mean)


def _panel(entities: str):  # -> SeriesPanel
    rows = [{"entity": e, "time": t, "target": float(t + ord(e))} for e in entities for t in range(6)]
    return panel_from_frame(pd.DataFrame(rows))


def test_series_scaling_of_other_entities_is_refused() -> None:
    saved = SeriesScaler().fit(_panel("ab"), np.array([4, 4])).state_dict()
    current = SeriesScaler().fit(_panel("ac"), np.array([4, 4]))
    with pytest.raises(CheckpointMismatchError, match=r"trained with series scaling for the entities \['a', 'b'\] but "
                                                      r"this run has \['a', 'c'\]; the checkpoint lacks e\.g\. \['c'\]"
                                                      r".*use data\.scaling: context"):
        current.load_state_dict(saved)
    same = SeriesScaler().fit(_panel("ab"), np.array([4, 4]))
    same.load_state_dict(saved)
    assert set(same.stats) == {"a", "b"}
