"""Lesson 05a's demos (lossnotes.lessons.accumulation_ddp): bad input is refused with the argument and the value named."""
import pytest
import torch

from lossnotes.lessons.accumulation_ddp import ddp_epoch_loss, digit_sequences, padded_shard


@pytest.mark.parametrize('kw,exc,msg', [
    (dict(seed=None), TypeError, r'seed must be an integer, got None'),
    (dict(seed=1.5), TypeError, r'seed must be an integer, got 1.5'),
    (dict(seed=True), TypeError, r'seed must be an integer, got True'),
    (dict(epoch=None), TypeError, r'epoch must be an integer, got None'),
    (dict(epoch=2.0), TypeError, r'epoch must be an integer, got 2.0'),
    (dict(epoch=-1), ValueError, r'epoch must be in \[0, inf\), got -1'),
])
@pytest.mark.parametrize('shuffle', [False, True])
def test_padded_shard_refuses_bad_seed_and_epoch(kw, exc, msg, shuffle):
    "Refused whether or not the seed is used (a wrong seed must not pass silently while shuffle=False)."
    with pytest.raises(exc, match=msg): padded_shard(9, 2, 0, shuffle=shuffle, **kw)


def test_padded_shard_refuses_empty_data_and_accepts_a_negative_seed():
    with pytest.raises(ValueError, match=r'num_items must be in \[1, inf\), got 0'): padded_shard(0, 2, 0)
    with pytest.raises(TypeError, match=r'num_items must be an integer, got None'): padded_shard(None, 2, 0)
    from torch.utils.data import DistributedSampler
    ref = DistributedSampler(range(9), num_replicas=2, rank=1, shuffle=True, seed=-3)
    assert padded_shard(9, 2, 1, shuffle=True, seed=-3) == (list(ref), 4)  # an integer seed of any sign, as torch's


@pytest.mark.parametrize('kw,exc,msg', [
    (dict(seed=None), TypeError, r'seed must be an integer, got None'),
    (dict(seed='0'), TypeError, r"seed must be an integer, got '0'"),
    (dict(seed=0.5), TypeError, r'seed must be an integer, got 0.5'),
])
def test_ddp_epoch_loss_refuses_bad_seed_before_starting_processes(kw, exc, msg):
    with pytest.raises(exc, match=msg): ddp_epoch_loss([1., 2., 3.], **kw)


@pytest.mark.parametrize('data', [[], torch.empty(0), torch.empty(0, dtype=torch.float64)])
def test_ddp_epoch_loss_refuses_empty_data(data):
    with pytest.raises(ValueError, match=r'item_losses must hold at least one loss, got'): ddp_epoch_loss(data)


def test_ddp_epoch_loss_refuses_non_losses():
    with pytest.raises(TypeError, match=r'item_losses must be a 1-D sequence of numbers \(list, ndarray or tensor\), got None'):
        ddp_epoch_loss(None)
    with pytest.raises(ValueError, match=r'item_losses must be 1-D, got shape \(2, 2\)'): ddp_epoch_loss(torch.ones(2, 2))


def test_digit_sequences_refuses_bad_sizes():
    with pytest.raises(ValueError, match=r'num_sequences must be in \[1, inf\), got 0'): digit_sequences(0)
    with pytest.raises(TypeError, match=r'max_len must be an integer, got 2.5'): digit_sequences(3, 2.5)
