import pytest
import torch

from sppnet.engine.sampling import EpochBatches, SeededCollate, SeededDataset


@pytest.mark.parametrize(
    "n, b, drop_last", [(10, 4, True), (10, 4, False), (8, 4, True), (3, 4, False)]
)
def test_epoch_batches_cover_the_epoch_and_resume_anywhere(n, b, drop_last):
    indices = list(range(100, 100 + n))
    full = list(EpochBatches(indices, 3, b, 0, drop_last))
    assert len(full) == len(EpochBatches(indices, 3, b, 0, drop_last))
    assert all(len(x) == b for x in full[:-1]) and (not drop_last or all(len(x) == b for x in full))
    flat = [i for batch in full for _, i in batch]
    assert flat == indices[: len(flat)] and all(e == 3 for batch in full for e, _ in batch)
    for start in range(len(full) + 1):
        assert list(EpochBatches(indices, 3, b, start, drop_last)) == full[start:]


class Noisy:
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return torch.rand(2) + i


def test_seeded_dataset_items_depend_on_identity_not_order():
    data = SeededDataset(Noisy(), seed=7)
    forward = {i: data[(0, i)][2] for i in range(5)}
    torch.rand(10)  # disturb the global stream
    backward = {i: data[(0, i)][2] for i in reversed(range(5))}
    assert all(torch.equal(forward[i], backward[i]) for i in range(5))
    assert not torch.equal(data[(1, 0)][2], forward[0])  # another epoch, another draw
    assert not torch.equal(SeededDataset(Noisy(), seed=8)[(0, 0)][2], forward[0])


def test_seeded_dataset_leaves_the_callers_stream_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    SeededDataset(Noisy(), seed=1)[(0, 2)]
    assert torch.equal(torch.rand(3), expected)


def test_seeded_collate_is_deterministic_per_batch():
    collate = SeededCollate(lambda items: torch.stack(items) + torch.rand(1), seed=3)
    items = [(0, 4, torch.zeros(2)), (0, 9, torch.ones(2))]
    a, b = collate(items), collate(items)
    assert torch.equal(a, b)
    assert not torch.equal(collate([(1, 4, torch.zeros(2)), (1, 9, torch.ones(2))]), a)
