"""lossnotes.lr_find: the schedule, the range test (restore, stop, cycle), the suggestions, the plots and the explorer."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from lossnotes.lessons.data import digits
from lossnotes.ema import ema, ema_lag, ema_seeded, zero_lag, zero_lag_beta
from lossnotes.lr_find import LRFinderResult, lr_range_test, lr_schedule, steepest_lr
from lossnotes.lessons.lr_find import explorer_parts
from lossnotes.lessons.lr_find import draw_smoothing, minimum_shift, plot_lr_curves, smooth, synthetic_lr_curve
from lossnotes.lessons.plotting import Control, new_figure

F = torch.nn.functional


@pytest.fixture(scope='module')
def data():
    xt, yt, _, _ = digits()
    return list(zip(xt.split(64), yt.split(64)))


def mlp(seed=0, bn=False):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(64, 32)] + ([torch.nn.BatchNorm1d(32)] if bn else []) + [torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(32, 10)]
    return torch.nn.Sequential(*layers)


def test_schedule():
    lrs = lr_schedule(1e-7, 10, 100)
    assert lrs.dtype == torch.float64 and len(lrs) == 100
    assert lrs[0] == pytest.approx(1e-7, rel=1e-15) and lrs[-1] == pytest.approx(10, rel=1e-14)
    ratios = lrs[1:] / lrs[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, 10 ** (8 / 99)), rtol=1e-12, atol=0)


@pytest.mark.parametrize('args, exc, match', [
    ((1e-3, 1e-3, 10), ValueError, 'start_lr must be below end_lr=0.001, got start_lr=0.001'),
    ((1.0, 1e-3, 10), ValueError, 'start_lr must be below end_lr=0.001, got start_lr=1.0'),
    ((1e-7, 10, 1), ValueError, r'num_it must be in \[2, inf\), got 1'),
    ((1e-7, 10, 2.5), TypeError, 'num_it must be an integer, got 2.5'),
    ((0.0, 10, 10), ValueError, r'start_lr must be in \(0, inf\), got 0.0'),
    ((1e-7, float('nan'), 10), ValueError, 'end_lr must not be NaN'),
])
def test_schedule_bad_input(args, exc, match):
    with pytest.raises(exc, match=match): lr_schedule(*args)
    with pytest.raises(exc, match=match):
        lr_range_test(mlp(), F.cross_entropy, [(torch.zeros(1, 64), torch.zeros(1, dtype=torch.long))], start_lr=args[0],
                      end_lr=args[1], num_it=args[2], progress=False)


def test_model_restored_bit_for_bit(data):
    net = mlp(bn=True)
    net[3].eval()  # a submodule in eval mode must stay so
    F.cross_entropy(net(data[0][0]), data[0][1]).backward()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    grads = [p.grad.clone() for p in net.parameters()]
    modes = [m.training for m in net.modules()]
    res = lr_range_test(net, F.cross_entropy, data, num_it=80, progress=False)
    assert len(res.losses) > 10
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())  # weights, running stats, num_batches_tracked
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, net.parameters()))
    assert [m.training for m in net.modules()] == modes


def test_model_restored_when_a_batch_raises(data):
    net = mlp()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    def batches():
        yield from data[:5]
        raise RuntimeError('broken batch')
    class Once:  # an iterable whose iterator breaks after 5 batches
        def __iter__(self): return batches()
    with pytest.raises(RuntimeError, match='broken batch'):
        lr_range_test(net, F.cross_entropy, Once(), num_it=50, progress=False)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


def test_records_and_smoothing(data):
    res = lr_range_test(mlp(), F.cross_entropy, data, num_it=30, beta=0.9, stop_div=False, progress=False)
    assert len(res.lrs) == len(res.losses) == len(res.smoothed) == 30
    torch.testing.assert_close(res.lrs, lr_schedule(1e-7, 10, 30), rtol=0, atol=0)
    torch.testing.assert_close(res.smoothed, ema(res.losses, 0.9), rtol=1e-12, atol=0)
    assert res.beta == 0.9
    torch.testing.assert_close(res.curve('smoothed', 0.5), ema(res.losses, 0.5), rtol=1e-12, atol=0)
    torch.testing.assert_close(res.curve('zero_lag'), zero_lag(res.losses.log(), zero_lag_beta(0.9)).exp(), rtol=1e-12, atol=0)
    assert res.curve('raw') is res.losses


def test_cycles_over_short_batches():
    calls = []
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))
        def forward(self, x):
            calls.append(int(x))
            return self.w * 0 + 1.0
    res = lr_range_test(Model(), lambda out, y: out, [(0, None), (1, None), (2, None)], opt_func=torch.optim.SGD,
                        num_it=8, progress=False)
    assert calls == [0, 1, 2, 0, 1, 2, 0, 1] and len(res.losses) == 8
    with pytest.raises(ValueError, match=r'batches must yield at least one \(xb, yb\) pair, got none'):
        lr_range_test(Model(), lambda out, y: out, [], progress=False)


def test_divergence_stops_the_test(data):
    res = lr_range_test(mlp(), F.cross_entropy, data, opt_func=torch.optim.SGD, start_lr=1e-3, end_lr=1e4, num_it=200,
                        progress=False)
    assert len(res.losses) < 200
    last, best = float(res.smoothed[-1]), float(res.smoothed[:-1].min())
    assert not math.isfinite(last) or last > 4 * best
    assert all(float(s) <= 4 * float(res.smoothed[:i + 1].min()) for i, s in enumerate(res.smoothed[:-1]))


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_non_finite_loss_stops_at_once(bad):
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w, self.n = torch.nn.Parameter(torch.zeros(())), 0
        def forward(self, x):
            self.n += 1
            return self.w * 0 + (bad if self.n == 7 else 1.0)
    for stop_div in (True, False):
        res = lr_range_test(Model(), lambda o, y: o, [(None, None)], opt_func=torch.optim.SGD, num_it=50,
                            stop_div=stop_div, progress=False)
        assert len(res.losses) == 7 and not math.isfinite(res.losses[-1]) and not math.isfinite(res.smoothed[-1])
        assert math.isnan(res.curve('zero_lag')[-1]) and torch.isfinite(res.curve('zero_lag')[:-1]).all()
        assert res.argmin_lr('raw') == pytest.approx(float(res.lrs[0]))


def test_stop_div_false_runs_to_the_end(data):
    res = lr_range_test(mlp(), F.cross_entropy, data, opt_func=torch.optim.SGD, start_lr=1e-3, end_lr=1e3, num_it=40,
                        stop_div=False, progress=False)
    assert len(res.losses) == _finite_len(res.losses) or not math.isfinite(res.losses[-1])


def _finite_len(y):
    bad = (~torch.isfinite(y)).nonzero()
    return int(bad[0]) if len(bad) else len(y)


def fastai_valley(lrs, losses):
    "fastai's `valley` (fastai/callback/schedule.py), loop for loop."
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1): lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[max(idx, 0)])  # fastai indexes lrs[-1] (the largest lr) when the run starts at step 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.01, 10), min_size=5, max_size=60))
def test_property_suggestions_match_fastai(losses):
    y = torch.tensor(losses, dtype=torch.float64)
    lrs = lr_schedule(1e-7, 10, len(y))
    res = LRFinderResult(lrs, y, ema(y, 0.98), 0.98)
    assert res.suggest('valley', 'raw') == fastai_valley(lrs, losses)
    assert res.suggest('minimum', 'raw') == pytest.approx(float(lrs[int(np.argmin(losses))]) / 10, rel=1e-15)
    assert res.suggest('steep', 'raw') == steepest_lr(lrs, y)


def test_steep_is_against_log_lr():
    lrs = lr_schedule(1e-6, 1, 121)
    u = lrs.log10()
    y = 2 - torch.tanh((u + 3) / 0.4)  # steepest descent at lr = 1e-3 in log lr; against linear lr it is left of it
    res = LRFinderResult(lrs, y, y.clone(), 0.98)
    assert res.suggest('steep', 'raw') == pytest.approx(1e-3, rel=1e-9)
    linear = float(lrs[torch.gradient(y, spacing=(lrs,))[0].argmin()])
    assert linear == pytest.approx(10 ** -3.2, rel=1e-9)  # the slope divided by lr favours smaller lrs


def test_suggest_bad_input():
    lrs = lr_schedule(1e-7, 10, 20)
    res = LRFinderResult(lrs, torch.linspace(2, 1, 20, dtype=torch.float64), ema(torch.linspace(2, 1, 20), 0.98))
    with pytest.raises(ValueError, match="method must be 'minimum', 'steep' or 'valley', got 'fast'"): res.suggest('fast')
    with pytest.raises(ValueError, match="kind must be 'raw', 'smoothed' or 'zero_lag', got 'mean'"): res.suggest('steep', 'mean')
    with pytest.raises(ValueError, match='need at least 2 finite points after skipping, got 0'): res.suggest('steep', skip_start=20)
    with pytest.raises(ValueError, match=r'skip_end must be in \[0, inf\), got -1'): res.suggest('steep', skip_end=-1)
    with pytest.raises(ValueError, match=r'beta must be in \[0, 1\), got 1'): res.curve('smoothed', 1)
    assert res.suggest('minimum', 'raw', skip_end=5) == pytest.approx(float(lrs[14]) / 10, rel=1e-15)


def test_synthetic_curve_and_shift():
    lrs, noise_free, raw = synthetic_lr_curve(num_it=100, seed=3)
    assert 0.1 < float(lrs[noise_free.argmin()]) < 0.3
    torch.testing.assert_close(synthetic_lr_curve(noise=0.0)[2], synthetic_lr_curve(noise=0.0)[1], rtol=0, atol=0)
    assert minimum_shift(lrs, raw, raw) == 0.0
    assert minimum_shift(lrs, noise_free.roll(3), noise_free) == pytest.approx(3 * 8 / 99, rel=1e-12)
    shifts = [minimum_shift(lrs, ema(raw, b), noise_free) for b in (0.0, 0.9, 0.98)]
    assert shifts[0] < shifts[1] < shifts[2] and 0.5 < shifts[2] < 1.2  # about one decade at fastai's default
    with pytest.raises(ValueError, match=r'noise must be in \[0, inf\), got -0.1'): synthetic_lr_curve(noise=-0.1)


def test_smooth_inits():
    x = torch.rand(50, dtype=torch.float64) + 1
    torch.testing.assert_close(smooth(x, 0.9, 'zero + debias'), ema(x, 0.9))
    torch.testing.assert_close(smooth(x, 0.9, 'zero'), ema(x, 0.9, debias=False))
    torch.testing.assert_close(smooth(x, 0.9, 'first value'), ema_seeded(x, 0.9))
    with pytest.raises(ValueError, match="init must be one of \\['zero \\+ debias', 'zero', 'first value'\\], got 'one'"):
        smooth(x, 0.9, 'one')


def test_plots_return_axes(data):
    import matplotlib
    matplotlib.use('Agg')
    res = lr_range_test(mlp(), F.cross_entropy, data, num_it=30, progress=False)
    ax = plot_lr_curves(res.lrs, {k: res.curve(k) for k in ('raw', 'smoothed', 'zero_lag')})
    assert ax.get_xscale() == 'log' and len(ax.get_lines()) >= 3
    fig = new_figure()
    ax2 = fig.subplots()
    assert plot_lr_curves(res.lrs, {'raw': res.losses, 'truth': res.smoothed}, ax=ax2) is ax2
    assert [l.get_label() for l in ax2.get_lines() if not l.get_label().startswith('_')] == ['raw', 'noise-free']


def readout(text):
    return dict(line.split(': ', 1) for line in text.split('\n'))


@pytest.mark.parametrize('beta, num_it, init', [(0.98, 100, 'zero + debias'), (0.9, 200, 'first value'),
                                                (0.0, 50, 'zero'), (0.999, 1000, 'zero + debias')])
def test_draw_readout_matches_the_library(beta, num_it, init):
    out = readout(draw_smoothing(new_figure(), beta=beta, num_it=num_it, init=init))
    lrs, noise_free, raw = synthetic_lr_curve(num_it=num_it, seed=0)
    sm = smooth(raw, beta, init)
    zl = zero_lag(raw.log(), zero_lag_beta(beta)).exp()
    assert out['shift'] == f'{minimum_shift(lrs, sm, raw):+.2f} decades'
    assert out['zero-lag shift'] == f'{minimum_shift(lrs, zl, raw):+.2f} decades'
    lag = ema_lag(beta, int(raw.argmin()) + 1)
    assert out['lag'] in (f'{lag:.1f} steps', f'{lag * 8 / (num_it - 1):.2f} decades')
    assert list(readout(draw_smoothing(new_figure(), beta=beta, num_it=num_it, init=init))) == ['shift', 'zero-lag shift', 'lag']


def test_zero_start_puts_the_minimum_at_the_first_step():
    out = readout(draw_smoothing(new_figure(), init='zero'))
    lrs, _, raw = synthetic_lr_curve(num_it=100, seed=0)
    assert out['shift'] == f'{math.log10(1e-7 / float(lrs[raw.argmin()])):+.2f} decades'


def test_explorer_parts_and_sweep():
    draw, controls = explorer_parts()
    assert draw is draw_smoothing and list(controls) == ['beta', 'num_it', 'init']
    assert all(isinstance(c, Control) for c in controls.values())
    assert (controls['beta'].value, controls['num_it'].value, controls['init'].value) == (0.98, 100, 'zero + debias')
    assert {0.9, 0.98, 0.99, 0.999} <= set(controls['beta'].options) and min(controls['beta'].options) == 0.0
    for name, c in controls.items():
        for v in c.values():
            values = {k: cc.value for k, cc in controls.items()} | {name: v}
            assert 'decades' in draw(new_figure(), **values)
