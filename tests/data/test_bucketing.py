import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.fabric.utilities.data import _replace_dunder_methods, _set_sampler_epoch
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities.data import _update_dataloader
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, SequentialSampler

from seqlit.data.bucketing import BucketBatchSampler, random_batches
from seqlit.padding import padding_ratio


def long_tailed_lengths(n_items: int, seed: int = 0) -> list[int]:
    """Lognormal lengths (median ~55, a long tail into the hundreds), like real text or speech."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(mean=4.0, sigma=0.8, size=n_items), 1, 500).astype(int).tolist()


class IndexDataset(Dataset[int]):
    """Returns its own index, so a loader's output shows which items it served."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def __len__(self) -> int:
        return self.n_items

    def __getitem__(self, index: int) -> int:
        return index


def as_list(samples: list[int]) -> list[int]:
    return list(samples)


def rank_batches(lengths: list[int], num_replicas: int, epoch: int = 0, **kwargs: Any) -> list[list[list[int]]]:
    """Each rank's batches for `epoch`, checking that len() matches what the rank actually yields."""
    per_rank = []
    for rank in range(num_replicas):
        sampler = BucketBatchSampler(lengths, num_replicas=num_replicas, rank=rank, **kwargs)
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(sampler) == len(batches)
        per_rank.append(batches)
    return per_rank


def assert_each_index_once(per_rank: list[list[list[int]]], n_items: int) -> None:
    seen = Counter(i for batches in per_rank for batch in batches for i in batch)
    assert sorted(seen) == list(range(n_items))
    assert set(seen.values()) == {1}


def assert_caps(batches: list[list[int]], lengths: list[int], batch_size: int | None, max_tokens: int | None) -> None:
    for batch in batches:
        assert len(batch) >= 1
        if batch_size is not None:
            assert len(batch) <= batch_size
        if max_tokens is not None:
            assert len(batch) * max(lengths[i] for i in batch) <= max_tokens


CAPS = [
    pytest.param({"batch_size": 16}, id="batch_size"),
    pytest.param({"batch_size": None, "max_tokens": 1200}, id="max_tokens"),
    pytest.param({"batch_size": 16, "max_tokens": 800}, id="both"),
]


@pytest.mark.parametrize("caps", CAPS)
@pytest.mark.parametrize("num_replicas", [1, 2, 3])
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_index_exactly_once_with_equal_batch_counts(
    caps: dict[str, int | None], num_replicas: int, shuffle: bool
) -> None:
    lengths = long_tailed_lengths(503)
    for epoch in range(3):
        per_rank = rank_batches(lengths, num_replicas, epoch, shuffle=shuffle, bucket_size_multiplier=4, **caps)
        assert len({len(batches) for batches in per_rank}) == 1
        assert_each_index_once(per_rank, len(lengths))
        for batches in per_rank:
            assert_caps(batches, lengths, caps.get("batch_size"), caps.get("max_tokens"))


def test_max_tokens_makes_batches_of_short_items_larger() -> None:
    lengths = [10] * 50 + [100] * 50
    (batches,) = rank_batches(lengths, 1, batch_size=None, max_tokens=400, shuffle=False)
    assert sorted(len(batch) for batch in batches) == [2] + [4] * 12 + [10, 40]
    assert_caps(batches, lengths, None, 400)


def test_shuffle_changes_with_epoch_and_is_reproducible() -> None:
    lengths = long_tailed_lengths(400)
    sampler = BucketBatchSampler(lengths, batch_size=8, bucket_size_multiplier=10, seed=3)
    epoch_0 = list(sampler)
    assert list(sampler) == epoch_0
    assert list(BucketBatchSampler(lengths, batch_size=8, bucket_size_multiplier=10, seed=3)) == epoch_0
    assert list(BucketBatchSampler(lengths, batch_size=8, bucket_size_multiplier=10, seed=4)) != epoch_0
    sampler.set_epoch(1)
    epoch_1 = list(sampler)
    assert epoch_1 != epoch_0
    assert sorted(map(sorted, epoch_1)) != sorted(map(sorted, epoch_0)), "pools, not just batch order, reshuffle"
    sampler.set_epoch(0)
    assert list(sampler) == epoch_0


def test_no_shuffle_is_sorted_by_length_and_deterministic() -> None:
    lengths = long_tailed_lengths(300)
    sampler = BucketBatchSampler(lengths, batch_size=7, shuffle=False)
    batches = list(sampler)
    flat = [i for batch in batches for i in batch]
    assert flat == sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    sampler.set_epoch(5)
    assert list(sampler) == batches
    assert list(BucketBatchSampler(lengths, batch_size=7, shuffle=False, seed=9)) == batches


def test_set_epoch_on_inner_sampler_changes_order() -> None:
    """Lightning only calls `batch_sampler.sampler.set_epoch`, never the batch sampler's own."""
    lengths = long_tailed_lengths(300)
    sampler = BucketBatchSampler(lengths, batch_size=8, max_tokens=800, bucket_size_multiplier=5)
    epoch_0 = list(sampler)
    sampler.sampler.set_epoch(1)  # type: ignore[attr-defined]
    assert sampler.epoch == 1
    epoch_1 = list(sampler)
    assert epoch_1 != epoch_0
    assert len(sampler) == len(epoch_1)
    assert sorted(i for batch in epoch_1 for i in batch) == list(range(len(lengths)))


def test_distributed_sampler_supplies_replicas_rank_and_epoch() -> None:
    lengths = long_tailed_lengths(101)
    dataset = IndexDataset(len(lengths))
    injected = DistributedSampler(dataset, num_replicas=3, rank=2, shuffle=False)
    sampler = BucketBatchSampler(lengths, batch_size=4, sampler=injected)
    assert (sampler.num_replicas, sampler.rank) == (3, 2)
    assert sampler.sampler is injected
    injected.set_epoch(4)
    reference = BucketBatchSampler(lengths, batch_size=4, num_replicas=3, rank=2)
    reference.set_epoch(4)
    assert list(sampler) == list(reference)
    explicit = BucketBatchSampler(lengths, batch_size=4, num_replicas=2, rank=0, sampler=injected)
    assert (explicit.num_replicas, explicit.rank) == (2, 0)


def test_non_distributed_sampler_is_ignored() -> None:
    lengths = long_tailed_lengths(50)
    sampler = BucketBatchSampler(lengths, batch_size=4, sampler=SequentialSampler(range(50)))
    assert (sampler.num_replicas, sampler.rank) == (1, 0)
    assert list(sampler) == list(BucketBatchSampler(lengths, batch_size=4))
    assert list(sampler.sampler) == list(range(50))
    assert len(sampler.sampler) == 50  # type: ignore[arg-type]


def test_process_group_supplies_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 4)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 3)
    sampler = BucketBatchSampler(long_tailed_lengths(40), batch_size=4)
    assert (sampler.num_replicas, sampler.rank) == (4, 3)


def test_bucketing_cuts_padding_far_below_random_batching() -> None:
    lengths = long_tailed_lengths(5000)
    bucketed = list(BucketBatchSampler(lengths, batch_size=32))
    bucketed_ratio = padding_ratio(lengths, bucketed)
    random_ratio = float(np.mean([padding_ratio(lengths, random_batches(len(lengths), 32, seed)) for seed in range(3)]))
    print(f"long-tailed lengths padding ratio: bucketed {bucketed_ratio:.3f}, random {random_ratio:.3f}")
    assert bucketed_ratio <= 0.05
    assert random_ratio >= 0.3


def test_padding_ratio_counts_padded_steps() -> None:
    lengths = [1, 3, 2, 2]
    # Batch [0, 1] pads to 2x3 = 6 steps holding 4 real ones; batch [2, 3] has no padding.
    assert padding_ratio(lengths, [[0, 1], [2, 3]]) == pytest.approx(2 / 10)
    assert padding_ratio(lengths, [[2, 3]]) == 0.0
    assert padding_ratio(lengths, []) == 0.0


def test_random_batches_is_a_seeded_shuffled_partition() -> None:
    batches = random_batches(10, 4, seed=1)
    assert [len(batch) for batch in batches] == [4, 4, 2]
    assert sorted(i for batch in batches for i in batch) == list(range(10))
    assert random_batches(10, 4, seed=1) == batches
    assert random_batches(10, 4, seed=2) != batches


def test_drop_last_keeps_full_batches_only_and_equal_counts() -> None:
    lengths = long_tailed_lengths(203)
    for num_replicas in (1, 2, 3):
        per_rank = rank_batches(lengths, num_replicas, shuffle=True, drop_last=True, batch_size=8)
        assert len({len(batches) for batches in per_rank}) == 1
        flat = [i for batches in per_rank for batch in batches for i in batch]
        assert len(flat) == len(set(flat))
        assert all(len(batch) == 8 for batches in per_rank for batch in batches)
        # Pools of 100 * 8 items hold all 203, so only the tail (3 items) and the surplus go.
        assert len(flat) >= len(lengths) - 3 - (num_replicas - 1) * 8


def test_drop_last_keeps_batches_closed_by_max_tokens() -> None:
    lengths = [10] * 64 + [100] * 10
    (batches,) = rank_batches(lengths, 1, batch_size=16, max_tokens=400, drop_last=True, shuffle=False)
    assert [len(batch) for batch in batches] == [16] * 4 + [4] * 2
    assert sorted(i for batch in batches for i in batch) == list(range(64)) + list(range(64, 72))


def test_uneven_batch_count_is_fixed_by_halving_the_largest_batches() -> None:
    lengths = [5] * 10 + [50] * 3
    # Unsplit: [8 x 5], [2 x 5, 1 x 50], [2 x 50] -> 3 batches; 4 replicas need one more.
    per_rank = rank_batches(lengths, 4, shuffle=False, batch_size=8, max_tokens=400)
    assert [len(batches) for batches in per_rank] == [1, 1, 1, 1]
    assert sorted(len(batches[0]) for batches in per_rank) == [2, 3, 4, 4]
    assert_each_index_once(per_rank, len(lengths))


def test_too_few_multi_item_batches_merge_with_a_warning() -> None:
    lengths = [3, 1, 4, 1, 5]
    with pytest.warns(UserWarning, match="drop_last=True"):
        per_rank = rank_batches(lengths, 3, batch_size=1)
    assert [len(batches) for batches in per_rank] == [1, 1, 1]
    assert_each_index_once(per_rank, len(lengths))
    assert sorted(len(batches[0]) for batches in per_rank) == [1, 2, 2]
    # The cheapest merges pair the two length-1 items, then lengths 3 and 4 (not 1, 1, 3 again).
    assert max(max(lengths[i] for i in batches[0]) for batches in per_rank if len(batches[0]) == 2) <= 4


def test_len_is_cached_per_epoch_and_follows_the_epoch() -> None:
    lengths = long_tailed_lengths(500)
    sampler = BucketBatchSampler(lengths, batch_size=None, max_tokens=900, bucket_size_multiplier=1)
    counts = set()
    for epoch in range(6):
        sampler.set_epoch(epoch)
        n_batches = len(sampler)
        assert n_batches == len(list(sampler))
        counts.add(n_batches)
    assert len(counts) > 1, "with max_tokens and small pools the batch count varies by epoch"


def make_loader(dataset: IndexDataset, lengths: list[int], **kwargs: Any) -> DataLoader:
    """Builds the loader the way Lightning calls a `*_dataloader` hook, recording init args."""
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = DataLoader(dataset, batch_sampler=BucketBatchSampler(lengths, **kwargs), collate_fn=as_list)
        # A hook that asks for len() must not leak its cached plan into re-instantiated samplers.
        assert len(loader) > 0
    return loader


def test_lightning_reinstantiation_injects_distributed_sampler() -> None:
    lengths = long_tailed_lengths(211)
    dataset = IndexDataset(len(lengths))
    loader = make_loader(dataset, lengths, batch_size=8, max_tokens=1000, seed=5)
    per_rank: list[list[list[int]]] = []
    for rank in range(2):
        injected = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=False)
        new_loader = _update_dataloader(loader, injected, mode=RunningStage.TRAINING)
        batch_sampler = new_loader.batch_sampler
        assert isinstance(batch_sampler, BucketBatchSampler)
        assert (batch_sampler.num_replicas, batch_sampler.rank) == (2, rank)
        assert (batch_sampler.batch_size, batch_sampler.max_tokens, batch_sampler.seed) == (8, 1000, 5)
        epoch_0 = list(new_loader)
        assert len(new_loader) == len(epoch_0)
        per_rank.append(epoch_0)
        _set_sampler_epoch(new_loader, 3)
        assert batch_sampler.epoch == 3
        epoch_3 = list(new_loader)
        assert epoch_3 != epoch_0
        assert len(new_loader) == len(epoch_3)
    assert len(per_rank[0]) == len(per_rank[1])
    assert_each_index_once(per_rank, len(lengths))


@pytest.mark.parametrize("bucketing", [True, False])
def test_evaluation_loaders_give_each_item_of_an_odd_split_to_one_rank(
    bucketing: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning injects a padding DistributedSampler (101 items -> 2 x 51) into evaluation loaders; the data
    modules' loaders, bucketed or not, still score every item exactly once."""
    from seqlit.data.datamodules import loaders

    monkeypatch.setattr(loaders, "resolve_num_replicas", lambda *_: 2)  # as in a 2-process group
    lengths = long_tailed_lengths(101)
    dataset = IndexDataset(len(lengths))
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = loaders.length_bucketed_loader(dataset, lengths, as_list, batch_size=8, shuffle=False,
                                                bucketing=bucketing, seed=0)
    per_rank = []
    for rank in range(2):
        injected = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=False)
        per_rank.append(list(_update_dataloader(loader, injected, mode=RunningStage.VALIDATING)))
    assert len(per_rank[0]) == len(per_rank[1])
    assert_each_index_once(per_rank, len(lengths))


def test_without_sorting_batches_are_runs_of_the_order() -> None:
    lengths = long_tailed_lengths(23)
    in_order = list(BucketBatchSampler(lengths, batch_size=5, shuffle=False, sort_by_length=False))
    assert in_order == [list(range(start, min(start + 5, 23))) for start in range(0, 23, 5)]
    shuffled = list(BucketBatchSampler(lengths, batch_size=5, seed=4, sort_by_length=False))
    order = torch.randperm(23, generator=torch.Generator().manual_seed(4)).tolist()
    assert shuffled == [order[start : start + 5] for start in range(0, 23, 5)]


def test_lightning_predict_reinstantiation_yields_every_index() -> None:
    lengths = long_tailed_lengths(101)
    dataset = IndexDataset(len(lengths))
    loader = make_loader(dataset, lengths, batch_size=8, shuffle=False, drop_last=True)
    assert sum(len(batch) for batch in loader) < len(lengths)
    new_loader = _update_dataloader(loader, SequentialSampler(dataset), mode=RunningStage.PREDICTING)
    wrapped = new_loader.batch_sampler._batch_sampler  # type: ignore[union-attr]
    assert isinstance(wrapped, BucketBatchSampler)
    assert wrapped.drop_last is False
    assert_each_index_once([list(new_loader)], len(lengths))


def test_lightning_distributed_predict_splits_every_index_once() -> None:
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSamplerWrapper

    lengths = long_tailed_lengths(101)
    dataset = IndexDataset(len(lengths))
    loader = make_loader(dataset, lengths, batch_size=8, shuffle=False)
    per_rank = []
    for rank in range(3):
        injected = UnrepeatedDistributedSamplerWrapper(loader.sampler, num_replicas=3, rank=rank, shuffle=False)
        new_loader = _update_dataloader(loader, injected, mode=RunningStage.PREDICTING)
        per_rank.append(list(new_loader))
    assert len({len(batches) for batches in per_rank}) == 1
    assert_each_index_once(per_rank, len(lengths))


class RecordingModule(lightning.LightningModule):
    """Records which dataset indices each epoch trains on (per rank, into files when a path is given)."""

    def __init__(self, lengths: list[int], record_dir: str | None = None) -> None:
        super().__init__()
        self.lengths = lengths
        self.record_dir = record_dir
        self.layer = torch.nn.Linear(1, 1)
        self.seen: dict[int, list[list[int]]] = {}

    def train_dataloader(self) -> DataLoader:
        sampler = BucketBatchSampler(self.lengths, batch_size=4, bucket_size_multiplier=2)
        return DataLoader(IndexDataset(len(self.lengths)), batch_sampler=sampler, collate_fn=as_list)

    def training_step(self, batch: list[int], batch_idx: int) -> torch.Tensor:
        self.seen.setdefault(self.current_epoch, []).append(list(batch))
        return self.layer(torch.ones(1, 1)).sum()

    def on_train_epoch_end(self) -> None:
        if self.record_dir is not None:
            path = Path(self.record_dir) / f"rank{self.global_rank}_epoch{self.current_epoch}.json"
            sampler = self.trainer.train_dataloader.batch_sampler.sampler  # type: ignore[union-attr]
            record = {"batches": self.seen[self.current_epoch], "sampler": type(sampler).__name__}
            path.write_text(json.dumps(record))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_trainer_advances_the_epoch_of_the_bucketing() -> None:
    lengths = long_tailed_lengths(37)
    module = RecordingModule(lengths)
    trainer = lightning.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module)
    assert sorted(module.seen) == [0, 1, 2]
    for batches in module.seen.values():
        assert_each_index_once([batches], len(lengths))
    assert module.seen[0] != module.seen[1] != module.seen[2]


@pytest.mark.ddp
def test_ddp_ranks_share_each_epoch_exactly_once(tmp_path: Path) -> None:
    lengths = long_tailed_lengths(37)
    module = RecordingModule(lengths, record_dir=str(tmp_path))
    trainer = lightning.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=True,
    )
    trainer.fit(module)
    for epoch in range(2):
        records = [json.loads((tmp_path / f"rank{rank}_epoch{epoch}.json").read_text()) for rank in range(2)]
        # Lightning re-instantiated our batch sampler around its own DistributedSampler.
        assert {record["sampler"] for record in records} == {"DistributedSampler"}
        per_rank = [record["batches"] for record in records]
        assert len(per_rank[0]) == len(per_rank[1])
        assert_each_index_once(per_rank, len(lengths))
    epochs = [json.loads((tmp_path / f"rank0_epoch{epoch}.json").read_text())["batches"] for epoch in range(2)]
    assert epochs[0] != epochs[1]


@settings(max_examples=250, deadline=None)
@given(data=st.data())
def test_property_every_rank_equal_and_every_index_once(data: st.DataObject) -> None:
    lengths = data.draw(
        st.lists(st.one_of(st.integers(1, 500), st.sampled_from([1, 500])), min_size=1, max_size=300), label="lengths"
    )
    num_replicas = data.draw(st.integers(1, min(4, len(lengths))), label="num_replicas")
    batch_size = data.draw(st.integers(1, 64), label="batch_size")
    max_tokens = data.draw(st.none() | st.integers(max(lengths), 4 * max(lengths)), label="max_tokens")
    shuffle = data.draw(st.booleans(), label="shuffle")
    sort_by_length = data.draw(st.booleans(), label="sort_by_length")
    multiplier = data.draw(st.none() | st.integers(1, 5), label="bucket_size_multiplier")
    epoch = data.draw(st.integers(0, 3), label="epoch")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        per_rank = rank_batches(
            lengths,
            num_replicas,
            epoch,
            batch_size=batch_size,
            max_tokens=max_tokens,
            shuffle=shuffle,
            sort_by_length=sort_by_length,
            bucket_size_multiplier=multiplier,
        )
    assert len({len(batches) for batches in per_rank}) == 1
    assert_each_index_once(per_rank, len(lengths))
    if not caught:
        # Caps may be exceeded only by the warned-about merge of too few batches.
        for batches in per_rank:
            assert_caps(batches, lengths, batch_size, max_tokens)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"lengths": [3, 4], "batch_size": None}, "set batch_size.*max_tokens", id="no-cap"),
        pytest.param({"lengths": [3, 40, 4], "max_tokens": 30}, r"\(length 40.*max_tokens >= 40", id="tokens"),
        pytest.param({"lengths": []}, "lengths is empty", id="empty"),
        pytest.param({"lengths": [3, 0, 2]}, "item 1 has length 0", id="zero-length"),
        pytest.param({"lengths": [3.5, 2]}, "sequence of ints", id="float-length"),
        pytest.param({"lengths": [3, 2], "batch_size": 0}, "batch_size must be a positive int", id="batch-size"),
        pytest.param({"lengths": [3, 2], "batch_size": 2.5}, "batch_size must be an int", id="float-batch-size"),
        pytest.param({"lengths": [3, 2], "max_tokens": -5}, "max_tokens must be a positive int", id="max-tokens"),
        pytest.param({"lengths": [3, 2], "bucket_size_multiplier": 0}, "bucket_size_multiplier", id="multiplier"),
        pytest.param({"lengths": [3, 2], "num_replicas": 2, "rank": 2}, r"rank=2 is outside \[0, 2\)", id="rank"),
        pytest.param({"lengths": [3, 2], "num_replicas": 3, "rank": 0}, "2 items but 3 replicas", id="replicas"),
    ],
)
def test_bad_arguments_raise_helpful_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BucketBatchSampler(**kwargs)


def test_loader_workers_are_automatic_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from seqlit.data.datamodules import loaders

    monkeypatch.setattr(loaders.torch.cuda, "is_available", lambda: False)
    assert loaders.resolve_num_workers(None) == 0  # CPU: workers would take the model's cores
    assert loaders.resolve_num_workers(3) == 3
    monkeypatch.setattr(loaders.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(loaders.os, "cpu_count", lambda: 16)
    assert loaders.resolve_num_workers(None) == 4
    options = loaders.loader_options(list, num_workers=None, pin_memory=True, seed=0)
    assert options["num_workers"] == 4 and options["persistent_workers"] and options["prefetch_factor"] == 2
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        loaders.resolve_num_workers(-1)
