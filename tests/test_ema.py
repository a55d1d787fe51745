"""lossnotes.ema: the vectorised EMA against pandas and a plain loop, the streaming EMA, the lag, the zero-lag smoother."""
import math
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st

from conftest import PY
from lossnotes.ema import EMA, ema, ema_lag, ema_seeded, zero_lag, zero_lag_beta


def loop_ema(values, beta, debias=True, seeded=False):
    "The recursion written out, in float64: the slow, obvious reference."
    out, m = [], 0.0
    for t, x in enumerate(values, start=1):
        m = x if (seeded and t == 1) else beta * m + (1 - beta) * x
        out.append(m / (1 - beta**t) if debias and not seeded else m)
    return np.array(out)


@pytest.mark.parametrize('beta', [0.0, 1e-300, 1e-5, 0.3, 0.9, 0.98, 0.99, 0.999])
def test_matches_pandas_adjust_true_and_false(beta):
    x = np.abs(np.random.default_rng(1).normal(2.0, 1.0, 100_000))
    np.testing.assert_allclose(ema(x, beta).numpy(), pd.Series(x).ewm(alpha=1 - beta).mean().to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ema_seeded(x, beta).numpy(), pd.Series(x).ewm(alpha=1 - beta, adjust=False).mean().to_numpy(),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize('n', [0, 1, 2, 7, 63, 64, 65, 129, 4097, 2**15 + 3, 2**16 + 64 * 5])
@pytest.mark.parametrize('beta', [0.5, 0.98, 0.9999])
def test_block_edges_match_the_loop(n, beta):
    "Sizes around the block (64) and chunk (32768) boundaries, signed values."
    x = np.random.default_rng(n).normal(size=n)
    np.testing.assert_allclose(ema(x, beta, debias=False).numpy(), loop_ema(x, beta, debias=False), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ema(x, beta).numpy(), loop_ema(x, beta), rtol=0, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=300), st.floats(0, 0.999), st.booleans())
def test_property_matches_the_loop(values, beta, debias):
    x = np.array(values)
    scale = max(1.0, np.abs(x).max())
    np.testing.assert_allclose(ema(values, beta, debias).numpy(), loop_ema(x, beta, debias), rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(ema_seeded(values, beta).numpy(), loop_ema(x, beta, seeded=True), rtol=0, atol=1e-12 * scale)


@settings(max_examples=50, deadline=None)
@given(st.floats(-1e6, 1e6).filter(lambda c: c == 0 or abs(c) > 1e-290),  # (1 - beta) * c must not be subnormal
       st.integers(1, 2000), st.floats(0, 0.999))
def test_property_debiased_constant_is_the_constant(c, n, beta):
    torch.testing.assert_close(ema([c] * n, beta), torch.full((n,), c, dtype=torch.float64), rtol=1e-13, atol=1e-13 * abs(c))


def test_seed_numbers():
    got = ema([100.0] * 100, 0.98, debias=False)
    np.testing.assert_allclose(got[:5].numpy(), [2.00, 3.96, 5.88, 7.76, 9.61], atol=0.005)
    assert round(float(got[-1]), 2) == 86.74


def test_dtypes_and_devices():
    assert ema([1, 2, 3]).dtype == torch.float64
    assert ema(np.array([1, 2, 3], dtype=np.float32)).dtype == torch.float64
    assert ema(torch.tensor([1, 2, 3])).dtype == torch.float64
    x32 = torch.rand(10_000, dtype=torch.float32) + 1
    y32 = ema(x32, 0.99)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), ema(x32.double(), 0.99), rtol=1e-5, atol=0)
    x = torch.rand(50, requires_grad=True)
    assert not ema(x).requires_grad
    assert ema([]).shape == (0,)


def test_nan_propagates():
    y = ema([1.0, float('nan'), 1.0], 0.9)
    assert not math.isnan(y[0]) and math.isnan(y[1]) and math.isnan(y[2])
    e = EMA(0.9)
    e.update(1.0)
    assert math.isnan(e.update(float('nan'))) and math.isnan(e.update(2.0))


@pytest.mark.parametrize('bad, exc, match', [
    (1.0, ValueError, r'beta must be in \[0, 1\), got 1.0'),
    (-0.1, ValueError, r'beta must be in \[0, 1\), got -0.1'),
    (float('nan'), ValueError, 'beta must not be NaN'),
    ('0.9', TypeError, "beta must be a real number, got '0.9'"),
])
def test_bad_beta(bad, exc, match):
    for f in (lambda: ema([1.0], bad), lambda: ema_seeded([1.0], bad), lambda: EMA(bad), lambda: ema_lag(bad),
              lambda: zero_lag([1.0], bad), lambda: zero_lag_beta(bad)):
        with pytest.raises(exc, match=match): f()


def test_bad_values():
    with pytest.raises(ValueError, match=r'values must be 1-D, got shape \(2, 2\)'): ema(torch.ones(2, 2))
    with pytest.raises(ValueError, match=r'values must be 1-D, got shape \(\)'): ema(torch.tensor(1.0))
    with pytest.raises(TypeError, match="x must be a number or a tensor, got '1' of type str"): EMA().update('1')
    with pytest.raises(TypeError, match='x must be a number or a tensor'): EMA().update(True)


def test_streaming_equals_vectorised():
    x = torch.rand(500, dtype=torch.float64) * 3
    for debias in (True, False):
        e = EMA(0.98, debias=debias)
        torch.testing.assert_close(torch.stack([e.update(v) for v in x]), ema(x, 0.98, debias), rtol=1e-13, atol=1e-13)
        e = EMA(0.98, debias=debias)
        np.testing.assert_allclose([e.update(float(v)) for v in x], ema(x, 0.98, debias).numpy(), rtol=1e-13)
    assert EMA().compute() is None


def test_streaming_tensor_stays_on_device_without_item(monkeypatch):
    "A training loop's 0-d loss: no .item(), no float(), result stays a tensor of the loss's dtype."
    def no_sync(*a, **k): raise AssertionError('host sync')
    monkeypatch.setattr(torch.Tensor, 'item', no_sync)
    monkeypatch.setattr(torch.Tensor, '__float__', no_sync)
    e = EMA(0.9)
    for v in (2.0, 1.0, 3.0):
        out = e.update(torch.tensor(v, dtype=torch.float32, requires_grad=True) * 1)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device.type == 'cpu' and not out.requires_grad
    monkeypatch.undo()
    torch.testing.assert_close(out.double(), ema([2.0, 1.0, 3.0], 0.9)[-1], rtol=1e-6, atol=0)
    half = EMA(0.9)
    half.update(torch.tensor(2.0, dtype=torch.float16))
    assert half.avg.dtype == torch.float32


def test_state_dict_round_trip():
    x = torch.rand(100, dtype=torch.float64)
    for first in (x[:60], x[:60].tolist()):
        a = EMA(0.95)
        for v in first: a.update(v)
        b = EMA(0.5, debias=False).load_state_dict(a.state_dict())
        assert (b.beta, b.debias, b.step) == (0.95, True, 60)
        rest = [(a.update(v), b.update(v)) for v in x[60:]]
        assert all(float(p) == float(q) for p, q in rest)
    torch.testing.assert_close(torch.as_tensor(float(a.compute()), dtype=torch.float64), ema(x, 0.95)[-1], rtol=1e-13, atol=0)
    a.reset()
    assert (a.step, a.compute()) == (0, None)
    with pytest.raises(ValueError, match=r"state is missing \['avg', 'step'\]"): EMA().load_state_dict({'beta': 0.9, 'debias': True})
    assert repr(EMA(0.9)) == 'EMA(beta=0.9, debias=True, step=0)'


@pytest.mark.parametrize('beta', [0.0, 0.5, 0.9, 0.98, 0.999])
@pytest.mark.parametrize('step', [1, 2, 10, 100, 5000])
def test_ema_lag_is_the_mean_age(beta, step):
    k = np.arange(step)
    w = beta ** k
    assert ema_lag(beta, step) == pytest.approx((k * w).sum() / w.sum(), rel=1e-9, abs=1e-9)
    assert ema_lag(beta) == pytest.approx(beta / (1 - beta), rel=1e-15)


def test_ema_lag_bad_step():
    with pytest.raises(ValueError, match=r'step must be in \[1, inf\), got 0'): ema_lag(0.9, 0)
    with pytest.raises(TypeError, match='step must be an integer, got 2.5'): ema_lag(0.9, 2.5)


def test_zero_lag():
    ramp = torch.arange(600, dtype=torch.float64)
    torch.testing.assert_close(zero_lag(ramp, 0.9)[200:400], ramp[200:400], rtol=0, atol=1e-6)  # 200 steps from the ends
    assert float(ramp[300] - ema(ramp, 0.9)[300]) == pytest.approx(ema_lag(0.9, 301), rel=1e-12)
    impulse = torch.zeros(6001, dtype=torch.float64)
    impulse[3000] = 1
    for beta in (0.5, 0.9, 0.98, 0.99):
        c = zero_lag_beta(beta)
        h = zero_lag(impulse, c)
        assert float((h**2).sum()) == pytest.approx((1 - beta) / (1 + beta), rel=1e-10)
        torch.testing.assert_close(h[3000 - 50:3000], h[3001:3051].flip(0), rtol=1e-9, atol=1e-15)  # symmetric: no lag


def test_library_module_is_light():
    code = ("import sys, lossnotes.ema, lossnotes.lr_find; "
            "print(sorted(m for m in ('pandas', 'scipy', 'matplotlib', 'ipywidgets', 'IPython') if m in sys.modules))")
    assert subprocess.run([PY, '-c', code], capture_output=True, text=True, check=True).stdout.strip() == '[]'
