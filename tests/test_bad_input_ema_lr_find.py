"""Bad and edge input for lossnotes.ema and lossnotes.lr_find, one table: every call either raises a clear
ValueError/TypeError whose message names the argument, or returns the right answer, checked against an oracle
(a float64 loop, pandas `ewm`, or a closed form)."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lossnotes.ema import EMA, ema, ema_lag, ema_seeded, zero_lag, zero_lag_beta
from lossnotes.lr_find import LRFinderResult, lr_range_test, lr_schedule

F = torch.nn.functional
NAN, INF = float('nan'), float('inf')


def loop(values, beta=0.98, debias=True, seeded=False):
    "The recursion in float64, the obvious way: the oracle."
    out, m = [], 0.0
    for t, x in enumerate(np.asarray(values, dtype=np.float64).tolist(), start=1):
        m = x if (seeded and t == 1) else beta * m + (1 - beta) * x
        out.append(m / (1 - beta**t) if debias and not seeded else m)
    return torch.tensor(out, dtype=torch.float64)


def streamed(values, beta=0.98, debias=True):
    e = EMA(beta, debias)
    for v in values: e.update(v)
    return e.compute()


def raises(exc, text): return ('raises', exc, text)
def close(oracle, rtol=1e-12, dtype=None): return ('close', oracle, rtol, dtype)
def holds(pred): return ('holds', pred)


RNG = np.random.default_rng(0)
X = np.abs(RNG.normal(2.0, 1.0, 300))
XT = torch.tensor(X)
const = lambda c, n=100, dtype=torch.float64: torch.full((n,), c, dtype=dtype)


def state(**kw): return {'beta': 0.9, 'debias': True, 'avg': 1.0, 'step': 3} | kw


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)
    def forward(self, x): return self.lin(x)


BATCHES = [(torch.randn(8, 4, generator=torch.Generator().manual_seed(i)), torch.arange(8) % 3) for i in range(4)]
CE = F.cross_entropy


def rt(**kw):
    "lr_range_test on a tiny model with sensible defaults, overridden by `kw`."
    args = dict(model=Net(), loss_fn=CE, batches=BATCHES, num_it=10, progress=False) | kw
    return lr_range_test(**args)


RES = LRFinderResult(lr_schedule(1e-7, 10, 20), torch.linspace(2, 1, 20, dtype=torch.float64),
                     ema(torch.linspace(2, 1, 20, dtype=torch.float64)))

CASES = [
    # ---- ema: what `values` may be
    ('ema numpy float32 array', lambda: ema(X.astype(np.float32)), close(lambda: loop(X.astype(np.float32)), 1e-12, torch.float64)),
    ('ema numpy int array', lambda: ema(np.arange(50)), close(lambda: loop(np.arange(50)), 1e-12, torch.float64)),
    ('ema numpy bool array', lambda: ema(np.array([True, False])), raises(TypeError, 'values must hold numbers, got bool values')),
    ('ema numpy complex array', lambda: ema(np.array([1 + 1j, 2])), raises(TypeError, 'values must be real, got complex values')),
    ('ema list with a complex', lambda: ema([1.0, 2 + 1j]), raises(TypeError, 'values must be a 1-D sequence of real numbers')),
    ('ema complex tensor', lambda: ema(torch.tensor([1 + 1j])), raises(TypeError, 'values must be real, got a complex tensor')),
    ('ema bool tensor', lambda: ema(torch.tensor([True, False])), raises(TypeError, 'values must hold numbers, got bool values')),
    ('ema list of bools', lambda: ema([True, False]), raises(TypeError, 'values must hold numbers, got bool values: [True, False] of type list')),
    ('ema tuple with a numpy bool', lambda: ema((0.5, np.True_)), raises(TypeError, 'values must hold numbers, got bool values')),
    ('ema list with a bool tensor', lambda: ema([torch.tensor(1.0), torch.tensor(True)]), raises(TypeError, 'values must hold numbers, got bool values')),
    ('zero_lag list of bools', lambda: zero_lag([True, True, False]), raises(TypeError, 'values must hold numbers, got bool values')),
    ('ema int64 tensor', lambda: ema(torch.arange(50)), close(lambda: loop(np.arange(50)), 1e-12, torch.float64)),
    ('ema float16 tensor', lambda: ema(XT.half()), close(lambda: loop(XT.half().double()), 2e-3, torch.float16)),
    ('ema bfloat16 tensor', lambda: ema(XT.bfloat16()), close(lambda: loop(XT.bfloat16().double()), 1e-2, torch.bfloat16)),
    ('ema float32 tensor', lambda: ema(XT.float()), close(lambda: loop(XT.float().double()), 1e-6, torch.float32)),
    ('ema 0-d tensor', lambda: ema(torch.tensor(1.0)), raises(ValueError, 'values must be 1-D, got shape ()')),
    ('ema 2-D tensor', lambda: ema(torch.ones(2, 3)), raises(ValueError, 'values must be 1-D, got shape (2, 3)')),
    ('ema (n, 1) column', lambda: ema(torch.ones(5, 1)), raises(ValueError, 'values must be 1-D, got shape (5, 1)')),
    ('ema numpy scalar', lambda: ema(np.float64(2.0)), raises(ValueError, 'values must be 1-D, got shape ()')),
    ('ema python float', lambda: ema(2.0), raises(ValueError, 'values must be 1-D, got shape ()')),
    ('ema numpy 2-D', lambda: ema(np.ones((2, 2))), raises(ValueError, 'values must be 1-D, got shape (2, 2)')),
    ('ema nested list', lambda: ema([[1.0, 2.0]]), raises(ValueError, 'values must be 1-D, got shape (1, 2)')),
    ('ema requires_grad', lambda: ema(XT.clone().requires_grad_()), holds(lambda y: not y.requires_grad and torch.allclose(y, loop(X), rtol=1e-12, atol=0))),
    ('ema non-contiguous', lambda: ema(XT[::3]), close(lambda: loop(X[::3]))),
    ('ema reversed view', lambda: ema(XT.flip(0)[10:200]), close(lambda: loop(X[::-1][10:200]))),
    ('ema expanded', lambda: ema(torch.tensor(3.5, dtype=torch.float64).expand(200)), close(lambda: const(3.5, 200))),
    ('ema transposed column', lambda: ema(torch.tensor(X).reshape(30, 10).t()[0]), close(lambda: loop(X.reshape(30, 10).T[0]))),
    ('ema NaN inside', lambda: ema([1.0, NAN, 2.0, 3.0]), close(lambda: loop([1.0, NAN, 2.0, 3.0]))),
    ('ema inf inside', lambda: ema([1.0, INF, 2.0]), close(lambda: loop([1.0, INF, 2.0]))),
    ('ema -inf then inf', lambda: ema([-INF, INF, 1.0]), close(lambda: loop([-INF, INF, 1.0]))),
    ('ema -0.0', lambda: ema([-0.0, -0.0, -0.0]), close(lambda: torch.zeros(3, dtype=torch.float64))),
    ('ema empty list', lambda: ema([]), holds(lambda y: y.shape == (0,) and y.dtype == torch.float64)),
    ('ema empty float32 tensor', lambda: ema(torch.empty(0)), holds(lambda y: y.shape == (0,) and y.dtype == torch.float32)),
    ('ema one value', lambda: ema([7.0]), close(lambda: torch.tensor([7.0], dtype=torch.float64))),
    ('ema 1e308 constant', lambda: ema(const(1e308)), close(lambda: const(1e308), 1e-12)),
    ('ema -1e308 constant, no debias', lambda: ema(const(-1e308), debias=False), close(lambda: loop(const(-1e308), debias=False), 1e-12)),
    ('ema 1e308 and -1e308 alternating', lambda: ema(torch.tensor([1e308, -1e308] * 50, dtype=torch.float64)), close(lambda: loop([1e308, -1e308] * 50), 1e-9)),
    ('ema 1e-308 constant', lambda: ema(const(1e-308)), close(lambda: const(1e-308), 1e-12)),
    ('ema 5e-324 (subnormal) constant', lambda: ema(const(5e-324)), close(lambda: const(5e-324), 0.0)),
    ('ema float32 3e38 constant', lambda: ema(const(3e38, dtype=torch.float32)), close(lambda: const(3e38), 1e-6, torch.float32)),
    ('ema float16 30000 constant', lambda: ema(const(30000., dtype=torch.float16)), close(lambda: const(30000.), 1e-3, torch.float16)),
    ('ema float16 60000 constant', lambda: ema(const(60000., dtype=torch.float16)), close(lambda: const(60000.), 1e-3, torch.float16)),
    ('ema 1e308 with an inf', lambda: ema(torch.tensor([1e308, 1e308, INF, 1e308], dtype=torch.float64)), close(lambda: loop([1e308, 1e308, INF, 1e308]))),
    ('ema huge and tiny mixed', lambda: ema(torch.tensor([1e300, 1e-300, 1.0] * 30, dtype=torch.float64)), close(lambda: loop([1e300, 1e-300, 1.0] * 30), 1e-10)),
    ('ema meta tensor', lambda: ema(torch.ones(3, device='meta')), raises(ValueError, 'values is on the meta device')),
    ('ema string', lambda: ema('1,2,3'), raises(TypeError, 'values must be a 1-D sequence of numbers')),
    ('ema None', lambda: ema(None), raises(TypeError, 'values must be a 1-D sequence of numbers')),
    ('ema list of strings', lambda: ema(['1', '2']), raises(TypeError, 'values must be a 1-D sequence of real numbers')),
    ('ema list with None', lambda: ema([1.0, None]), raises(TypeError, 'values must be a 1-D sequence of real numbers')),
    ('ema dict', lambda: ema({'a': 1.0}), raises(TypeError, 'values must be a 1-D sequence of numbers')),
    ('ema int beyond float64', lambda: ema([1, 10**400]), raises(ValueError, 'values holds a number too large for float64')),
    # ---- ema: beta and debias
    ('ema beta inf', lambda: ema(X, INF), raises(ValueError, 'beta must be finite, got inf')),
    ('ema beta -inf', lambda: ema(X, -INF), raises(ValueError, 'beta must be finite, got -inf')),
    ('ema beta NaN', lambda: ema(X, NAN), raises(ValueError, 'beta must not be NaN')),
    ('ema beta 1', lambda: ema(X, 1), raises(ValueError, 'beta must be in [0, 1), got 1')),
    ('ema beta -0.5', lambda: ema(X, -0.5), raises(ValueError, 'beta must be in [0, 1), got -0.5')),
    ('ema beta True', lambda: ema(X, True), raises(TypeError, 'beta must be a real number, got True')),
    ('ema beta numpy bool', lambda: ema(X, np.bool_(False)), raises(TypeError, 'beta must be a real number')),
    ('ema beta string', lambda: ema(X, '0.9'), raises(TypeError, "beta must be a real number, got '0.9'")),
    ('ema beta 0-d tensor', lambda: ema(X, torch.tensor(0.9)), raises(TypeError, 'beta must be a real number')),
    ('ema beta numpy float', lambda: ema(X, np.float32(0.5)), close(lambda: loop(X, 0.5), 1e-12)),
    ('ema beta -0.0', lambda: ema(X, -0.0), close(lambda: torch.tensor(X))),
    ('ema beta 1e-308', lambda: ema(X, 1e-308), close(lambda: loop(X, 1e-308))),
    ('ema beta 0.9999', lambda: ema(X, 0.9999), close(lambda: torch.tensor(pd.Series(X).ewm(alpha=1e-4).mean().to_numpy()), 1e-11)),
    ('ema debias "False"', lambda: ema(X, debias='False'), raises(TypeError, "debias must be a bool (True or False), got 'False'")),
    ('ema debias None', lambda: ema(X, debias=None), raises(TypeError, 'debias must be a bool (True or False), got None')),
    ('ema debias 0', lambda: ema(X, debias=0), raises(TypeError, 'debias must be a bool (True or False), got 0')),
    ('ema debias numpy bool', lambda: ema(X, debias=np.bool_(False)), close(lambda: loop(X, debias=False))),
    ('ema debias bool tensor', lambda: ema(X, debias=torch.tensor(True)), raises(TypeError, 'debias must be a bool')),
    # ---- ema_seeded and zero_lag
    ('ema_seeded vs pandas adjust=False', lambda: ema_seeded(X, 0.9), close(lambda: torch.tensor(pd.Series(X).ewm(alpha=0.1, adjust=False).mean().to_numpy()))),
    ('ema_seeded 1e308 constant', lambda: ema_seeded(const(1e308)), close(lambda: const(1e308), 1e-12)),
    ('ema_seeded float16 30000', lambda: ema_seeded(const(30000., dtype=torch.float16)), close(lambda: const(30000.), 1e-3, torch.float16)),
    ('ema_seeded complex', lambda: ema_seeded(torch.tensor([1j])), raises(TypeError, 'values must be real')),
    ('ema_seeded empty', lambda: ema_seeded([]), holds(lambda y: y.shape == (0,))),
    ('ema_seeded beta inf', lambda: ema_seeded(X, INF), raises(ValueError, 'beta must be finite')),
    ('zero_lag 1e308 constant', lambda: zero_lag(const(1e308)), close(lambda: const(1e308), 1e-12)),
    ('zero_lag float32 3e38 constant', lambda: zero_lag(const(3e38, dtype=torch.float32)), close(lambda: const(3e38), 1e-6, torch.float32)),
    ('zero_lag float16 30000 constant', lambda: zero_lag(const(30000., dtype=torch.float16)), close(lambda: const(30000.), 1e-3, torch.float16)),
    ('zero_lag = backward loop of the forward loop', lambda: zero_lag(X, 0.9), close(lambda: loop(loop(X, 0.9).flip(0), 0.9).flip(0), 1e-12)),
    ('zero_lag 2-D', lambda: zero_lag(torch.ones(2, 2)), raises(ValueError, 'values must be 1-D')),
    ('zero_lag bool', lambda: zero_lag(torch.ones(3, dtype=torch.bool)), raises(TypeError, 'values must hold numbers')),
    ('zero_lag beta NaN', lambda: zero_lag(X, NAN), raises(ValueError, 'beta must not be NaN')),
    ('zero_lag_beta inf', lambda: zero_lag_beta(INF), raises(ValueError, 'beta must be finite')),
    ('zero_lag_beta "0.9"', lambda: zero_lag_beta('0.9'), raises(TypeError, 'beta must be a real number')),
    # ---- ema_lag
    ('ema_lag step 0', lambda: ema_lag(0.9, 0), raises(ValueError, 'step must be in [1, inf), got 0')),
    ('ema_lag step 2.5', lambda: ema_lag(0.9, 2.5), raises(TypeError, 'step must be an integer, got 2.5')),
    ('ema_lag step True', lambda: ema_lag(0.9, True), raises(TypeError, 'step must be an integer, got True')),
    ('ema_lag step inf', lambda: ema_lag(0.9, INF), raises(TypeError, 'step must be an integer, got inf')),
    ('ema_lag numpy int step', lambda: ema_lag(0.9, np.int64(20)), holds(lambda v: abs(v - sum(k * 0.9**k for k in range(20)) / sum(0.9**k for k in range(20))) < 1e-12)),
    ('ema_lag beta inf', lambda: ema_lag(INF), raises(ValueError, 'beta must be finite')),
    ('ema_lag huge step', lambda: ema_lag(0.98, 10**6), holds(lambda v: abs(v - 49.0) < 1e-9)),
    # ---- EMA
    ('EMA debias "False"', lambda: EMA(debias='False'), raises(TypeError, "debias must be a bool (True or False), got 'False'")),
    ('EMA debias None', lambda: EMA(debias=None), raises(TypeError, 'debias must be a bool')),
    ('EMA debias numpy bool', lambda: streamed([5.0], debias=np.bool_(False)), holds(lambda v: abs(v - 0.1) < 1e-12)),
    ('EMA beta inf', lambda: EMA(beta=INF), raises(ValueError, 'beta must be finite')),
    ('EMA beta 1.0', lambda: EMA(beta=1.0), raises(ValueError, 'beta must be in [0, 1), got 1.0')),
    ('EMA compute before update', lambda: EMA().compute(), holds(lambda v: isinstance(v, float) and math.isnan(v))),
    ('EMA complex tensor', lambda: EMA().update(torch.tensor(1 + 5j)), raises(TypeError, 'x must be real, got a complex tensor')),
    ('EMA python complex', lambda: EMA().update(1 + 5j), raises(TypeError, 'x must be a real number or a real tensor, got (1+5j)')),
    ('EMA numpy complex', lambda: EMA().update(np.complex128(1 + 5j)), raises(TypeError, 'x must be a real number or a real tensor')),
    ('EMA bool', lambda: EMA().update(True), raises(TypeError, 'x must be a real number or a real tensor, got True')),
    ('EMA bool tensor', lambda: EMA().update(torch.tensor(True)), raises(TypeError, 'x must be a real number or tensor, got a bool tensor')),
    ('EMA numpy bool', lambda: EMA().update(np.bool_(True)), raises(TypeError, 'x must be a real number or a real tensor')),
    ('EMA string', lambda: EMA().update('1.0'), raises(TypeError, "x must be a real number or a real tensor, got '1.0'")),
    ('EMA None', lambda: EMA().update(None), raises(TypeError, 'x must be a real number or a real tensor, got None')),
    ('EMA int beyond float', lambda: EMA().update(10**400), raises(ValueError, 'x is too large for a float')),
    ('EMA Fraction', lambda: streamed([__import__('fractions').Fraction(1, 4)] * 2), holds(lambda v: abs(v - 0.25) < 1e-15)),
    ('EMA numpy 1-D array', lambda: EMA().update(np.array([1.0, 2.0])), raises(TypeError, 'x must be a real number or a real tensor')),
    ('EMA numpy float32 scalar', lambda: streamed([np.float32(2.5)] * 3), holds(lambda v: v == 2.5)),
    ('EMA numpy 0-d array', lambda: streamed([np.array(2.5)] * 3), holds(lambda v: v == 2.5)),
    ('EMA meta tensor', lambda: EMA().update(torch.tensor(1.0, device='meta')), raises(ValueError, 'x is on the meta device')),
    ('EMA shape change', lambda: streamed([torch.tensor(1.0), torch.ones(2)]), raises(ValueError, 'x must match the average\'s shape ()')),
    ('EMA inf then 1 (floats)', lambda: streamed([INF, 1.0]), holds(lambda v: v == INF)),
    ('EMA inf then 1 (tensors)', lambda: streamed([torch.tensor(INF), torch.tensor(1.0)]), holds(lambda v: float(v) == INF)),
    ('EMA -inf then 1 (tensors)', lambda: streamed([torch.tensor(-INF), torch.tensor(1.0)]), holds(lambda v: float(v) == -INF)),
    ('EMA NaN then 1 (tensors)', lambda: streamed([torch.tensor(NAN), torch.tensor(1.0)]), holds(lambda v: math.isnan(float(v)))),
    ('EMA -0.0', lambda: streamed([-0.0, -0.0]), holds(lambda v: v == 0.0)),
    ('EMA 1e308 floats', lambda: streamed([1e308] * 5), holds(lambda v: abs(v / 1e308 - 1) < 1e-12)),
    ('EMA 1e308 float64 tensors', lambda: streamed([torch.tensor(1e308, dtype=torch.float64)] * 5), holds(lambda v: abs(float(v) / 1e308 - 1) < 1e-12)),
    ('EMA 1e-308 floats', lambda: streamed([1e-308] * 5), holds(lambda v: abs(v / 1e-308 - 1) < 1e-10)),
    ('EMA float16 30000', lambda: streamed([torch.tensor(30000., dtype=torch.float16)] * 3), holds(lambda v: v.dtype == torch.float32 and float(v) == 30000.0)),
    ('EMA int tensor', lambda: streamed([torch.tensor(3)] * 2), holds(lambda v: v.dtype == torch.float32 and abs(float(v) - 3) < 1e-6)),
    ('EMA requires_grad', lambda: streamed([torch.tensor(2.0, requires_grad=True) * 1] * 2), holds(lambda v: not v.requires_grad and abs(float(v) - 2) < 1e-6)),
    ('EMA non-contiguous vector', lambda: streamed([torch.arange(6.)[::2]] * 2), holds(lambda v: torch.allclose(v, torch.tensor([0., 2., 4.])))),
    ('EMA expanded vector', lambda: streamed([torch.tensor(2.0).expand(3)] * 2), holds(lambda v: torch.allclose(v, torch.full((3,), 2.0)))),
    ('EMA vs the loop', lambda: torch.tensor(streamed(list(X), 0.9), dtype=torch.float64), close(lambda: loop(X, 0.9)[-1], 1e-12)),
    # ---- EMA.load_state_dict
    ('load_state_dict list', lambda: EMA().load_state_dict([0.9, True, 1.0, 3]), raises(TypeError, 'state must be a dict, got [0.9')),
    ('load_state_dict missing key', lambda: EMA().load_state_dict({'beta': 0.9}), raises(ValueError, "state must have exactly the keys ['avg', 'beta', 'debias', 'step'], got ['beta']")),
    ('load_state_dict extra key', lambda: EMA().load_state_dict(state(extra=1)), raises(ValueError, "got ['avg', 'beta', 'debias', 'extra', 'step']")),
    ('load_state_dict beta 1.5', lambda: EMA().load_state_dict(state(beta=1.5)), raises(ValueError, "state['beta'] must be in [0, 1), got 1.5")),
    ('load_state_dict debias "yes"', lambda: EMA().load_state_dict(state(debias='yes')), raises(TypeError, "state['debias'] must be a bool")),
    ('load_state_dict step -1', lambda: EMA().load_state_dict(state(step=-1)), raises(ValueError, "state['step'] must be in [0, inf), got -1")),
    ('load_state_dict step 2.5', lambda: EMA().load_state_dict(state(step=2.5)), raises(TypeError, "state['step'] must be an integer, got 2.5")),
    ('load_state_dict avg complex', lambda: EMA().load_state_dict(state(avg=torch.tensor(1j))), raises(TypeError, "state['avg'] must be real")),
    ('load_state_dict avg int tensor', lambda: EMA().load_state_dict(state(avg=torch.tensor(1))), raises(TypeError, "state['avg'] must have a floating-point dtype")),
    ('load_state_dict avg string', lambda: EMA().load_state_dict(state(avg='1')), raises(TypeError, "state['avg'] must be a real float or a floating tensor, got '1'")),
    ('load_state_dict avg meta', lambda: EMA().load_state_dict(state(avg=torch.ones((), device='meta'))), raises(ValueError, "state['avg'] is on the meta device")),
    ('load_state_dict step 0, avg 5', lambda: EMA().load_state_dict(state(step=0, avg=5.0)), raises(ValueError, "state['avg'] must be 0.0 when state['step'] is 0")),
    ('load_state_dict good', lambda: (lambda e: (e.load_state_dict(state()), e.compute())[1])(EMA()), holds(lambda v: abs(v - 1.0 / (1 - 0.9**3)) < 1e-12)),
    # ---- lr_schedule
    ('lr_schedule end_lr inf', lambda: lr_schedule(1e-7, INF, 10), raises(ValueError, 'end_lr must be finite, got inf')),
    ('lr_schedule start_lr -inf', lambda: lr_schedule(-INF, 1.0, 10), raises(ValueError, 'start_lr must be finite, got -inf')),
    ('lr_schedule start_lr NaN', lambda: lr_schedule(NAN, 1.0, 10), raises(ValueError, 'start_lr must not be NaN')),
    ('lr_schedule num_it inf', lambda: lr_schedule(1e-7, 1.0, INF), raises(TypeError, 'num_it must be an integer, got inf')),
    ('lr_schedule numpy ints', lambda: lr_schedule(np.float64(1e-3), np.int64(1), np.int64(4)), close(lambda: torch.tensor([1e-3, 1e-2, 1e-1, 1.0], dtype=torch.float64), 1e-13)),
    ('lr_schedule 1e-308 to 1e308', lambda: lr_schedule(1e-308, 1e308, 3), close(lambda: torch.tensor([1e-308, 1.0, 1e308], dtype=torch.float64), 1e-13)),
    ('lr_schedule start_lr string', lambda: lr_schedule('1e-7', 1.0, 10), raises(TypeError, "start_lr must be a real number, got '1e-7'")),
    # ---- lr_range_test
    ('lr_range_test end_lr inf', lambda: rt(end_lr=INF), raises(ValueError, 'end_lr must be finite, got inf')),
    ('lr_range_test start_lr 0', lambda: rt(start_lr=0.0), raises(ValueError, 'start_lr must be in (0, inf), got 0.0')),
    ('lr_range_test beta inf', lambda: rt(beta=INF), raises(ValueError, 'beta must be finite')),
    ('lr_range_test stop_div "no"', lambda: rt(stop_div='no'), raises(TypeError, "stop_div must be a bool (True or False), got 'no'")),
    ('lr_range_test progress None', lambda: rt(progress=None), raises(TypeError, 'progress must be a bool (True or False), got None')),
    ('lr_range_test skip_nonfinite 1', lambda: rt(skip_nonfinite=1), raises(TypeError, 'skip_nonfinite must be a bool')),
    ('lr_range_test stop_div numpy bool', lambda: len(rt(stop_div=np.bool_(False)).losses), holds(lambda n: n == 10)),
    ('lr_range_test model not a module', lambda: rt(model=lambda x: x), raises(TypeError, 'model must be a torch.nn.Module')),
    ('lr_range_test loss_fn not callable', lambda: rt(loss_fn='cross_entropy'), raises(TypeError, "loss_fn must be callable, got 'cross_entropy'")),
    ('lr_range_test opt_func string', lambda: rt(opt_func='sgd'), raises(TypeError, "opt_func must be callable, got 'sgd'")),
    ('lr_range_test opt_func returns None', lambda: rt(opt_func=lambda p: None), raises(TypeError, 'opt_func must return a torch.optim.Optimizer, got None')),
    ('lr_range_test batches None', lambda: rt(batches=None), raises(TypeError, 'batches must be an iterable of (xb, yb) pairs, got None')),
    ('lr_range_test batches empty', lambda: rt(batches=[]), raises(ValueError, 'batches must yield at least one (xb, yb) pair, got none')),
    ('lr_range_test one-shot generator', lambda: rt(batches=(b for b in BATCHES[:3])), raises(ValueError, 'batches ran out after 3 batches, before the 10 steps of the test (num_it=10): it is a one-shot iterator')),
    ('lr_range_test triples', lambda: rt(batches=[(1, 2, 3)]), raises(TypeError, 'batches must yield (xb, yb) pairs, got (1, 2, 3)')),
    ('lr_range_test loss (N,)', lambda: rt(loss_fn=lambda o, y: F.cross_entropy(o, y, reduction='none')), raises(ValueError, 'loss_fn must return a scalar loss (one element), got shape (8,)')),
    ('lr_range_test loss (1,)', lambda: len(rt(loss_fn=lambda o, y: CE(o, y).reshape(1)).losses), holds(lambda n: n == 10)),
    ('lr_range_test loss a float', lambda: rt(loss_fn=lambda o, y: 1.0), raises(TypeError, 'loss_fn must return a tensor, got 1.0')),
    ('lr_range_test complex loss', lambda: rt(loss_fn=lambda o, y: CE(o, y) * (1 + 1j)), raises(TypeError, 'loss_fn(model(xb), yb) must be real')),
    ('lr_range_test loss without grad', lambda: rt(loss_fn=lambda o, y: CE(o.detach(), y)), raises(ValueError, 'loss_fn must return a loss that requires grad')),
    ('lr_range_test float64 model and data', lambda: rt(model=Net().double(), batches=[(x.double(), y) for x, y in BATCHES]).losses.dtype, holds(lambda d: d == torch.float64)),
    ('lr_range_test num_it 2', lambda: len(rt(num_it=2, stop_div=False).losses), holds(lambda n: n == 2)),
    # ---- LRFinderResult
    ('suggest unknown method', lambda: RES.suggest('fastest'), raises(ValueError, "method must be 'minimum', 'steep' or 'valley', got 'fastest'")),
    ('suggest unknown kind', lambda: RES.suggest('steep', kind='mean'), raises(ValueError, "kind must be 'raw', 'smoothed' or 'zero_lag', got 'mean'")),
    ('suggest beta inf', lambda: RES.suggest(beta=INF), raises(ValueError, 'beta must be finite')),
    ('suggest skip_start -1', lambda: RES.suggest(skip_start=-1), raises(ValueError, 'skip_start must be in [0, inf), got -1')),
    ('suggest skip_start 1.5', lambda: RES.suggest(skip_start=1.5), raises(TypeError, 'skip_start must be an integer, got 1.5')),
    ('suggest everything skipped', lambda: RES.suggest(skip_end=25), raises(ValueError, 'need at least 2 finite points after skipping, got 0')),
    ('argmin_lr raw, decreasing', lambda: RES.argmin_lr('raw'), holds(lambda v: v == 10.0)),
]


def test_the_table_is_large():
    assert len(CASES) >= 70
    assert len({name for name, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize('name, call, expect', CASES, ids=[c[0] for c in CASES])
def test_bad_or_edge_input(name, call, expect):
    if expect[0] == 'raises':
        _, exc, text = expect
        with pytest.raises(exc) as info: call()
        assert type(info.value) is exc
        assert text in str(info.value), str(info.value)
    elif expect[0] == 'close':
        _, oracle, rtol, dtype = expect
        got, want = call(), oracle()
        assert isinstance(got, torch.Tensor) and got.shape == want.shape
        if dtype is not None: assert got.dtype == dtype
        g, w = got.double(), want.double()
        same_nan = torch.isnan(g) == torch.isnan(w)
        assert bool(same_nan.all())
        fin = torch.isfinite(w)
        assert torch.equal(g[~fin & ~torch.isnan(w)], w[~fin & ~torch.isnan(w)])  # the same infinities
        assert bool(torch.isfinite(g[fin]).all())
        torch.testing.assert_close(g[fin], w[fin], rtol=rtol, atol=0)
    else:
        assert expect[1](call())


def test_integers_beyond_float_range_never_raise_overflow_error():
    "step=10**400 and num_it=10**400: a right answer (the lag's limit) or a ValueError naming the argument."
    assert ema_lag(0.9, 10**400) == ema_lag(0.9, 10**6)
    e = EMA(0.5); e.load_state_dict({'beta': 0.5, 'debias': True, 'avg': 1.0, 'step': 10**400})
    assert e.compute() == 1.0
    with pytest.raises(ValueError, match=r'num_it must be at most 10\*\*9'): lr_schedule(1e-7, 10.0, 10**400)
    with pytest.raises(ValueError, match=r'num_it must be at most 10\*\*9'):
        lr_range_test(torch.nn.Linear(2, 2), F.cross_entropy, [(torch.ones(1, 2), torch.zeros(1, dtype=torch.long))], num_it=10**400)
