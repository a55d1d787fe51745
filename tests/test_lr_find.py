"""lossnotes.lr_find: the schedule, the range test (restore, stop, cycle), the suggestions, the plots and the explorer."""
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from lossnotes.lessons.data import digits
from lossnotes.ema import ema, ema_lag, ema_seeded, zero_lag, zero_lag_beta
from lossnotes.lr_find import LRFinderResult, lr_range_test, lr_schedule, steepest_lr
from lossnotes.lessons.ema import draw_smoothing, explorer_parts, minimum_shift, smooth, synthetic_lr_curve
from lossnotes.lessons.lr_find import plot_lr_curves
from lossnotes.lessons.plotting import Control, new_figure
import browser_driver as bd
from conftest import let_gloo_workers_finish

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
    assert res.curve('raw') is not res.losses and torch.equal(res.curve('raw'), res.losses)  # a copy



def weighted_mean_oracle(losses, beta):
    "The debiased EMA by its definition: at each step the mean of the losses so far, weighted beta**age, in float64."
    x = np.asarray(losses, dtype=np.float64)
    out = []
    for t in range(1, len(x) + 1):
        w = beta ** np.arange(t - 1, -1, -1, dtype=np.float64)  # 0.0**0 is 1: beta=0 keeps the newest loss
        out.append(float(np.dot(w, x[:t]) / w.sum()))
    return torch.tensor(out, dtype=torch.float64)


class SequenceLoss(torch.nn.Module):
    "Loss values[k] on the k-th forward call; the parameter only carries a gradient."
    def __init__(self, values):
        super().__init__()
        self.w, self.values, self.n = torch.nn.Parameter(torch.zeros((), dtype=torch.float64)), list(values), 0
    def forward(self, x):
        self.n += 1
        return self.w * 0 + self.values[self.n - 1]


@pytest.mark.parametrize('beta', [0.0, 0.5, 0.9, 0.98, 0.999])
def test_smoothed_curve_is_the_weighted_mean_of_the_losses_so_far(beta):
    "What the stop rule read, step by step, is the debiased EMA of the recorded losses: an oracle that never recurses."
    values = np.random.default_rng(1).uniform(0.5, 3.0, 60).tolist()
    res = lr_range_test(SequenceLoss(values), lambda o, y: o, [(None, None)], opt_func=torch.optim.SGD, num_it=60,
                        beta=beta, stop_div=False, progress=False)
    assert res.losses.tolist() == values
    torch.testing.assert_close(res.smoothed, weighted_mean_oracle(values, beta), rtol=1e-12, atol=0)
    torch.testing.assert_close(res.smoothed, ema(values, beta), rtol=1e-12, atol=0)


def test_smoothed_curve_counts_only_the_recorded_steps():
    "Skipped non-finite batches are not steps of the EMA; a stop at a non-finite loss leaves the finite part exact."
    values = np.random.default_rng(2).uniform(0.5, 3.0, 40).tolist()
    values[7] = values[20] = math.nan
    res = lr_range_test(SequenceLoss(values), lambda o, y: o, [(None, None)], opt_func=torch.optim.SGD, num_it=38,
                        beta=0.9, stop_div=False, skip_nonfinite=True, progress=False)
    kept = [v for v in values if not math.isnan(v)]
    assert res.skipped == 2 and res.losses.tolist() == kept
    torch.testing.assert_close(res.smoothed, weighted_mean_oracle(kept, 0.9), rtol=1e-12, atol=0)
    values[30] = math.inf
    res = lr_range_test(SequenceLoss(values[21:]), lambda o, y: o, [(None, None)], opt_func=torch.optim.SGD, num_it=19,
                        beta=0.9, stop_div=False, progress=False)
    assert len(res.losses) == 10 and res.losses[-1] == math.inf and res.smoothed[-1] == math.inf
    torch.testing.assert_close(res.smoothed[:-1], weighted_mean_oracle(values[21:30], 0.9), rtol=1e-12, atol=0)


def _private_tool_imports(path, root):
    "`module.name` for each private name that the module at `path` (inside the package folder `root`) imports from a tool module."
    import ast
    package = ['lossnotes', *path.parent.relative_to(root).parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom): continue
        base = package[:len(package) - node.level + 1] if node.level else []
        module = '.'.join(base + ([node.module] if node.module else []))
        parts = module.split('.')
        tool = parts[0] == 'lossnotes' and len(parts) == 2 and parts[1] not in ('lessons', 'course', '_checks')  # lossnotes.<tool>
        found += [f'{module}.{a.name}' for a in node.names if tool and a.name.startswith('_')]
    return found

def test_tool_modules_import_no_private_names(tmp_path):
    "Tools and lessons take what a tool shares through its public names (lossnotes._checks holds the shared checks)."
    import pathlib
    import lossnotes
    root = pathlib.Path(lossnotes.__file__).parent
    paths = sorted(root.glob('*.py')) + sorted(root.glob('lessons/*.py')) + sorted(root.glob('course/*.py'))
    assert any(p.parent.name == 'lessons' for p in paths) and any(p.parent.name == 'course' for p in paths)
    found = [f'{p.relative_to(root)}: {name}' for p in paths for name in _private_tool_imports(p, root)]
    assert found == [], found
    probe = tmp_path / 'lessons' / 'probe.py'  # the check reads relative and absolute imports alike
    probe.parent.mkdir()
    for line, want in [('from ..accumulate import LossMeter, _item_losses', ['lossnotes.accumulate._item_losses']),
                       ('from lossnotes.ema import _smooth', ['lossnotes.ema._smooth']),
                       ('from .plotting import _titles', []),  # a lesson module's own helpers are not a tool's
                       ('from .._checks import check_1d, _private', [])]:  # the shared internals
        probe.write_text(line + '\n')
        assert _private_tool_imports(probe, tmp_path) == want, line

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
    "The same diverging run: stop_div=False records every one of the 40 steps, stop_div=True stops where the rule says."
    kw = dict(opt_func=torch.optim.SGD, start_lr=1e-3, end_lr=1e3, num_it=40, progress=False)
    full = lr_range_test(mlp(), F.cross_entropy, data, stop_div=False, **kw)
    assert len(full.losses) == 40 and bool(torch.isfinite(full.losses).all())
    best = full.smoothed.cummin(0).values
    first_past = int((full.smoothed > 4 * best).nonzero()[0])  # the step the rule stops at
    assert 10 < first_past < 39
    stopped = lr_range_test(mlp(), F.cross_entropy, data, stop_div=True, **kw)
    assert len(stopped.losses) == first_past + 1
    torch.testing.assert_close(stopped.losses, full.losses[:first_past + 1], rtol=0, atol=0)


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


def fastai_steep(lrs, losses):
    "fastai's `steep` (fastai/callback/schedule.py), its two lines re-typed."
    grads = (losses[1:]-losses[:-1]) / (lrs[1:].log()-lrs[:-1].log())
    return lrs[grads.argmin()].item()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.01, 10), min_size=5, max_size=60))
def test_property_suggestions_match_fastai(losses):
    y = torch.tensor(losses, dtype=torch.float64)
    lrs = lr_schedule(1e-7, 10, len(y))
    res = LRFinderResult(lrs, y, ema(y, 0.98), 0.98)
    assert res.suggest('valley', 'raw') == fastai_valley(lrs, losses)
    assert res.suggest('minimum', 'raw') == pytest.approx(float(lrs[int(np.argmin(losses))]) / 10, rel=1e-15)
    assert res.suggest('steep', 'raw') == fastai_steep(lrs, y)


def test_steep_is_against_log_lr():
    lrs = lr_schedule(1e-6, 1, 121)
    u = lrs.log10()
    y = 2 - torch.tanh((u + 3) / 0.4)  # steepest descent at lr = 1e-3 in log lr; against linear lr it is left of it
    res = LRFinderResult(lrs, y, y.clone(), 0.98)
    # the steepest step is the one that ends at 1e-3; fastai's forward difference names its left end
    assert res.suggest('steep', 'raw') == pytest.approx(10 ** -3.05, rel=1e-9)
    assert steepest_lr(lrs, y) == pytest.approx(1e-3, rel=1e-9)  # central differences: the centre itself
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
    "Every shift in the readout names its reference, and is the library's number."
    out = readout(draw_smoothing(new_figure(), beta=beta, num_it=num_it, init=init))
    lrs, noise_free, raw = synthetic_lr_curve(num_it=num_it, seed=0)
    sm = smooth(raw, beta, init)
    zl = zero_lag(raw.log(), zero_lag_beta(beta)).exp()
    assert out['EMA vs noise-free minimum'] == f'{minimum_shift(lrs, sm, noise_free):+.2f} decades'
    assert out['EMA vs raw minimum'] == f'{minimum_shift(lrs, sm, raw):+.2f} decades'
    assert out['zero-lag vs noise-free minimum'] == f'{minimum_shift(lrs, zl, noise_free):+.2f} decades'
    lag = ema_lag(beta, int(noise_free.argmin()) + 1)
    assert out['lag at the minimum'] == f'{lag:.1f} steps = {lag * 8 / (num_it - 1):.2f} decades'


def test_draw_readout_on_fastai07_schedule():
    "The explorer's fastai 0.7 schedule: 1e-5 times (1e6)**(k/N), one step short of 10; the lag costs 6/N decades a step."
    from lossnotes.lessons.ema import fastai07_lrs
    out = readout(draw_smoothing(new_figure(), num_it=200, schedule='fastai 0.7, 1e-5 to 10'))
    lrs, noise_free, raw = synthetic_lr_curve(num_it=200, seed=0, schedule='fastai 0.7')
    lr_mult = (10 / 1e-5) ** (1 / 200)
    for k in range(200):  # fastai 0.7's calc_lr: init_lrs * lr_mult**iteration
        assert float(lrs[k]) == pytest.approx(1e-5 * lr_mult**k, rel=1e-12)
    torch.testing.assert_close(fastai07_lrs(200), lrs, rtol=0, atol=0)
    lag = ema_lag(0.98, int(noise_free.argmin()) + 1)
    assert out['lag at the minimum'] == f'{lag:.1f} steps = {lag * 6 / 200:.2f} decades'
    assert out['EMA vs noise-free minimum'] == f'{minimum_shift(lrs, ema(raw, 0.98), noise_free):+.2f} decades'
    with pytest.raises(ValueError, match="schedule must be one of"): synthetic_lr_curve(schedule='fastai 2')
    with pytest.raises(ValueError, match="schedule must be one of"): draw_smoothing(new_figure(), schedule='x')


def test_readout_agrees_with_the_lesson_text():
    "The lesson states 0.89 decades from the noise-free minimum and 0.65 from the raw one for the default curve."
    out = readout(draw_smoothing(new_figure()))
    assert out['EMA vs noise-free minimum'] == '+0.89 decades' and out['EMA vs raw minimum'] == '+0.65 decades'


def test_zero_start_puts_the_minimum_at_the_first_step():
    out = readout(draw_smoothing(new_figure(), init='zero'))
    lrs, _, raw = synthetic_lr_curve(num_it=100, seed=0)
    assert out['EMA vs raw minimum'] == f'{math.log10(1e-7 / float(lrs[raw.argmin()])):+.2f} decades'


def test_explorer_parts_and_sweep():
    draw, controls = explorer_parts()
    assert draw is draw_smoothing and list(controls) == ['beta', 'num_it', 'init', 'schedule']
    assert all(isinstance(c, Control) for c in controls.values())
    assert (controls['beta'].value, controls['num_it'].value, controls['init'].value) == (0.98, 100, 'zero + debias')
    assert {0.9, 0.98, 0.99, 0.999} <= set(controls['beta'].options) and min(controls['beta'].options) == 0.0
    for name, c in controls.items():
        for v in c.values():
            values = {k: cc.value for k, cc in controls.items()} | {name: v}
            assert 'decades' in draw(new_figure(), **values)


def test_explorer_moves_beta_in_place_with_the_full_readout():
    "A move of beta updates the curves in place, the limits still; readout and pixels equal a full drawing."
    draw, controls = explorer_parts()
    bd.assert_in_place_with_still_limits(draw, controls, [dict(beta=beta) for beta in controls['beta'].options])


# At the teaching defaults, tests/test_plotting.py::test_every_lesson_explorer_draws_at_every_control_value sweeps
# this explorer with every fast frame compared to a full drawing; a sweep here would repeat it frame for frame.


def test_global_rng_is_left_unchanged(data):
    "Dropout in the model and a shuffling DataLoader draw from the caller's RNG state, which is restored afterwards."
    xt = torch.cat([x for x, _ in data]); yt = torch.cat([y for _, y in data])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xt, yt), batch_size=64, shuffle=True)
    model = mlp()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    res = lr_range_test(model, F.cross_entropy, loader, num_it=30, progress=False)
    assert torch.equal(torch.get_rng_state(), before)
    expected_next = torch.rand(3)  # what the caller draws next is what it would have drawn without the test
    torch.set_rng_state(before)
    assert torch.equal(torch.rand(3), expected_next)
    # the test itself is reproducible from the caller's state: the same state gives the same curve
    torch.set_rng_state(before)
    again = lr_range_test(model, F.cross_entropy, loader, num_it=30, progress=False)
    torch.testing.assert_close(res.losses, again.losses, rtol=0, atol=0)
    torch.set_rng_state(before)
    assert len({float(torch.rand(()))} | {float(torch.rand(()))}) == 2  # the state really advances when drawn from


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_rng_is_left_unchanged(data):
    model = mlp().cuda()
    batches = [(x.cuda(), y.cuda()) for x, y in data]
    before_cpu, before_cuda = torch.get_rng_state(), torch.cuda.get_rng_state()
    lr_range_test(model, F.cross_entropy, batches, num_it=20, progress=False)
    assert torch.equal(torch.get_rng_state(), before_cpu) and torch.equal(torch.cuda.get_rng_state(), before_cuda)


def test_one_shot_iterator_says_so(data):
    gen = (b for b in data[:3])
    with pytest.raises(ValueError, match=r'batches ran out after 3 batches.*one-shot iterator.*DataLoader or a list'):
        lr_range_test(mlp(), F.cross_entropy, gen, num_it=10, progress=False)
    with pytest.raises(ValueError, match=r'batches ran out after 2 batches'):
        lr_range_test(mlp(), F.cross_entropy, iter(data[:2]), num_it=10, progress=False)
    assert len(lr_range_test(mlp(), F.cross_entropy, data[:3], num_it=10, stop_div=False, progress=False).losses) == 10


def test_loss_fn_must_return_a_scalar(data):
    net = mlp()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    per_item = lambda out, y: F.cross_entropy(out, y, reduction='none')
    with pytest.raises(ValueError, match=r'loss_fn must return a scalar loss \(one element\), got shape \(64,\)'):
        lr_range_test(net, per_item, data, num_it=10, progress=False)
    with pytest.raises(TypeError, match='loss_fn must return a tensor, got 1.0 of type float'):
        lr_range_test(net, lambda o, y: 1.0, data, num_it=10, progress=False)
    with pytest.raises(ValueError, match='loss_fn must return a loss that requires grad'):
        lr_range_test(net, lambda o, y: F.cross_entropy(o.detach(), y), data, num_it=10, progress=False)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


class NaNOnCalls(torch.nn.Module):
    "Loss 1.0 except on the given forward calls, where it is NaN (bad batches)."
    def __init__(self, bad):
        super().__init__()
        self.w, self.n, self.bad = torch.nn.Parameter(torch.zeros(())), 0, set(bad)
    def forward(self, x):
        self.n += 1
        return self.w * 0 + (float('nan') if self.n in self.bad else 1.0)


def test_skip_nonfinite():
    kw = dict(loss_fn=lambda o, y: o, batches=[(None, None)], opt_func=torch.optim.SGD, num_it=30, progress=False)
    default = lr_range_test(NaNOnCalls({7}), **kw)
    assert len(default.losses) == 7 and math.isnan(default.losses[-1]) and default.skipped == 0
    one = lr_range_test(NaNOnCalls({7, 15}), skip_nonfinite=True, **kw)
    assert len(one.losses) == 30 and one.skipped == 2 and bool(torch.isfinite(one.losses).all())
    torch.testing.assert_close(one.lrs, lr_schedule(1e-7, 10, 30), rtol=0, atol=0)  # no learning rate skipped
    two = lr_range_test(NaNOnCalls({7, 8}), skip_nonfinite=True, **kw)  # two in a row: divergence, the test stops
    assert len(two.losses) == 7 and math.isnan(two.losses[-1]) and two.skipped == 1
    with pytest.raises(TypeError, match="skip_nonfinite must be a bool"):
        lr_range_test(NaNOnCalls(()), skip_nonfinite=1, **kw)


class ValueOnCalls(torch.nn.Module):
    "Loss 1.0 except on the given forward calls, where it is `value` (e.g. -inf)."
    def __init__(self, bad, value):
        super().__init__()
        self.w, self.n, self.bad, self.value = torch.nn.Parameter(torch.zeros(())), 0, set(bad), value
    def forward(self, x):
        self.n += 1
        return self.w * 0 + (self.value if self.n in self.bad else 1.0)


@pytest.mark.parametrize('value', [-math.inf, math.inf, math.nan])
def test_minus_inf_is_non_finite_and_stops_like_inf_and_nan(value):
    "-inf is not a loss <= 0 to refuse: like NaN and inf it is recorded as the last value and ends the test."
    kw = dict(loss_fn=lambda o, y: o, batches=[(None, None)], opt_func=torch.optim.SGD, num_it=30, progress=False)
    res = lr_range_test(ValueOnCalls({7}, value), **kw)
    assert len(res.losses) == 7 and res.skipped == 0
    assert bool(torch.isfinite(res.losses[:6]).all()) and not math.isfinite(res.losses[-1])
    assert (math.isnan(res.losses[-1]) if math.isnan(value) else res.losses[-1] == value)
    skip = lr_range_test(ValueOnCalls({7, 15}, value), skip_nonfinite=True, **kw)  # skipped, not refused
    assert len(skip.losses) == 30 and skip.skipped == 2 and bool(torch.isfinite(skip.losses).all())
    with pytest.raises(ValueError, match=r"loss_fn returned -1\.0 at step 6"):  # a finite loss <= 0 still raises
        lr_range_test(ValueOnCalls({7}, -1.0), **kw)


def test_opt_func_is_called_with_params_only(data):
    import functools
    seen = {}
    def opt_func(params, **kw):
        seen['kw'] = kw
        return torch.optim.SGD(params, momentum=0.9)
    res = lr_range_test(mlp(), F.cross_entropy, data, opt_func=opt_func, num_it=10, progress=False)
    assert seen['kw'] == {} and len(res.losses) == 10
    lr_range_test(mlp(), F.cross_entropy, data, opt_func=functools.partial(torch.optim.SGD, momentum=0.9), num_it=5, progress=False)
    with pytest.raises(TypeError, match='opt_func must return a torch.optim.Optimizer, got None'):
        lr_range_test(mlp(), F.cross_entropy, data, opt_func=lambda p: None, num_it=5, progress=False)


def test_help_explains_every_parameter():
    import inspect, pydoc
    text = pydoc.render_doc(lr_range_test, renderer=pydoc.plaintext)
    for p in inspect.signature(lr_range_test).parameters:
        assert re.search(rf'^\s+{p} : ', text, re.M), p
    assert 'Examples' in text and '>>>' in text
    for fn in (lr_schedule, steepest_lr, LRFinderResult):
        assert 'Parameters' in pydoc.render_doc(fn, renderer=pydoc.plaintext)


def test_result_methods_document_every_parameter():
    import inspect, pydoc
    for fn in (LRFinderResult.suggest, LRFinderResult.curve, LRFinderResult.argmin_lr):
        text = pydoc.render_doc(fn, renderer=pydoc.plaintext)
        assert 'Parameters' in text and 'Returns' in text, fn.__name__
        for p in list(inspect.signature(fn).parameters)[1:]:
            assert re.search(rf'^\s+(\w+, )*{p}( :|,|$)', text, re.M), (fn.__name__, p)


def test_result_repr_is_short(data):
    res = lr_range_test(mlp(), F.cross_entropy, data, num_it=30, progress=False)
    assert repr(res) == f"LRFinderResult({len(res.lrs)} steps, lr 1e-07 to {float(res.lrs[-1]):.3g}, beta=0.98, skipped=0)"
    assert len(repr(res)) < 100  # the dataclass default printed 3 x 30 numbers
    empty = LRFinderResult(torch.zeros(0, dtype=torch.float64), torch.zeros(0), torch.zeros(0))
    assert repr(empty) == 'LRFinderResult(0 steps, beta=0.98, skipped=0)'


def test_valley_when_the_curve_falls_only_at_the_start():
    "The one documented departure from fastai's lines: there fastai's index is -1, the largest lr."
    lrs = lr_schedule(1e-7, 10, 20)
    y = torch.cat([torch.tensor([2.0, 1.0]), torch.linspace(3, 5, 18)]).double()  # one fall, then rising
    res = LRFinderResult(lrs, y, y.clone())
    assert res.suggest('valley', 'raw') == float(lrs[0])
    # fastai's lines, unclamped (fastai_valley above clamps): idx -1
    n, lds, max_start, max_end = len(y), [1] * len(y), 0, 0
    for i in range(1, n):
        for j in range(i):
            if y[i] < y[j] and lds[i] < lds[j] + 1: lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]: max_end, max_start = i, i - lds[i]
    sections = (max_end - max_start) / 3
    assert max_start + int(sections) + int(sections / 2) == -1
    flat = torch.linspace(1, 3, 20, dtype=torch.float64)  # never falls: both give index 0
    assert LRFinderResult(lrs, flat, flat.clone()).suggest('valley', 'raw') == fastai_valley(lrs, flat.tolist()) == float(lrs[0])


def test_doctests_pass():
    import doctest, sys
    import lossnotes.lr_find  # noqa: F401
    r = doctest.testmod(sys.modules['lossnotes.lr_find'], optionflags=doctest.NORMALIZE_WHITESPACE)
    assert r.attempted >= 6 and r.failed == 0


def test_lesson_exercises_check_right_and_wrong_answers():
    "Each exercise of lessons 01 and 01a accepts its solution, answers a wrong one with a hint aimed at it, and holds no plain answer or factor leading to one."
    import inspect
    import lossnotes.lessons.ema as lesson
    import lossnotes.lessons.lr_find as companion
    from lossnotes.course.exercises import check
    assert 3 <= len(lesson.EXERCISES) <= 5 and 3 <= len(companion.EXERCISES) <= 5
    def stop_v2(smoothed):  # fastai 2.x's LRFinder.after_batch, re-typed as in the lesson
        best = float('inf')
        for batch, s in enumerate(smoothed, start=1):
            best = min(best, s)
            if s > 4 * best: return batch
        return 0
    low_start = torch.tensor([0.5] + [3.0] * 299, dtype=torch.float64)
    batch = stop_v2(ema(low_start, 0.98).tolist())
    assert batch == 3 and check('ema/low-start', 'fastai 2.x stops at batch 3; fastai 0.7 never stops').correct
    assert stop_v2(ema(torch.ones(300, dtype=torch.float64), 0.98).tolist()) == 0  # debiased and flat: no stop
    assert check('ema/low-start', 'b').correct and not any(check('ema/low-start', g).correct for g in 'acd')
    lag = ema_lag(0.99, 80) * 6 / 119
    assert check('ema/lag-elsewhere', lag).correct and not check('ema/lag-elsewhere', 99 * 6 / 119).correct
    assert 'long-run lag' in check('ema/lag-elsewhere', 99 * 6 / 119).hint
    assert check('ema/shallow-descent', 'smaller on C').correct
    for wrong in ('larger on C', 'zero on C: without a deep descent the EMA has nothing to lag behind'):
        fb = check('ema/shallow-descent', wrong)
        assert not fb.correct and len(fb.message) > 40
    avg, best, stopped = 0.0, None, 0  # Lightning 2.x's _LRCallback on a loss that triples at batch 51
    for step, loss in enumerate([1.0] * 50 + [3.0] * 250, start=1):
        avg = 0.98 * avg + 0.02 * loss
        s = avg / (1 - 0.98 ** (step + 1))
        if step > 1 and s > 4 * best: stopped = step; break
        if step == 1 or s < best: best = s
    assert stopped == 76 and abs(best - 0.505) < 1e-3  # option (c): step 76, best_loss about 0.5
    assert [check('lr_find/lightning-stop', g).correct for g in 'abcd'] == [False, False, True, False]
    lrs, _, raw = synthetic_lr_curve(seed=44)
    steep = lambda beta, skip: LRFinderResult(lrs, raw, ema(raw, beta)).suggest('steep', skip_start=skip, skip_end=5)
    assert steep(0.98, 10) < 1e-5 and steep(0.99, 10) < 1e-5 and steep(0.98, 20) > 1e-3  # only the skip moves it: (b)
    assert [check('lr_find/steep-fix', g).correct for g in 'abcd'] == [False, True, False, False]
    assert [check('lr_find/tlf-stop', g).correct for g in 'abcd'] == [False, False, True, False]
    assert check('lr_find/tlf-stop', 'at step 98, in the blow-up').correct
    for module in (lesson, companion):
        src = inspect.getsource(module)
        assert 'factors=' not in src and "answer='smaller on C'" not in src and 'in the blow-up' not in src
        assert 'fastai 0.7 never stops' not in src and 'skipping the first 20' not in src and 'about 0.5' not in src
        assert not any(callable(s.get('answer')) for s in module.EXERCISES.values())  # sealed values, no recomputing callable
        assert all(not s.get('factors') for s in module.EXERCISES.values())


def test_lesson_suggestions_skip_like_fastai_when_the_test_stopped_early():
    "fastai skips num_it // 10 planned steps, not a tenth of the steps recorded."
    from lossnotes.lessons.ema import suggestions
    lrs = lr_schedule(1e-7, 10, 100)[:60]  # a 100-step test that stopped at step 60
    y = torch.ones(60, dtype=torch.float64)
    y[7] = 0.1  # a dip at step 7: fastai's skip of 10 leaves it out, a tenth of 60 (6) would not
    res = LRFinderResult(lrs, y, y.clone())
    assert suggestions(res)['raw minimum'] == res.argmin_lr('raw', skip_start=10, skip_end=5) != float(lrs[7])
    assert suggestions(res, num_it=60)['raw minimum'] == float(lrs[7])


def test_lesson_demo_trainers_leave_the_caller_alone(two_threads):
    from lossnotes.lessons.ema import digits_data, one_thread, outcome_experiment, suggestions, digits_range_test
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    rows = outcome_experiment(seeds=[0])
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
    assert [r['rule'] for r in rows] == list(suggestions(digits_range_test(0)))
    assert all(0 <= r['valid_accuracy'] <= 1 and math.isfinite(r['valid_loss']) for r in rows)
    xt = digits_data()[0]
    xt.zero_()
    assert float(digits_data()[0].abs().sum()) > 0  # the cached split is not handed out
    with pytest.raises(RuntimeError):
        with one_thread(): raise RuntimeError('inside')
    assert torch.get_num_threads() == threads


# --- drop-in manners: an optimizer instance, the loader's generator, autograd off, DDP, the record's checks, plot ---

def _loader(seed=5, n=256):
    g = torch.Generator().manual_seed(seed)
    xs, ys = torch.randn(n, 64, generator=g), torch.randint(0, 10, (n,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, ys), batch_size=32, shuffle=True,
                                       generator=torch.Generator().manual_seed(seed))


def test_optimizer_instance_is_used_and_given_back():
    "torch-lr-finder's habit: an optimizer instance. Its state and learning rates are as before the test."
    import copy
    net, dl = mlp(), _loader()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    F.cross_entropy(net(torch.randn(8, 64)), torch.randint(0, 10, (8,))).backward(); opt.step()
    saved = copy.deepcopy(opt.state_dict())
    torch.manual_seed(1)  # dropout's masks: the same for both runs
    res = lr_range_test(net, F.cross_entropy, dl, opt, num_it=30, progress=False)
    assert len(res.lrs) > 2
    now = opt.state_dict()
    assert now['param_groups'] == saved['param_groups']
    for k, s in saved['state'].items(): assert torch.equal(now['state'][k]['momentum_buffer'], s['momentum_buffer'])
    # the same steps as a freshly built optimizer with that state (the oracle: opt_func building one)
    twin = mlp(); twin.load_state_dict(net.state_dict())
    def build(params):
        o = torch.optim.SGD(params, lr=0.05, momentum=0.9); o.load_state_dict(copy.deepcopy(saved)); return o
    torch.manual_seed(1)
    ref = lr_range_test(twin, F.cross_entropy, _loader(), build, num_it=30, progress=False)
    assert torch.equal(res.losses, ref.losses)


def test_optimizer_over_other_parameters_is_refused():
    other = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="opt_func is an optimizer over parameters that are not the model's"):
        lr_range_test(mlp(), F.cross_entropy, _loader(), other, progress=False)


def test_dataloader_generator_python_and_numpy_rngs_are_left_alone():
    "The next epoch shuffles as it would have: the loader's own generator, random and numpy's global RNG are restored."
    import random
    dl = _loader()
    first_epoch_without = [yb.tolist() for _, yb in _loader()]
    random.seed(3); np.random.seed(3)
    py, npst = random.getstate(), np.random.get_state()
    lr_range_test(mlp(), F.cross_entropy, dl, num_it=20, progress=False)
    assert [yb.tolist() for _, yb in dl] == first_epoch_without
    assert random.getstate() == py and np.array_equal(np.random.get_state()[1], npst[1])


@pytest.mark.parametrize('ctx', [torch.no_grad, torch.inference_mode])
def test_gradients_disabled_says_so(ctx):
    net = mlp(); before = {k: v.clone() for k, v in net.state_dict().items()}
    with ctx(), pytest.raises(RuntimeError, match=r'needs autograd, but gradients are disabled here'):
        lr_range_test(net, F.cross_entropy, _loader(), progress=False)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_ddp_wrapped_model_is_refused(tmp_path):
    "A one-process gloo group is enough to wrap a model in DDP; the test refuses it and says what to do."
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/rdzv', rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(mlp())
        with pytest.raises(ValueError, match=r'model is wrapped in DistributedDataParallel.*model\.module'):
            lr_range_test(ddp, F.cross_entropy, _loader(), progress=False)
        compiled = torch.compile(ddp, backend='eager')  # an OptimizedModule around the DDP model: refused too
        with pytest.raises(ValueError, match=r'model is wrapped in DistributedDataParallel.*model\.module'):
            lr_range_test(compiled, F.cross_entropy, _loader(), progress=False)
        res = lr_range_test(ddp.module, F.cross_entropy, _loader(), num_it=10, progress=False)
        assert len(res.lrs) == 10
    finally:
        ddp = compiled = None  # the reducer goes first, while its group lives
        let_gloo_workers_finish()
        dist.destroy_process_group()


@pytest.mark.parametrize('kw, exc, match', [
    (dict(lrs=[0.0, 1.0]), ValueError, r'lrs must be finite and > 0'),
    (dict(lrs=[-1e-3, 1.0]), ValueError, r'lrs must be finite and > 0'),
    (dict(lrs=[1e-3, float('inf')]), ValueError, r'lrs must be finite and > 0'),
    (dict(lrs=[1e-2, 1e-3]), ValueError, r'lrs must increase step by step'),
    (dict(losses=[1.0, 2.0, 3.0]), ValueError, r'losses must have one value per learning rate \(2\), got 3'),
    (dict(smoothed=[1.0]), ValueError, r'smoothed must have one value per learning rate \(2\), got 1'),
    (dict(lrs=torch.ones(2, 2)), ValueError, r'lrs must be 1-D'),
    (dict(beta=1.0), ValueError, r'beta must be in \[0, 1\)'),
    (dict(skipped=-1), ValueError, r'skipped must be in \[0, inf\)'),
    (dict(losses='ab'), TypeError, r'losses must'),
    (dict(losses=np.array([1 + 1j, 2.0])), TypeError, r'losses must be real, got complex values'),  # not cut to its real part
    (dict(smoothed=torch.ones(2, device='meta')), ValueError, r'smoothed is on the meta device'),
    (dict(losses=torch.tensor([True, False])), TypeError, r'losses must hold numbers, got bool values'),
])
def test_result_is_checked_on_construction(kw, exc, match):
    args = dict(lrs=[1e-3, 1e-2], losses=[2.0, 1.0], smoothed=[2.0, 1.5]) | kw
    with pytest.raises(exc, match=match): LRFinderResult(**args)


def test_result_from_lists_is_float64_and_steep_is_never_zero():
    res = LRFinderResult([1e-3, 1e-2, 1e-1], [2.0, 1.0, 0.9], [2.0, 1.5, 1.3])
    assert res.lrs.dtype == res.losses.dtype == res.smoothed.dtype == torch.float64
    assert res.suggest('steep', kind='raw') == 1e-3


def test_plot_draws_both_curves_and_the_suggestions(data):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    res = lr_range_test(mlp(), F.cross_entropy, data, end_lr=100.0, num_it=60, progress=False)
    ax = res.plot(skip_start=6, skip_end=5)
    lines = ax.get_lines()
    assert np.array_equal(lines[0].get_ydata(), res.losses.numpy()) and np.array_equal(lines[1].get_ydata(), res.smoothed.numpy())
    xs = {l.get_label().split(':')[0]: l.get_xdata()[0] for l in lines[2:]}
    assert xs == {m: res.suggest(m, skip_start=6, skip_end=5) for m in ('valley', 'steep', 'minimum')}
    assert ax.get_xscale() == 'log'
    plt.close('all')


def test_num_it_beyond_float_range_names_it():
    with pytest.raises(ValueError, match=r'num_it must be at most 10\*\*9, got 100000\.\.\. \(401 digits\)'):
        lr_schedule(1e-3, 1.0, 10**400)


def test_a_loss_below_zero_is_refused_by_the_stop_rule_and_recorded_without_it():
    "s > 4 * best is a ratio: with a negative loss it stopped after one step; now the test says why, naming the value."
    torch.manual_seed(0)
    model, xs, ys = torch.nn.Linear(4, 2), torch.randn(32, 4), torch.randn(32, 1)
    data = [(xs, ys)]
    shifted = lambda o, t: F.mse_loss(o[:, :1], t) - 10
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"loss_fn returned -\d.* at step 0 \(lr 1e-07\).*needs losses > 0.*stop_div=False"):
        lr_range_test(model, shifted, data, num_it=50, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # restored when it raises
    res = lr_range_test(model, shifted, data, num_it=50, end_lr=1e-2, stop_div=False, progress=False)
    assert len(res.losses) == 50 and bool((res.losses < 0).all())
    # the oracle: the same run of plain Adam steps, by hand, records the same losses
    ref, opt, got = torch.nn.Linear(4, 2), None, []
    ref.load_state_dict(before); opt = torch.optim.Adam(ref.parameters())
    for lr in res.lrs.tolist():
        for g in opt.param_groups: g['lr'] = lr
        opt.zero_grad(); loss = shifted(ref(xs), ys); got.append(loss.item()); loss.backward(); opt.step()
    torch.testing.assert_close(res.losses, torch.tensor(got, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    assert res.argmin_lr('raw') == float(res.lrs[int(res.losses.argmin())])
    with pytest.raises(ValueError, match=r"kind='zero_lag' smooths the log of the loss and needs losses > 0, got -"):
        res.curve('zero_lag')


def test_zero_lag_refuses_non_positive_losses_instead_of_clamping():
    lrs = lr_schedule(1e-4, 1.0, 5)
    for losses, bad in (([-1.0, -2.0, -3.0, -2.5, -1.0], '-1.0 at step 0'), ([2.0, 1.0, 0.0, 1.0, 2.0], '0.0 at step 2')):
        res = LRFinderResult(lrs, torch.tensor(losses, dtype=torch.float64), torch.zeros(5))
        for call in (lambda: res.curve('zero_lag'), lambda: res.argmin_lr('zero_lag'), lambda: res.suggest('valley', kind='zero_lag')):
            with pytest.raises(ValueError, match=re.escape(bad)): call()
    res = LRFinderResult(lrs, torch.tensor([-1.0, -2.0, -3.0, -2.5, -1.0], dtype=torch.float64), torch.zeros(5))
    assert res.argmin_lr('raw') == pytest.approx(1e-2, rel=1e-12)  # the raw minimum, -3 at lr 1e-2
    pos = LRFinderResult(lrs, torch.tensor([2.0, 1.0, 0.5, 1.0, float('nan')], dtype=torch.float64), torch.zeros(5))
    torch.testing.assert_close(pos.curve('zero_lag', 0.5)[:4], zero_lag(pos.losses[:4].log(), zero_lag_beta(0.5)).exp())


def test_curve_returns_copies():
    lrs = lr_schedule(1e-4, 1.0, 4)
    res = LRFinderResult(lrs, torch.tensor([2.0, 1.0, 0.5, 1.0], dtype=torch.float64), ema([2.0, 1.0, 0.5, 1.0], 0.98))
    for kind in ('raw', 'smoothed', 'zero_lag'):
        c = res.curve(kind); c.fill_(7.0)
    assert res.losses.tolist() == [2.0, 1.0, 0.5, 1.0]
    torch.testing.assert_close(res.smoothed, ema([2.0, 1.0, 0.5, 1.0], 0.98))


def test_steepest_lr_checks_its_arguments_and_names_them():
    lrs = lr_schedule(1e-4, 1.0, 5)
    with pytest.raises(ValueError, match=r'lrs and curve must have one value per step, got 5 learning rates and 3 losses'):
        steepest_lr(lrs, torch.tensor([3.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r'curve must start with at least 2 finite losses \(a slope needs two points\), got 1 of 5'):
        steepest_lr(lrs, torch.tensor([3.0, math.nan, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r'lrs must be finite, > 0 and increasing'):
        steepest_lr([1e-3, 1e-3, 1e-2], [3.0, 2.0, 1.0])
    with pytest.raises(TypeError, match=r'curve must be a 1-D sequence of numbers'):
        steepest_lr(lrs, None)
    with pytest.raises(ValueError, match=r'lrs must be 1-D'):
        steepest_lr(torch.ones(5, 1), [1.0] * 5)
    # lists work, and the answer is numpy.gradient's (central differences against log10 lr)
    curve = [2.0, 2.0, 1.0, 0.2, 0.1]
    g = np.gradient(np.array(curve), np.log10(lrs.numpy()))
    assert steepest_lr(lrs.tolist(), curve) == pytest.approx(float(lrs[int(g.argmin())]), rel=1e-15)


def test_suggest_short_record_error_names_the_skips_and_the_length():
    lrs = lr_schedule(1e-4, 1.0, 12)
    res = LRFinderResult(lrs, torch.linspace(3, 1, 12, dtype=torch.float64), torch.zeros(12))
    with pytest.raises(ValueError, match=r'got 0: the record has 12 steps, skip_start=10 and skip_end=5 leave 0$'):
        res.suggest('valley', skip_start=10, skip_end=5)
    nanres = LRFinderResult(lrs, torch.tensor([3.0] + [math.nan] * 11, dtype=torch.float64), torch.zeros(12))
    with pytest.raises(ValueError, match=r'got 1: the record has 12 steps, skip_start=0 and skip_end=2 leave 10, of which the first 1 are finite'):
        nanres.argmin_lr('raw', skip_end=2)


def test_integer_loss_and_dataset_are_refused_naming_the_cause():
    model = torch.nn.Linear(4, 3)
    xs, ys = torch.randn(16, 4), torch.randint(0, 3, (16,))
    accuracy = lambda o, t: (o.argmax(1) == t).sum()
    with pytest.raises(TypeError, match=r'loss_fn must return a floating-point loss, got dtype torch.int64'):
        lr_range_test(model, accuracy, [(xs, ys)], num_it=5, progress=False)
    ds = torch.utils.data.TensorDataset(xs, ys)
    with pytest.raises(TypeError, match=r'batches is a TensorDataset, a Dataset that yields single unbatched samples: wrap it in a DataLoader'):
        lr_range_test(model, F.cross_entropy, ds, num_it=5, progress=False)
    res = lr_range_test(model, F.cross_entropy, torch.utils.data.DataLoader(ds, batch_size=8), num_it=5, progress=False)
    assert len(res.losses) == 5


def test_bf16_wrapper_returning_float_computes_the_loss_as_autocast_does():
    "The documented bf16 recipe: autocast around the forward, out.float(): the loss equals the one computed inside autocast."
    class AutocastForward(torch.nn.Module):
        def __init__(self, m): super().__init__(); self.m = m
        def forward(self, x):
            with torch.autocast('cpu', dtype=torch.bfloat16): return self.m(x).float()
    torch.manual_seed(0)
    x, y = torch.randn(64, 20), torch.randint(0, 10, (64,))
    net = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        inside = F.cross_entropy(net(x), y)  # the oracle: loss computed inside autocast (float32 by its cast list)
        bf16_logits = net(x)
    assert inside.dtype == torch.float32 and bf16_logits.dtype == torch.bfloat16
    outside = F.cross_entropy(bf16_logits, y)  # the old advice: bfloat16 logits, loss outside autocast
    assert outside.dtype == torch.bfloat16
    res = lr_range_test(AutocastForward(net), F.cross_entropy, [(x, y)], num_it=3, progress=False)
    assert res.losses[0].item() == inside.item()
    assert outside.item() != inside.item()


def test_plot_draws_the_curve_its_suggestions_read():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    torch.manual_seed(0)
    lrs = lr_schedule(1e-5, 1.0, 80)
    t = torch.linspace(0, 1, 80, dtype=torch.float64)
    losses = 2 - 1.5 * torch.sigmoid((t - 0.5) * 12) + 0.05 * torch.randn(80, dtype=torch.float64) + 3 * t**8
    res = LRFinderResult(lrs, losses, ema(losses, 0.98))
    for kw, label in (({}, 'debiased EMA (beta=0.98)'), (dict(kind='zero_lag'), 'zero-lag EMA of the log loss (beta=0.98)'),
                      (dict(kind='smoothed', beta=0.5), 'debiased EMA (beta=0.5)')):
        ax = res.plot(methods=('valley', 'minimum'), **kw)
        lines = {l.get_label(): l for l in ax.get_lines()}
        assert label in lines, (kw, list(lines))
        np.testing.assert_allclose(lines[label].get_ydata(), res.curve(kw.get('kind', 'smoothed'), kw.get('beta')).numpy())
        for m in ('valley', 'minimum'):
            lr = res.suggest(m, **kw)
            assert f'{m}: {lr:.2g}' in lines
        plt.close(ax.figure)
    ax = res.plot(methods='valley', kind='raw')
    lo, hi = float(losses.min()), float(torch.quantile(losses, 0.9))
    assert ax.get_ylim() == pytest.approx((lo - 0.05 * (hi - lo), hi + 0.5 * (hi - lo)), rel=1e-12)  # min to above the 90th percentile
    assert [l.get_label() for l in ax.get_lines()][0] == 'raw loss' and not any('EMA' in l.get_label() for l in ax.get_lines())
    plt.close(ax.figure)
