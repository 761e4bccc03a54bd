import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlit.data.collate import Sample, SequenceCollator
from seqlit.types import IGNORE_INDEX


def _sample(index: int, length: int, n_features: int = 3) -> Sample:
    return Sample(index=index, inputs=torch.randn(length, n_features), target=torch.tensor(index % 2))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=20))
def test_collate_builds_consistent_batch(lengths: list[int]) -> None:
    samples = [_sample(i, n) for i, n in enumerate(lengths)]
    batch = SequenceCollator()(samples)
    assert batch.inputs.shape == (len(lengths), max(lengths), 3)
    assert batch.lengths.tolist() == lengths
    assert batch.mask.sum(dim=1).tolist() == lengths
    assert batch.indices.tolist() == list(range(len(lengths)))
    assert batch.n_tokens == sum(lengths)
    assert batch.n_tokens + batch.n_pad == batch.mask.numel()
    assert torch.all(batch.inputs[~batch.mask] == 0.0)
    for row, sample in enumerate(samples):
        assert torch.equal(batch.inputs[row, : lengths[row]], sample["inputs"])


def test_per_step_targets_are_padded_with_ignore_index() -> None:
    samples = [
        Sample(index=0, inputs=torch.zeros(3, dtype=torch.long), target=torch.tensor([1, 2, 3])),
        Sample(index=1, inputs=torch.zeros(1, dtype=torch.long), target=torch.tensor([4])),
    ]
    batch = SequenceCollator()(samples)
    assert batch.targets.tolist() == [[1, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch.padding_ratio == 2 / 6


def test_batches_copy_to_cuda_asynchronously_by_default_and_elsewhere_synchronously() -> None:
    from seqlit.types import _non_blocking

    assert _non_blocking("cuda", None) is True and _non_blocking(torch.device("cuda", 1), None) is True
    assert _non_blocking("cpu", None) is False and _non_blocking("mps", None) is False
    assert _non_blocking("cuda", False) is False  # an explicit request wins
