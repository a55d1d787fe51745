"""Bad and edge input to lossnotes.accumulate, table-driven: every call either raises a ValueError/TypeError whose
message names the argument (asserted), or returns a result checked against an oracle (numpy.average with weights,
a float64 sum, the real DistributedSampler)."""
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from lossnotes.accumulate import LossMeter, batch_means, epoch_summaries, real_items

NAN, INF = float('nan'), float('inf')
T = torch.tensor
F64 = torch.float64


def upd(*calls, **meter_kw):
    "A LossMeter after `calls`, each `(args, kwargs)` or `args` for `update`."
    m = LossMeter(**meter_kw)
    for c in calls:
        args, kw = c if isinstance(c, tuple) and len(c) == 2 and isinstance(c[1], dict) else (c, {})
        m.update(*args, **kw)
    return m


def mean_of(*calls, **meter_kw) -> float: return upd(*calls, **meter_kw).compute().item()
def avg(values, weights=None) -> float: return float(np.average(np.asarray(values, dtype=np.float64), weights=weights))
def state(**kw): return LossMeter().load_state_dict(kw)
def state_mean(**kw):
    m = LossMeter(); m.load_state_dict(kw); return m.compute().item()


# (id, callable, exception type, the message must contain)
ERRORS = [
    # constructor
    ('max_items negative', lambda: LossMeter(max_items=-1), ValueError, 'max_items must be in [0, inf), got -1'),
    ('max_items float', lambda: LossMeter(max_items=2.5), TypeError, 'max_items must be an integer, got 2.5'),
    ('max_items bool', lambda: LossMeter(max_items=True), TypeError, 'max_items must be an integer, got True'),
    ('max_items inf', lambda: LossMeter(max_items=INF), TypeError, 'max_items must be an integer, got inf'),
    ('max_items tensor', lambda: LossMeter(max_items=T(5)), TypeError, 'max_items must be an integer, got tensor(5)'),
    ('skip_nonfinite str', lambda: LossMeter(skip_nonfinite='no'), TypeError, "skip_nonfinite must be a bool (True or False), got 'no'"),
    ('skip_nonfinite None', lambda: LossMeter(skip_nonfinite=None), TypeError, 'skip_nonfinite must be a bool (True or False), got None'),
    ('skip_nonfinite int', lambda: LossMeter(skip_nonfinite=1), TypeError, 'skip_nonfinite must be a bool (True or False), got 1'),
    ('fold_every, removed', lambda: LossMeter(fold_every=64), TypeError, "unexpected keyword argument 'fold_every'"),
    ('device int', lambda: LossMeter(device=3), TypeError, 'device must be a str, a torch.device or None, got 3'),
    ('device nonsense', lambda: LossMeter(device='gpu7'), ValueError, "device must name a torch device, got 'gpu7'"),
    ('positional argument', lambda: LossMeter(True), TypeError, 'positional argument'),
    # update: loss
    ('0-d tensor without n', lambda: LossMeter().update(T(2.)), TypeError, 'n is required for a batch mean'),
    ('float without n', lambda: LossMeter().update(2.0), TypeError, 'n is required for a batch mean (a 0-d loss or a number, got 2.0)'),
    ('numpy float without n', lambda: LossMeter().update(np.float32(2.0)), TypeError, 'n is required for a batch mean'),
    ('numpy array', lambda: LossMeter().update(np.array([1., 2.])), TypeError, 'loss must be a tensor or a real number, got array([1., 2.])'),
    ('numpy 0-d array', lambda: LossMeter().update(np.array(1.), n=1), TypeError, 'loss must be a tensor or a real number'),
    ('list', lambda: LossMeter().update([1., 2.]), TypeError, 'loss must be a tensor or a real number, got [1.0, 2.0]'),
    ('str', lambda: LossMeter().update('1.0', n=1), TypeError, "loss must be a tensor or a real number, got '1.0'"),
    ('None', lambda: LossMeter().update(None, n=1), TypeError, 'loss must be a tensor or a real number, got None'),
    ('bool', lambda: LossMeter().update(True, n=1), TypeError, 'loss must be a tensor or a real number, got True'),
    ('complex 0-d', lambda: LossMeter().update(T(1 + 1j), n=2), TypeError, 'loss must be real, got a complex tensor of dtype torch.complex64'),
    ('complex 1-D', lambda: LossMeter().update(T([1 + 1j, 2.])), TypeError, 'loss must be real'),
    ('complex python', lambda: LossMeter().update(1 + 1j, n=2), TypeError, 'loss must be a tensor or a real number, got (1+1j)'),
    ('int tensor', lambda: LossMeter().update(T([1, 2])), TypeError, 'loss must have a floating-point dtype (a loss), got torch.int64'),
    ('int 0-d tensor', lambda: LossMeter().update(T(3), n=2), TypeError, 'loss must have a floating-point dtype'),
    ('bool tensor', lambda: LossMeter().update(T([True, False])), TypeError, 'loss must have a floating-point dtype (a loss), got torch.bool'),
    ('huge python int', lambda: LossMeter().update(10 ** 400, n=1), ValueError, 'loss must fit in a float64'),
    ('meta loss into a cpu meter', lambda: upd((T([1.]),), (T([1.], device='meta'),)), ValueError, "loss is on meta, but this meter's state is on cpu"),
    ('meta 0-d into a cpu meter', lambda: LossMeter(device='cpu').update(T(1., device='meta'), n=2), ValueError, 'loss is on meta'),
    ('cpu loss into a meta meter', lambda: LossMeter(device='meta').update(T([1.])), ValueError, "loss is on cpu, but this meter's state is on meta"),
    # update: n
    ('n zero', lambda: LossMeter().update(T(1.), n=0), ValueError, 'n must be in [1, inf), got 0'),
    ('n negative', lambda: LossMeter().update(2.0, n=-3), ValueError, 'n must be in [1, inf), got -3'),
    ('n float', lambda: LossMeter().update(T(1.), n=2.0), TypeError, 'n must be an integer, got 2.0'),
    ('n bool', lambda: LossMeter().update(T(1.), n=True), TypeError, 'n must be an integer, got True'),
    ('n tensor', lambda: LossMeter().update(T(1.), n=T(3)), TypeError, 'n must be an integer, got tensor(3)'),
    ('n NaN', lambda: LossMeter().update(T(1.), n=NAN), TypeError, 'n must be an integer, got nan'),
    ('n mismatch', lambda: LossMeter().update(torch.ones(4), n=3), ValueError, 'n must equal the number of per-item losses (4, dim 0 of a loss of shape (4,)), got 3'),
    ('n of a 2-D loss is its rows', lambda: LossMeter().update(torch.ones(3, 4), n=12), ValueError, 'n must equal the number of per-item losses (3'),
    # update: weight
    ('weight shorter', lambda: LossMeter().update(torch.ones(3), weight=torch.ones(2)), ValueError, "weight must be broadcastable to loss's shape (3,) (e.g. (batch, 1) on (batch, tokens)), or a scalar, got shape (2,)"),
    ('weight (3, 1) for (3,)', lambda: LossMeter().update(torch.ones(3), weight=torch.ones(3, 1)), ValueError, 'got shape (3, 1)'),
    ('weight transposed', lambda: LossMeter().update(torch.ones(2, 3), weight=torch.ones(3, 2)), ValueError, "weight must be broadcastable to loss's shape (2, 3)"),
    ('weight per row of a 2-D loss', lambda: LossMeter().update(torch.ones(2, 3), weight=torch.ones(2)), ValueError, 'got shape (2,)'),
    ('weight vector for a batch mean', lambda: LossMeter().update(T(1.), n=3, weight=torch.ones(3)), ValueError, "weight must be a 0-d tensor or a number (a batch mean's total weight)"),
    ('weight complex', lambda: LossMeter().update(torch.ones(2), weight=T([1j, 1.])), TypeError, 'weight must be real, got a complex tensor'),
    ('weight negative number', lambda: LossMeter().update(torch.ones(3), weight=-1.), ValueError, 'weight must be in [0, inf), got -1.0'),
    ('weight NaN number', lambda: LossMeter().update(torch.ones(3), weight=NAN), ValueError, 'weight must not be NaN, got nan'),
    ('weight inf number', lambda: LossMeter().update(torch.ones(3), weight=INF), ValueError, 'weight must be finite, got inf'),
    ('weight str', lambda: LossMeter().update(torch.ones(3), weight='1'), TypeError, "weight must be a tensor or a real number, got '1'"),
    ('weight bool', lambda: LossMeter().update(torch.ones(3), weight=True), TypeError, 'weight must be a tensor or a real number, got True'),
    ('weight numpy bool', lambda: LossMeter().update(torch.ones(3), weight=np.bool_(True)), TypeError, 'weight must be a tensor or a real number'),
    ('weight numpy array', lambda: LossMeter().update(torch.ones(3), weight=np.ones(3)), TypeError, 'weight must be a tensor or a real number, got array('),
    ('weight on meta', lambda: LossMeter().update(torch.ones(3), weight=torch.ones(3, device='meta')), ValueError, 'weight is on meta, but loss is on cpu'),
    ('weight tensor negative', lambda: upd(((torch.ones(3),), dict(weight=T([1., -1., 1.])))).compute(), ValueError, 'weight passed to update() held a negative, NaN or infinite value'),
    ('weight tensor NaN', lambda: upd(((torch.ones(3),), dict(weight=T([1., NAN, 1.])))).compute(), ValueError, 'weight passed to update() held a negative, NaN or infinite value'),
    ('weight tensor inf', lambda: upd(((torch.ones(3),), dict(weight=T([1., INF, 1.])))).compute(), ValueError, 'weight passed to update() held'),
    ('batch-mean weight negative tensor', lambda: upd(((T(1.),), dict(n=2, weight=T(-2.)))).compute(), ValueError, 'weight passed to update() held'),
    # max_items
    ('batch mean straddles max_items', lambda: upd(((T(1.),), dict(n=3)), ((T(1.),), dict(n=3)), max_items=4), ValueError, 'loss is a batch mean of n=3 items, but only 1 more of the max_items=4 can be counted'),
    ('python mean straddles max_items', lambda: upd(((2.0,), dict(n=5)), max_items=4), ValueError, 'Pass the per-item losses'),
    # compute, merge
    ('compute sync str', lambda: LossMeter().compute(sync='yes'), TypeError, "sync must be a bool (True or False), got 'yes'"),
    ('merge int', lambda: LossMeter().merge(3), TypeError, 'other must be a LossMeter, got 3 of type int'),
    ('merge a meta meter', lambda: upd((T([1.]),)).merge(upd((torch.ones(2, device='meta'),))), ValueError, "other's state is on meta and cannot be moved to this meter's device cpu"),
    # load_state_dict
    ('num_skipped above count', lambda: state(loss_sum=T(6.), count=3, num_skipped=10), ValueError, "state['num_skipped'] must be in [0, count=3]"),
    ('missing keys', lambda: state(count=3), ValueError, "state is missing ['loss_sum', 'num_skipped']"),
    ('extra key', lambda: state(loss_sum=6., count=3, num_skipped=0, mean=2.), ValueError, "state has unknown keys ['mean']"),
    ('state a list', lambda: LossMeter().load_state_dict([6., 3, 0]), TypeError, 'state must be a dict (from LossMeter.state_dict()), got [6.0, 3, 0]'),
    ('state None', lambda: LossMeter().load_state_dict(None), TypeError, 'state must be a dict'),
    ('count negative', lambda: state(loss_sum=0., count=-1, num_skipped=0), ValueError, "state['count'] must be in [0, 2**53], got -1"),
    ('count float', lambda: state(loss_sum=0., count=2.5, num_skipped=0), TypeError, "state['count'] must be an integer, got 2.5"),
    ('count integral float', lambda: state(loss_sum=0., count=3.0, num_skipped=0), TypeError, "state['count'] must be an integer, got 3.0"),
    ('count str', lambda: state(loss_sum=0., count='3', num_skipped=0), TypeError, "state['count'] must be a number or a one-element tensor, got '3'"),
    ('count bool', lambda: state(loss_sum=0., count=True, num_skipped=0), TypeError, "state['count'] must be a number"),
    ('count numpy bool', lambda: state(loss_sum=0., count=np.True_, num_skipped=0), TypeError, "state['count'] must be a number or a one-element tensor, got"),
    ('loss_sum numpy bool', lambda: state(loss_sum=np.False_, count=3, num_skipped=0), TypeError, "state['loss_sum'] must be a number or a one-element tensor, got"),
    ('loss_sum str', lambda: state(loss_sum='6', count=3, num_skipped=0), TypeError, "state['loss_sum'] must be a number or a one-element tensor, got '6'"),
    ('loss_sum complex tensor', lambda: state(loss_sum=T(6 + 0j), count=3, num_skipped=0), TypeError, "state['loss_sum'] must be real"),
    ('loss_sum vector', lambda: state(loss_sum=T([6., 1.]), count=3, num_skipped=0), ValueError, "state['loss_sum'] must be a number or a one-element tensor, got shape (2,)"),
    ('loss_sum on meta', lambda: state(loss_sum=T(6., device='meta'), count=3, num_skipped=0), ValueError, "state['loss_sum'] must hold a value, got a tensor on the meta device"),
    ('num_skipped negative', lambda: state(loss_sum=0., count=3, num_skipped=-1), ValueError, "state['num_skipped'] must be in [0, count=3]"),
    ('num_skipped fractional', lambda: state(loss_sum=0., count=3, num_skipped=1.5), TypeError, "state['num_skipped'] must be an integer, got 1.5"),
    ('weight_sum negative', lambda: state(loss_sum=0., weight_sum=-1., count=3, num_skipped=0), ValueError, "state['weight_sum'] must be >= 0, got -1.0"),
    # epoch_summaries and batch_means
    ('drop_last str', lambda: epoch_summaries([4., 5., 2.], 2, drop_last='no'), TypeError, "drop_last must be a bool (True or False), got 'no'"),
    ('drop_last None', lambda: epoch_summaries([4., 5., 2.], 2, drop_last=None), TypeError, 'drop_last must be a bool (True or False), got None'),
    ('drop_last int', lambda: batch_means([4., 5., 2.], 2, drop_last=1), TypeError, 'drop_last must be a bool (True or False), got 1'),
    ('batch_size 0', lambda: epoch_summaries([1., 2.], 0), ValueError, 'batch_size must be in [1, inf), got 0'),
    ('batch_size float', lambda: epoch_summaries([1., 2.], 2.0), TypeError, 'batch_size must be an integer, got 2.0'),
    ('batch_size bool', lambda: epoch_summaries([1., 2.], True), TypeError, 'batch_size must be an integer, got True'),
    ('item_losses 2-D', lambda: epoch_summaries(torch.ones(2, 4), 2), ValueError, 'item_losses must be 1-D, got shape (2, 4)'),
    ('item_losses 0-d', lambda: epoch_summaries(T(3.), 2), ValueError, 'item_losses must be 1-D, got shape ()'),
    ('item_losses complex', lambda: epoch_summaries(T([1 + 1j]), 1), TypeError, 'item_losses must be real, got a complex tensor'),
    ('item_losses bool', lambda: epoch_summaries(T([True, False]), 1), TypeError, 'item_losses must hold numbers, got bool values: a tensor of shape (2,) and dtype torch.bool'),
    ('item_losses str', lambda: epoch_summaries('abc', 1), TypeError, "item_losses must be a 1-D sequence of numbers (list, ndarray or tensor), got 'abc' of type str"),
    ('item_losses None', lambda: epoch_summaries(None, 1), TypeError, 'item_losses must be a 1-D sequence of numbers (list, ndarray or tensor), got None'),
    ('item_losses ragged list', lambda: epoch_summaries([[1.], [1., 2.]], 1), TypeError, 'item_losses must be a 1-D sequence of real numbers, got [[1.0], [1.0, 2.0]]'),
    ('item_losses bools in a list', lambda: epoch_summaries([True, 1.0], 1), TypeError, 'item_losses must hold numbers, got bool values: [True, 1.0]'),
    ('item_losses on meta', lambda: epoch_summaries(torch.ones(3, device='meta'), 1), ValueError, 'item_losses is on the meta device, which holds no values'),
    # real_items
    ('real_items of a list', lambda: real_items([1, 2]), TypeError, 'sampler must be a torch.utils.data.DistributedSampler, got [1, 2] of type list'),
    ('real_items of None', lambda: real_items(None), TypeError, 'sampler must be a torch.utils.data.DistributedSampler, got None'),
]


@pytest.mark.parametrize('fn,exc,msg', [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_error_names_the_argument(fn, exc, msg):
    with pytest.raises(exc) as e: fn()
    assert msg in str(e.value), str(e.value)


g = torch.Generator().manual_seed(0)
L = torch.rand(12, generator=g, dtype=F64) * 4  # float64 per-item losses
W = torch.rand(12, generator=g, dtype=F64) * 3  # float weights
MASK = torch.tensor([1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1], dtype=torch.bool)
TOK = torch.rand(3, 5, generator=g, dtype=F64) * 2  # (batch, tokens)
TOKMASK = torch.arange(5) < torch.tensor([[5], [2], [4]])  # (batch, tokens)


def sampler_real(n, world, rank, **kw):
    "The number of leading indices of the real sampler's shard that are not repeats (the oracle for real_items)."
    idx = list(DistributedSampler(range(n), num_replicas=world, rank=rank, **kw))
    first = {}
    for pos, i in enumerate(idx): first.setdefault(i, pos)
    k = 0
    all_ranks = [list(DistributedSampler(range(n), num_replicas=world, rank=r, **kw)) for r in range(world)]
    padded = [x for t in zip(*all_ranks) for x in t]  # the padded list, position p on rank p % world
    for j, i in enumerate(idx):
        if j * world + rank < n: k += 1
    assert sorted(padded[:n]) == list(range(n))  # positions below n are the data set, each item once
    return k


# (id, callable returning (got, want), relative tolerance); NaN equals NaN
VALUES = [
    ('numpy float64 loss with n', lambda: (mean_of(((np.float64(2.5),), dict(n=3)), ((T(1.),), dict(n=1))), (7.5 + 1) / 4), 0),
    ('numpy float32 loss with n', lambda: (mean_of(((np.float32(0.5),), dict(n=2))), 0.5), 0),
    ('python int loss', lambda: (mean_of(((3,), dict(n=2)), ((T([1.]),), {})), 7 / 3), 1e-15),
    ('Fraction loss', lambda: (mean_of(((Fraction(1, 3),), dict(n=3))), 1 / 3), 1e-15),
    ('numpy int n', lambda: (mean_of(((T(2.),), dict(n=np.int64(4))), ((T(1.),), dict(n=1))), 9 / 5), 1e-15),
    ('numpy int max_items', lambda: (upd((L,), max_items=np.int64(5)).count, 5), 0),
    ('numpy bool skip_nonfinite', lambda: (mean_of((T([1., NAN, 3.]),), skip_nonfinite=np.bool_(True)), 2.0), 0),
    ('float16 per-item', lambda: (mean_of((L.half(),)), float(L.half().double().mean())), 1e-15),
    ('bfloat16 batch mean', lambda: (mean_of(((L[:5].mean().bfloat16(),), dict(n=5))), float(L[:5].mean().bfloat16().double())), 1e-15),
    ('float32 near its max', lambda: (mean_of((torch.full((10,), 3e38),)), float(torch.full((10,), 3e38).double().mean())), 1e-15),
    ('requires_grad per-item', lambda: (mean_of((L.clone().requires_grad_(),)), avg(L)), 1e-15),
    ('requires_grad does not leak', lambda: (upd((L.clone().requires_grad_() * 2,)).compute().requires_grad, False), 0),
    ('requires_grad batch mean', lambda: (mean_of(((L.clone().requires_grad_().mean(),), dict(n=12))), avg(L)), 1e-15),
    ('non-contiguous per-item', lambda: (mean_of((L[::2],)), avg(L[::2])), 1e-15),
    ('expanded per-item', lambda: (mean_of((T(2.5).expand(7),)), 2.5), 0),
    ('2-D per-item', lambda: (mean_of((TOK,)), avg(TOK.flatten())), 1e-15),
    ('2-D counts rows', lambda: (upd((TOK,)).count, 3), 0),
    ('2-D transposed (non-contiguous)', lambda: (mean_of((TOK.t(),)), avg(TOK.flatten())), 1e-15),
    ('empty per-item', lambda: (mean_of((torch.empty(0),)), NAN), 0),
    ('empty with n=0', lambda: (upd(((torch.empty(0),), dict(n=0))).count, 0), 0),
    ('empty then items', lambda: (mean_of((torch.empty(0),), (L,)), avg(L)), 1e-15),
    ('empty 2-D', lambda: (upd((torch.empty(0, 5),)).count, 0), 0),
    ('no update: NaN, float64', lambda: (LossMeter().compute().dtype, F64), 0),
    ('no update: NaN', lambda: (LossMeter().compute().item(), NAN), 0),
    ('-0.0 loss', lambda: (mean_of((T([-0.0, -0.0]),)), 0.0), 0),
    ('1e308 one item', lambda: (mean_of(((1e308,), dict(n=1))), 1e308), 0),
    ('1e-308 items', lambda: (mean_of((T([1e-308, 3e-308], dtype=F64),)), 2e-308), 1e-15),
    ('smallest subnormal', lambda: (mean_of((T([5e-324] * 4, dtype=F64),)), 5e-324), 0),
    ('1e-308 batch mean', lambda: (mean_of(((T(1e-308, dtype=F64),), dict(n=3))), 1e-308), 1e-15),
    ('NaN skipped per-item', lambda: (mean_of((T([1., NAN, 3., INF]),), skip_nonfinite=True), 2.0), 0),
    ('NaN skipped count', lambda: (upd((T([1., NAN, 3., -INF]),), skip_nonfinite=True).num_skipped.item(), 2.0), 0),
    ('NaN batch mean skipped', lambda: (mean_of(((T(NAN),), dict(n=5)), ((T(2.),), dict(n=2)), skip_nonfinite=True), 2.0), 0),
    ('NaN python skipped', lambda: (mean_of(((NAN,), dict(n=5)), ((4.,), dict(n=2)), skip_nonfinite=True), 4.0), 0),
    ('2-D row with a NaN is skipped', lambda: (mean_of((T([[1., NAN], [3., 5.]]),), skip_nonfinite=True), 4.0), 0),
    ('bool mask weight', lambda: (mean_of(((L,), dict(weight=MASK))), avg(L, MASK.double())), 1e-15),
    ('int weight', lambda: (mean_of(((L,), dict(weight=MASK.long() * 3))), avg(L, MASK.double())), 1e-15),
    ('float weight', lambda: (mean_of(((L[:7],), dict(weight=W[:7])), ((L[7:],), dict(weight=W[7:]))), avg(L, W)), 1e-14),
    ('float16 weight', lambda: (mean_of(((L,), dict(weight=W.half()))), avg(L, W.half().double())), 1e-14),
    ('zero weight hides a NaN loss', lambda: (mean_of(((T([1., NAN, 3.]),), dict(weight=T([1., 0., 1.])))), 2.0), 0),
    ('zero weight hides an inf loss', lambda: (mean_of(((T([1., INF]),), dict(weight=T([True, False])))), 1.0), 0),
    ('0-d weight on per-item', lambda: (mean_of(((L,), dict(weight=T(2.5, dtype=F64)))), avg(L)), 1e-15),
    ('number weight on per-item', lambda: (mean_of(((L[:4],), dict(weight=3)), ((L[4:],), dict(weight=1.0))), avg(L, [3.] * 4 + [1.] * 8)), 1e-15),
    ('number weight 0', lambda: (mean_of(((L[:4],), dict(weight=0)), (L[4:],)), avg(L[4:])), 1e-15),
    ('weight requires_grad', lambda: (mean_of(((L,), dict(weight=W.clone().requires_grad_()))), avg(L, W)), 1e-14),
    ('weight expanded', lambda: (mean_of(((TOK,), dict(weight=T([1., 0., 2., 1., 1.], dtype=F64).expand(3, 5)))), avg(TOK, np.tile([1., 0., 2., 1., 1.], (3, 1)))), 1e-14),
    ('weight non-contiguous', lambda: (mean_of(((L[::2],), dict(weight=W[::2]))), avg(L[::2], W[::2])), 1e-14),
    ('token mask (batch, tokens)', lambda: (mean_of(((TOK,), dict(weight=TOKMASK))), avg(TOK[TOKMASK])), 1e-15),
    ('token mask skipping a bad sequence', lambda: (mean_of(((torch.where(TOKMASK, TOK, NAN).index_put((T([1]), T([0])), T(NAN, dtype=F64)),), dict(weight=TOKMASK)), skip_nonfinite=True), avg(torch.cat([TOK[0][TOKMASK[0]], TOK[2][TOKMASK[2]]]))), 1e-15),
    ('batch mean with 0-d weight', lambda: (mean_of(((avg(L[:5], W[:5]),), dict(n=5, weight=T(float(W[:5].sum()), dtype=F64))), ((L[5:],), dict(weight=W[5:]))), avg(L, W)), 1e-14),
    ('batch mean with number weight', lambda: (mean_of(((T(2.),), dict(n=3, weight=4.)), ((T(5.),), dict(n=1, weight=1.))), (8 + 5) / 5), 1e-15),
    ('weights with max_items', lambda: (mean_of(((L[:8],), dict(weight=W[:8])), ((L[8:],), dict(weight=W[8:])), max_items=10), avg(L[:10], W[:10])), 1e-14),
    ('per-item straddling max_items is sliced', lambda: (mean_of((L[:4],), (L[4:],), max_items=6), avg(L[:6])), 1e-15),
    ('items beyond max_items ignored', lambda: (mean_of((L[:6],), ((T(100.),), dict(n=3)), ((1e9,), dict(n=1)), max_items=6), avg(L[:6])), 1e-15),
    ('max_items 0', lambda: (upd((L,), max_items=0).count, 0), 0),
    ('max_items on rows of a 2-D loss', lambda: (mean_of((TOK,), max_items=2), avg(TOK[:2].flatten())), 1e-15),
    ('max_items exact fit of a batch mean', lambda: (mean_of(((T(2.),), dict(n=3)), ((T(4.),), dict(n=3)), max_items=6), 3.0), 0),
    ('meta device meter', lambda: (upd((torch.ones(3, device='meta'),), device='meta').compute().device.type, 'meta'), 0),
    ('meta loss decides the state device', lambda: (upd((torch.ones(3, device='meta'),)).loss_sum.device.type, 'meta'), 0),
    ('merge', lambda: (upd((L[:5],)).merge(upd((L[5:],), ((T(2.),), dict(n=2)))).compute().item(), (float(L.sum()) + 4) / 14), 1e-15),
    ('state: loss_sum as a float', lambda: (state_mean(loss_sum=6.0, count=3, num_skipped=0), 2.0), 0),
    ('state: numpy loss_sum', lambda: (state_mean(loss_sum=np.float64(6.0), count=np.int64(3), num_skipped=0), 2.0), 0),
    ('state: integer tensors', lambda: (state_mean(loss_sum=T(6.), count=T(3), num_skipped=T(1.)), 3.0), 0),
    ('state: without weight_sum', lambda: (state_mean(loss_sum=T(6.), count=4, num_skipped=1), 2.0), 0),
    ('state: round trip with weights', lambda: (state_mean(**upd(((L,), dict(weight=W)), skip_nonfinite=True).state_dict()), avg(L, W)), 1e-14),
    ('epoch_summaries numpy bool drop_last', lambda: (epoch_summaries(L, 5, drop_last=np.bool_(True))['num_items'], 10), 0),
    ('epoch_summaries numpy array', lambda: (epoch_summaries(L.numpy(), 5)['per_item_mean'], avg(L)), 1e-15),
    ('epoch_summaries ints', lambda: (epoch_summaries([4, 5, 2, 4, 3, 2, 3, 1], 3)['per_item_mean'], 3.0), 0),
    ('epoch_summaries numpy int batch_size', lambda: (epoch_summaries(L, np.int64(5))['num_batches'], 3), 0),
    ('epoch_summaries empty', lambda: (epoch_summaries([], 3)['per_item_mean'], NAN), 0),
    ('epoch_summaries NaN item', lambda: (epoch_summaries([1., NAN], 1)['per_item_mean'], float(np.mean([1., NAN]))), 0),
    ('epoch_summaries requires_grad', lambda: (epoch_summaries(L.clone().requires_grad_(), 4)['per_item_mean'], avg(L)), 1e-15),
    ('epoch_summaries float16', lambda: (epoch_summaries(L.half(), 4)['per_item_mean'], avg(L.half().double())), 1e-15),
    ('real_items fewer items than ranks', lambda: (real_items(DistributedSampler(range(1), num_replicas=3, rank=2)), sampler_real(1, 3, 2)), 0),
    ('real_items drop_last', lambda: (real_items(DistributedSampler(range(11), num_replicas=3, rank=1, drop_last=True)), len(list(DistributedSampler(range(11), num_replicas=3, rank=1, drop_last=True)))), 0),
    ('real_items shuffled, odd', lambda: ([real_items(DistributedSampler(range(101), num_replicas=4, rank=r, shuffle=True)) for r in range(4)], [sampler_real(101, 4, r, shuffle=True) for r in range(4)]), 0),
]


@pytest.mark.parametrize('fn,rel', [c[1:] for c in VALUES], ids=[c[0] for c in VALUES])
def test_edge_input_gives_the_oracle(fn, rel):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # a NaN/inf mean warns; the warning is tested below
        got, want = fn()
    if isinstance(want, float) and math.isnan(want): assert math.isnan(got)
    elif rel: assert got == pytest.approx(want, rel=rel, abs=0)
    else: assert got == want


# (id, callable, the RuntimeWarning must contain): a NaN or infinite mean is returned, and its cause is named
WARNS = [
    ('NaN batch mean', lambda: upd(((T(1.),), dict(n=10)), ((T(NAN),), dict(n=2))).compute(), 'the mean is NaN because a loss passed to update() was NaN'),
    ('NaN per-item', lambda: upd((T([1., NAN]),)).compute(), 'the mean is NaN because a loss passed to update() was NaN'),
    ('NaN python', lambda: upd(((NAN,), dict(n=2))).compute(), 'was NaN'),
    ('inf batch mean', lambda: upd(((T(INF),), dict(n=2))).compute(), 'the mean is infinite because a loss passed to update() was infinite'),
    ('+inf and -inf', lambda: upd((T([INF, -INF]),)).compute(), 'or +inf and -inf both'),
    ('1e308 twice overflows like a float64 sum', lambda: upd((T([1e308, 1e308], dtype=F64),)).compute(), 'infinite'),
    ('every weight 0', lambda: upd(((L,), dict(weight=torch.zeros(12)))).compute(), 'every one of the 12 counted items had weight 0'),
    ('everything skipped', lambda: upd((T([NAN, NAN]),), skip_nonfinite=True).compute(), '(2 skipped)'),
    ('NaN state round trip', lambda: state_mean(loss_sum=NAN, count=3, num_skipped=0), 'was NaN'),
]


@pytest.mark.parametrize('fn,msg', [c[1:] for c in WARNS], ids=[c[0] for c in WARNS])
def test_nonfinite_mean_warns_naming_the_cause(fn, msg):
    with pytest.warns(RuntimeWarning) as rec: out = fn()
    assert any(msg in str(w.message) for w in rec), [str(w.message) for w in rec]
    v = out.item() if isinstance(out, torch.Tensor) else out
    assert not math.isfinite(v)


def test_at_least_seventy_cases():
    assert len(ERRORS) + len(VALUES) + len(WARNS) >= 70


SYNC_METHODS = ('item', '__bool__', '__float__', '__int__', '__index__', 'tolist', 'numpy', '__array__')


@pytest.mark.parametrize('skip', [False, True])
def test_new_update_paths_make_no_host_sync(monkeypatch, skip):
    "Weights (bool, float, 0-d, for a batch mean), max_items slicing and ignoring, 2-D losses: no Tensor-to-Python conversion."
    m, cut = LossMeter(skip_nonfinite=skip), LossMeter(skip_nonfinite=skip, max_items=10)
    tok, mask = TOK.float(), TOKMASK
    def boom(*a, **k): raise AssertionError('host synchronisation')
    for name in SYNC_METHODS: monkeypatch.setattr(torch.Tensor, name, boom)
    with pytest.raises(AssertionError, match='host synchronisation'): bool(torch.tensor(1.))  # the guard is live
    for _ in range(4):
        m.update(tok, weight=mask); m.update(tok, weight=mask.float() * 2); m.update(tok)
        m.update(tok[0, 0], n=3, weight=mask.sum()); m.update(2.0, n=2, weight=3.0); m.update(tok[:, 0], weight=2)
        cut.update(tok[:, 0]); cut.update(tok[0, 0], n=1); cut.update(tok[:, 1], weight=mask[:, 1])
    m.update(torch.tensor(float('nan')), n=2, weight=torch.tensor(1.))
    assert m.loss_sum.dtype == F64 and cut.count == 10


@pytest.mark.parametrize('call, match', [
    (lambda: LossMeter().update(1.0, n=10**400), r'n must be at most 2\*\*53 = 9007199254740992 .*got 100000\.\.\. \(401 digits\)'),
    (lambda: LossMeter().update(torch.tensor(1.0), n=10**400), r'n must be at most 2\*\*53'),
    (lambda: LossMeter().update(torch.tensor(1.0), n=2**53 + 1), r'n must be at most 2\*\*53'),
    (lambda: LossMeter(max_items=10**400), r'max_items must be at most 2\*\*53'),
    (lambda: batch_means([1.0, 2.0], 10**400), r'batch_size must be at most 2\*\*53'),
    (lambda: epoch_summaries([1.0, 2.0], 10**400), r'batch_size must be at most 2\*\*53'),
    (lambda: LossMeter().load_state_dict(dict(loss_sum=1.0, count=10**400, num_skipped=0)), r"state\['count'\] must be in \[0, 2\*\*53\]"),
    (lambda: LossMeter().load_state_dict(dict(loss_sum=10**400, count=1, num_skipped=0)), r"state\['loss_sum'\] must fit in a float64"),
    (lambda: LossMeter().load_state_dict(dict(loss_sum=1.0, count=1, num_skipped=0, weight_sum=10**400)), r"state\['weight_sum'\] must fit in a float64"),
])
def test_integers_beyond_float_range_name_the_argument(call, match):
    "Integers too large for a float64 count raise a ValueError naming the argument, never OverflowError."
    with pytest.raises(ValueError, match=match): call()


def test_largest_exact_count_is_accepted():
    m = LossMeter(); m.update(2.0, n=2**53)
    assert (m.count, m.compute().item()) == (2**53, 2.0)


def test_a_bad_weight_on_an_item_skipped_for_its_loss_is_dropped_with_it():
    "skip_nonfinite=True drops a non-finite item with its weights, bad or not; a bad weight on a kept item still raises."
    m = LossMeter(skip_nonfinite=True)
    m.update(torch.tensor([math.nan, 1.0]), weight=torch.tensor([-1.0, 1.0]))
    assert m.compute().item() == 1.0 and m.num_skipped.item() == 1.0 and m.weight_sum.item() == 1.0
    kept = LossMeter(skip_nonfinite=True)
    kept.update(torch.tensor([2.0, 1.0]), weight=torch.tensor([-1.0, 1.0]))
    with pytest.raises(ValueError, match='weight passed to update\\(\\) held a negative, NaN or infinite value'):
        kept.compute()
