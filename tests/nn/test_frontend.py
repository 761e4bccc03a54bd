"""`ConvFrontend` and the per-series transforms: strides sized from the data, padding never leaks in."""

import pytest
import torch

from seqlit.data.collate import Sample, SequenceCollator
from seqlit.errors import SettingError
from seqlit.nn import ConvFrontend
from seqlit.nn.series import instance_normalise, jitter_and_scale
from seqlit.tasks import SequenceClassifier

LENGTHS = [37, 5, 120, 1, 64]


@pytest.mark.parametrize(("longest", "max_steps", "stride"), [(None, 200, 1), (150, 200, 1), (1460, 200, 8),
                                                              (1000, 100, 10), (1000, None, 1)])
def test_stride_keeps_the_longest_training_sequence_within_max_steps(longest: int | None, max_steps: int | None,
                                                                     stride: int) -> None:
    frontend = ConvFrontend(2, longest, max_steps=max_steps)
    assert frontend.stride == stride
    assert frontend.convs[0].kernel_size[0] >= 2 * stride + 1 or stride == 1  # no input step is skipped
    if longest is not None and max_steps is not None:
        assert int(frontend.output_lengths(torch.tensor([longest]))) <= max_steps


@pytest.mark.parametrize("stride", [1, 3])
def test_outputs_and_lengths_do_not_depend_on_batch_padding(stride: int) -> None:
    torch.manual_seed(0)
    frontend = ConvFrontend(3, stride=stride, num_layers=3).eval()
    sequences = [torch.randn(n, 3) for n in LENGTHS]
    lengths = torch.tensor(LENGTHS)
    padded = torch.full((len(LENGTHS), max(LENGTHS), 3), 123.0)  # garbage padding must not matter
    for row, sequence in enumerate(sequences):
        padded[row, : len(sequence)] = sequence
    features, new_lengths = frontend(padded, lengths)
    assert new_lengths.tolist() == [-(-n // stride) for n in LENGTHS]
    assert features.shape == (len(LENGTHS), -(-max(LENGTHS) // stride), 64)
    for row, sequence in enumerate(sequences):
        alone, alone_length = frontend(sequence.unsqueeze(0), torch.tensor([len(sequence)]))
        assert int(alone_length) == int(new_lengths[row])
        torch.testing.assert_close(features[row, : int(alone_length)], alone[0], rtol=1e-5, atol=1e-5)
        assert float(features[row, int(alone_length) :].abs().sum()) == 0.0


def test_even_kernel_is_refused_with_the_fix() -> None:
    with pytest.raises(SettingError, match="kernel_size must be odd"):
        ConvFrontend(2, kernel_size=4)


def test_instance_normalise_standardises_each_series_over_its_own_steps_only() -> None:
    values = torch.zeros(2, 6, 1)
    values[0, :4, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    values[1, :, 0] = torch.arange(6.0) * 100 + 7
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    normalised = instance_normalise(values, mask)
    for row, length in enumerate((4, 6)):
        series = normalised[row, :length, 0]
        assert float(series.mean()) == pytest.approx(0.0, abs=1e-5)
        assert float(series.std(unbiased=False)) == pytest.approx(1.0, abs=1e-3)
    assert normalised[0, 4:].abs().max() == 0.0


def test_augmentation_keeps_padding_at_zero_and_zero_settings_change_nothing() -> None:
    torch.manual_seed(0)
    values = torch.randn(3, 8, 2)
    mask = torch.arange(8) < torch.tensor([8, 3, 5]).unsqueeze(1)
    values = values * mask.unsqueeze(-1)
    augmented = jitter_and_scale(values, mask, jitter=0.1, scaling=0.2)
    assert augmented[~mask].abs().max() == 0.0
    assert not torch.equal(augmented[mask], values[mask])
    torch.testing.assert_close(jitter_and_scale(values, mask, 0.0, 0.0), values)


def test_classifier_with_frontend_instance_norm_and_mean_max_ignores_padding() -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(2, 3, longest_sequence=120, instance_norm=True, pooling="mean_max",
                               frontend={"class_path": "seqlit.nn.ConvFrontend", "init_args": {"max_steps": 40}}).eval()
    assert model.frontend is not None and model.frontend.stride == 3
    samples = [Sample(index=i, inputs=torch.randn(n, 2), target=torch.tensor(i % 3)) for i, n in enumerate(LENGTHS)]
    batch = SequenceCollator()(samples)
    logits = model(batch.inputs, batch.lengths, batch.mask)  # (B, C)
    for row, sample in enumerate(samples):
        alone = SequenceCollator()([sample])
        torch.testing.assert_close(logits[row], model(alone.inputs, alone.lengths, alone.mask)[0], rtol=1e-4, atol=1e-5)


def test_negative_augmentation_is_refused_at_construction() -> None:
    with pytest.raises(SettingError, match="model.jitter must be >= 0"):
        SequenceClassifier(2, 3, jitter=-0.1)
