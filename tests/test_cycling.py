"""The training loops' endless batches: a resumed run sees exactly the batches it would have, and the loaders'
workers are shut down when the loop is left, by an error (or a stop on a signal) as well as at its end."""

import multiprocessing

import pytest
from torch.utils.data import Dataset

from bdl.data.datasets import cycling, make_loader


class Numbers(Dataset):
    epoch = 0  # set by the cycling loader at each pass, as on the real datasets

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {"index": i, "epoch": self.epoch}


def batches(it, n):
    return [(b["index"].tolist(), b["epoch"].tolist()) for b in (next(it) for _ in range(n))]


def test_a_start_step_continues_the_same_sequence_across_epochs():
    loader = make_loader(Numbers(), 2, True, 0, seed=3, drop_last=True)
    with cycling(loader, start_step=0) as (it,):
        whole = batches(it, 7)  # two batches per epoch (drop_last): 3.5 epochs
    with cycling(loader, start_step=3) as (it,):
        assert batches(it, 4) == whole[3:]
    assert {tuple(e) for _, e in whole} == {(0, 0), (1, 1), (2, 2), (3, 3)}


def test_none_stays_none_and_workers_end_when_an_error_leaves_the_block():
    loader = make_loader(Numbers(), 2, True, 2, seed=0, drop_last=True)
    before = set(multiprocessing.active_children())  # another test's processes are not this block's
    with pytest.raises(RuntimeError, match="left the loop"):
        with cycling(loader, None, start_step=1) as (it, nothing):
            assert nothing is None
            next(it)
            assert set(multiprocessing.active_children()) - before  # the workers of the pass in progress
            raise RuntimeError("left the loop")
    assert set(multiprocessing.active_children()) == before
