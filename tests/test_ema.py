"""lossnotes.ema: the vectorised EMA against pandas and a plain loop, the streaming EMA, the lag, the zero-lag smoother."""
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st

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


def stream(e, values):
    "Feed `values` to `e` one at a time and collect `compute()` after each."
    out = []
    for v in values:
        assert e.update(v) is None
        out.append(e.compute())
    return out


def test_nan_propagates():
    y = ema([1.0, float('nan'), 1.0], 0.9)
    assert not math.isnan(y[0]) and math.isnan(y[1]) and math.isnan(y[2])
    got = stream(EMA(0.9), [1.0, float('nan'), 2.0])
    assert not math.isnan(got[0]) and math.isnan(got[1]) and math.isnan(got[2])


@pytest.mark.parametrize('bad, exc, match', [
    (1.0, ValueError, r'beta must be in \[0, 1\), got 1.0'),
    (-0.1, ValueError, r'beta must be in \[0, 1\), got -0.1'),
    (float('nan'), ValueError, 'beta must not be NaN'),
    (float('inf'), ValueError, 'beta must be finite, got inf'),
    ('0.9', TypeError, "beta must be a real number, got '0.9'"),
])
def test_bad_beta(bad, exc, match):
    for f in (lambda: ema([1.0], bad), lambda: ema_seeded([1.0], bad), lambda: EMA(bad), lambda: ema_lag(bad),
              lambda: zero_lag([1.0], bad), lambda: zero_lag_beta(bad)):
        with pytest.raises(exc, match=match): f()


def test_bad_values():
    with pytest.raises(ValueError, match=r'values must be 1-D, got shape \(2, 2\)'): ema(torch.ones(2, 2))
    with pytest.raises(ValueError, match=r'values must be 1-D, got shape \(\)'): ema(torch.tensor(1.0))
    with pytest.raises(TypeError, match="x must be a real number or a real tensor, got '1' of type str"): EMA().update('1')
    with pytest.raises(TypeError, match='x must be a real number or a real tensor'): EMA().update(True)


def test_streaming_equals_vectorised():
    x = torch.rand(500, dtype=torch.float64) * 3
    for debias in (True, False):
        got = stream(EMA(0.98, debias=debias), x)
        torch.testing.assert_close(torch.stack(got), ema(x, 0.98, debias), rtol=1e-13, atol=1e-13)
        got = stream(EMA(0.98, debias=debias), x.tolist())
        np.testing.assert_allclose(got, ema(x, 0.98, debias).numpy(), rtol=1e-13)
    assert math.isnan(EMA().compute()) and isinstance(EMA().compute(), float)


def test_compute_hands_out_a_copy():
    "Writing to what compute() returned must not change the average (also when no division happens)."
    for debias in (True, False):
        e = EMA(0.5, debias=debias)
        for _ in range(3): e.update(torch.tensor(2.0, dtype=torch.float64))
        before = float(e.compute())
        e.compute().add_(100)
        e.state_dict()['avg'].add_(100)
        assert float(e.compute()) == before


def test_cached_powers_are_never_handed_out():
    "The lru_cache of the block scan's powers and weight sums keeps private tensors: callers get copies."
    from lossnotes.ema import _inverse_weight_sums, _powers
    w = _inverse_weight_sums(0.98, 40, torch.float64, 'cpu')
    w.zero_()
    up, down = _powers(0.98, 64, 0.02, torch.float64, 'cpu')
    up.zero_(); down.zero_()
    x = torch.rand(1000, dtype=torch.float64)
    np.testing.assert_allclose(ema(x, 0.98).numpy(), loop_ema(x.numpy(), 0.98), rtol=0, atol=1e-12)


NO_SYNC_INPUTS = {
    'float32 loss': lambda v: torch.tensor(v, dtype=torch.float32, requires_grad=True) * 1,
    'float16 loss': lambda v: torch.tensor(v, dtype=torch.float16),
    'bfloat16 loss': lambda v: torch.tensor(v, dtype=torch.bfloat16),
    'int64 count': lambda v: torch.tensor(int(v)),
    'float64 loss': lambda v: torch.tensor(v, dtype=torch.float64),
    '(3,) vector': lambda v: torch.full((3,), v),
    'non-contiguous (2,)': lambda v: torch.full((4,), v)[::2],
    'expanded (3,)': lambda v: torch.tensor(v).expand(3),
}


@pytest.mark.parametrize('kind', list(NO_SYNC_INPUTS))
@pytest.mark.parametrize('debias', [True, False])
def test_streaming_tensor_stays_on_device_without_item(monkeypatch, kind, debias):
    "A training loop's loss: no .item(), no float(), no bool(); the result stays a tensor on the loss's device."
    make = NO_SYNC_INPUTS[kind]
    values = [2.0, 1.0, 7.0 if kind == 'int64 count' else float('inf'), 3.0]
    inputs = [make(v) for v in values]
    def no_sync(*a, **k): raise AssertionError('host sync')
    for name in ('item', '__float__', '__bool__', '__int__', 'tolist', '__index__'):
        monkeypatch.setattr(torch.Tensor, name, no_sync)
    e = EMA(0.9, debias=debias)
    e.update(0.5)  # a float first, then tensors: the float-to-tensor path too
    for x in inputs: e.update(x)
    out = e.compute()
    state = e.state_dict()
    monkeypatch.undo()
    assert isinstance(out, torch.Tensor) and out.device.type == 'cpu' and not out.requires_grad
    assert out.dtype == (torch.float64 if kind == 'float64 loss' else torch.float32)
    want = ema([0.5] + values, 0.9, debias)[-1]
    assert torch.all(out.double() == want) or torch.allclose(out.double(), want.expand_as(out), rtol=1e-6, atol=0)
    assert int(state['step']) == 5


def test_inf_then_finite_agrees_between_float_and_tensor_paths():
    for first, then in [(float('inf'), 1.0), (float('-inf'), 1.0), (float('inf'), float('-inf'))]:
        a, b = EMA(0.98), EMA(0.98)
        a.update(first); a.update(then)
        b.update(torch.tensor(first)); b.update(torch.tensor(then))
        fa, fb = a.compute(), float(b.compute())
        assert (math.isnan(fa) and math.isnan(fb)) or fa == fb, (first, then, fa, fb)
    e = EMA(0.98)
    e.update(torch.tensor(float('inf'))); e.update(torch.tensor(1.0))
    assert float(e.compute()) == float('inf')


def test_state_dict_round_trip():
    x = torch.rand(100, dtype=torch.float64)
    for first in (x[:60], x[:60].tolist()):
        a = EMA(0.95)
        stream(a, first)
        b = EMA(0.5, debias=False)
        assert b.load_state_dict(a.state_dict()) is None
        assert (b.beta, b.debias, b.step) == (0.95, True, 60)
        for v in x[60:]:
            a.update(v); b.update(v)
            assert float(a.compute()) == float(b.compute())
    torch.testing.assert_close(torch.as_tensor(float(a.compute()), dtype=torch.float64), ema(x, 0.95)[-1], rtol=1e-13, atol=0)
    assert a.reset() is None
    assert a.step == 0 and math.isnan(a.compute())
    with pytest.raises(ValueError, match=r"state must have exactly the keys \['avg', 'beta', 'debias', 'step'\]"):
        EMA().load_state_dict({'beta': 0.9, 'debias': True})
    assert repr(EMA(0.9)) == 'EMA(beta=0.9, debias=True, step=0)'


def test_load_state_dict_changes_nothing_when_it_fails():
    e = EMA(0.9)
    e.update(2.0)
    before = e.state_dict()
    with pytest.raises(TypeError, match=r"state\['debias'\] must be a bool"):
        e.load_state_dict({'beta': 0.5, 'debias': 'yes', 'avg': 1.0, 'step': 3})
    assert e.state_dict() == before


@pytest.mark.parametrize('fn, params', [
    (EMA, ['beta', 'debias']), (EMA.update, ['x']), (ema, ['values', 'beta', 'debias']), (ema_seeded, ['values', 'beta']),
    (zero_lag, ['values', 'beta']), (ema_lag, ['beta', 'step']), (zero_lag_beta, ['beta']),
])
def test_help_explains_every_parameter(fn, params):
    import pydoc
    text = pydoc.render_doc(fn, renderer=pydoc.plaintext)
    for p in params: assert re.search(rf'\b{p}\b', text), p
    if fn is not EMA.update:
        assert 'Parameters' in text and 'Examples' in text and '>>>' in text


def test_doctests_pass():
    import doctest, sys
    import lossnotes.ema  # noqa: F401
    r = doctest.testmod(sys.modules['lossnotes.ema'], optionflags=doctest.NORMALIZE_WHITESPACE)
    assert r.attempted >= 8 and r.failed == 0


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_streaming_update_does_not_sync_a_cuda_device():
    "CUDA's own sync detector: any device-to-host wait inside update() raises."
    e = EMA(0.98)
    e.update(torch.tensor(1.0, device='cuda'))
    xs = [torch.tensor(v, device='cuda') for v in (2.0, float('inf'), 1.0, 3.0)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        for x in xs: e.update(x)
        out = e.compute()
    finally: torch.cuda.set_sync_debug_mode(0)
    assert out.device.type == 'cuda' and float(out) == float('inf')


# --- integers beyond float range, the ends of the zero-lag curve, dtypes, docstrings -----------------------------

@pytest.mark.parametrize('beta', [0.0, 0.5, 0.9, 0.98, 1 - 2**-52])
def test_ema_lag_of_a_huge_step_is_the_limit(beta):
    "step=10**400 is a valid number of samples: the lag is the infinite-history limit, not an OverflowError."
    assert ema_lag(beta, 10**400) == ema_lag(beta, 2**62)
    if beta <= 0.98: assert ema_lag(beta, 10**400) == pytest.approx(beta / (1 - beta), rel=1e-12)


def test_ema_state_with_a_huge_step_computes():
    e = EMA(0.9); e.load_state_dict({'beta': 0.9, 'debias': True, 'avg': 2.5, 'step': 10**400})
    assert e.compute() == 2.5  # 1 - 0.9**step is 1.0: no debiasing left, no OverflowError


def test_zero_lag_lags_like_the_causal_ema_at_the_end_of_a_ramp():
    "The page's numbers: on a 400-step ramp at beta 0.9, 9.0 steps late at the last point (as the EMA), 5.9 early at the first."
    ramp = torch.arange(400, dtype=torch.float64)
    z = zero_lag(ramp, 0.9)
    assert float(ramp[-1] - z[-1]) == pytest.approx(9.0, abs=1e-9)
    assert float(ramp[-1] - ema(ramp, 0.9)[-1]) == pytest.approx(ema_lag(0.9, 400), abs=1e-9)
    assert float(z[0] - ramp[0]) == pytest.approx(5.94, abs=0.005)
    assert float((z[100:300] - ramp[100:300]).abs().max()) < 3e-3


@pytest.mark.parametrize('dtype, streamed, vectorised', [(torch.float16, torch.float32, torch.float16),
                                                         (torch.bfloat16, torch.float32, torch.bfloat16),
                                                         (torch.int64, torch.float32, torch.float64),
                                                         (torch.float64, torch.float64, torch.float64)])
def test_compute_and_ema_dtypes_are_as_documented(dtype, streamed, vectorised):
    x = torch.tensor([3, 1, 2], dtype=dtype)
    e = EMA(0.5)
    for v in x: e.update(v)
    assert e.compute().dtype == streamed and ema(x, 0.5).dtype == vectorised
    assert float(e.compute()) == pytest.approx(float(ema(x, 0.5)[-1]), rel=1e-2)
    assert 'float32 for float16, bfloat16 and integer' in EMA.compute.__doc__


def test_float16_is_computed_in_float32_without_rescaling():
    "The page's claim: float16 never reaches the rescaling path; its largest value is inside float32's safe range."
    from lossnotes.ema import _range_exponent
    assert _range_exponent(torch.tensor([65504.0], dtype=torch.float32)) == (0, True)
    assert ema(torch.full((300,), 30000., dtype=torch.float16), 0.98).tolist() == [30000.0] * 300


def test_ema_method_docstrings_say_what_they_return_and_raise():
    for name in ('reset', 'update', 'compute', 'state_dict', 'load_state_dict'):
        doc = getattr(EMA, name).__doc__
        assert re.search(r'return', doc, re.I) and re.search(r'raise', doc, re.I), name


def test_pandas_matches_only_finite_values_it_skips_a_nan_that_ema_propagates():
    "The page says 'for finite values' pandas' adjust=True is ema: pandas skips a NaN, ema keeps it as the loop does."
    x = [1.0, 2.0, math.nan, 3.0, 4.0]
    pandas = pd.Series(x).ewm(alpha=0.5, adjust=True).mean().to_numpy()
    np.testing.assert_allclose(pandas, [1, 5 / 3, 5 / 3, 29 / 11, 31 / 9], rtol=1e-12)  # the NaN skipped
    got = ema(x, 0.5).numpy()
    np.testing.assert_allclose(got[:2], pandas[:2], rtol=1e-12)
    assert np.isnan(got[2:]).all() and np.isnan(loop_ema(np.array(x), 0.5, True, False)[2:]).all()


def test_lerp_would_turn_an_inf_state_into_nan_and_update_does_not():
    "The page's reason for beta * avg + (1 - beta) * x: torch.lerp's start + w * (end - start) gives inf - inf = NaN."
    inf = torch.tensor(float('inf'))
    assert torch.lerp(inf, torch.tensor(1.0), 0.02).isnan()
    assert torch.lerp(inf, torch.tensor(1.0), 0.49).isnan()
    # from weight 0.5 up torch uses end - (end - start) * (1 - w): the inf survives (beta <= 0.5)
    assert torch.lerp(inf, torch.tensor(1.0), 0.5).isposinf() and torch.lerp(inf, torch.tensor(1.0), 0.7).isposinf()
    for beta in (0.98, 0.3):
        e = EMA(beta); e.update(inf); e.update(torch.tensor(1.0))
        assert e.compute().isposinf()


@pytest.mark.parametrize('beta', [1e-5, 0.01, 0.3, 0.5, 0.9, 0.98])
def test_nonfinite_values_are_never_forgotten_on_a_long_series(beta):
    "The loop (and the streaming EMA) stays NaN or inf for ever after a NaN or an inf; so must the block scan."
    n = 50_000  # far past the ~1,000-50,000 steps after which the carried state used to underflow
    rng = np.random.default_rng(1)
    cases = {'nan first': {0: math.nan}, 'inf late': {30_000: math.inf}, '-inf then nan': {5: -math.inf, 40_000: math.nan},
             'inf then -inf': {7: math.inf, 20_000: -math.inf}, 'inf then nan': {3: math.inf, 900: math.nan}}
    for name, spots in cases.items():
        x = rng.uniform(1, 2, n)
        for i, v in spots.items(): x[i] = v
        with np.errstate(invalid='ignore'):
            for debias, seeded in ((True, False), (False, False), (False, True)):
                want = loop_ema(x, beta, debias, seeded)
                got = (ema_seeded(x, beta) if seeded else ema(x, beta, debias)).numpy()
                np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f'{name} {debias} {seeded}')
                np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f'{name} {debias} {seeded}')
                np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=f'{name} {debias} {seeded}')
                ok = np.isfinite(want)
                np.testing.assert_allclose(got[ok], want[ok], rtol=1e-11)
        streamed = np.array(stream(EMA(beta), x[:3000].tolist()))  # the streaming EMA is the same oracle
        np.testing.assert_array_equal(np.isnan(ema(x[:3000], beta).numpy()), np.isnan(streamed))
        np.testing.assert_array_equal(np.isinf(ema(x[:3000], beta).numpy()), np.isinf(streamed))


def test_nonfinite_values_in_float32_and_zero_lag():
    x = torch.ones(20_000, dtype=torch.float32); x[3] = math.nan
    assert bool(ema(x, 0.9).isnan()[3:].all()) and bool(ema(x, 0.9)[:3].isfinite().all())
    assert bool(ema(x.to(torch.float16), 0.5).isnan()[3:].all())
    assert bool(zero_lag(x, 0.9).isnan().all())  # forward then backward: the NaN reaches both ends, as in the loops


def test_beta_zero_carries_nothing_streamed_or_vectorised():
    "beta=0: each value is its own average; a NaN or inf stays at its own step in ema() and in EMA alike."
    x = [1.0, math.nan, 2.0, math.inf, 3.0]
    np.testing.assert_array_equal(ema(x, 0.0).numpy(), np.array(x))
    np.testing.assert_array_equal(np.array(stream(EMA(0.0), x)), np.array(x))
    got = stream(EMA(0.0), [torch.tensor(v) for v in x])
    np.testing.assert_array_equal(torch.stack(got).numpy(), np.array(x, dtype=np.float32))
