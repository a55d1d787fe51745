"""lossnotes.batchnorm: the debias algebra, RunningBatchNorm against the course's layer and closed forms,
buffers, dtype moves, state_dict, batch size 1, float32 precision, torch.compile, and the live figure."""
import copy
import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from lossnotes.batchnorm import RunningBatchNorm, effective_momentum, merge_stats
from lossnotes.lessons.batchnorm import explorer_parts
from lossnotes.lessons.batchnorm import (EXERCISES, InstrumentedRunningBatchNorm, debias_stream, digits_cnn, draw_debias,
                                        init_cnn, plot_debias, ratio_change, running_sums, train_digits)
from course_batchnorm import CourseRunningBatchNorm
from lossnotes.lessons.plotting import DEBIASED, EMA, RAW, new_figure
import browser_driver as bd
from conftest import let_gloo_workers_finish

torch.set_num_threads(1)


def weights_per_step(moms):
    "w_i = m_i * prod_{j>i} (1 - m_j): the weight lerp_ from zero gives step i."
    moms = np.asarray(moms, dtype=np.float64)
    return np.array([moms[i] * np.prod(1 - moms[i + 1:]) for i in range(len(moms))])


# ---------------------------------------------------------------- the debias algebra

@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=40), st.floats(0.01, 1.0), st.integers(0, 10**6))
def test_debias_cancels_in_float64(sizes, mom, seed):
    g = torch.Generator().manual_seed(seed)
    stream = [torch.randn(b, generator=g, dtype=torch.float64) * 3 + 5 for b in sizes]
    moms = [effective_momentum(mom, b) for b in sizes]
    r = running_sums(torch.stack([s.sum() for s in stream]), torch.tensor(sizes), torch.tensor(moms, dtype=torch.float64))
    raw = r['sums'] / r['count']
    debiased = (r['sums'] / r['dbias']) / (r['count'] / r['dbias'])
    assert torch.allclose(raw, debiased, rtol=1e-12, atol=0)
    # the ratio is numpy's weighted average of every item with weight w_i (oracle)
    w = np.concatenate([np.full(b, wi) for b, wi in zip(sizes, weights_per_step(moms))])
    assert raw[-1].item() == pytest.approx(np.average(torch.cat(stream).numpy(), weights=w), rel=1e-12)
    assert r['dbias'][-1].item() == pytest.approx(1 - np.prod(1 - np.array(moms)), rel=1e-12)


def test_running_sums_matches_lerp_and_dbias_closed_form():
    r = running_sums(torch.tensor([2., 4., 6.], dtype=torch.float64), torch.tensor([1, 1, 1]), 0.5)
    assert r['sums'].tolist() == [1.0, 2.5, 4.25]
    assert r['dbias'].tolist() == [0.5, 0.75, 0.875]
    assert torch.equal(r['count'], r['dbias'])


def test_running_sums_bad_input():
    with pytest.raises(ValueError, match=r'batch_counts must have shape \(2,\), got \(3,\)'):
        running_sums(torch.ones(2), torch.ones(3), 0.1)
    with pytest.raises(ValueError, match=r'moms must be one float or have shape \(2,\), got \(3,\)'):
        running_sums(torch.ones(2), torch.ones(2), torch.full((3,), 0.1))
    with pytest.raises(ValueError, match=r'moms must be in \(0, 1\], got \[0.0, 0.5\]'):
        running_sums(torch.ones(2), torch.ones(2), torch.tensor([0.0, 0.5]))


def test_debias_matters_for_an_ema_of_means():
    "nn.BatchNorm2d's running_mean is an EMA of batch means from zero: it needs the debias (torch as oracle)."
    bn = nn.BatchNorm2d(1, momentum=0.1)
    batch = torch.tensor([1., 2., 3., 4., 5.]).view(5, 1, 1, 1)
    for _ in range(5): bn(batch)
    d = running_sums(torch.full((5,), 3.0, dtype=torch.float64), torch.ones(5), 0.1)['dbias'][-1].item()
    assert bn.running_mean.item() == pytest.approx(3 * d, rel=1e-6)
    assert bn.running_mean.item() / d == pytest.approx(3.0, rel=1e-6)


# ---------------------------------------------------------------- mom1

def test_effective_momentum():
    assert effective_momentum(0.1, 2) == pytest.approx(0.1, abs=1e-15)
    assert effective_momentum(0.1, 5) == pytest.approx(0.55, abs=1e-15)
    assert effective_momentum(0.1, 1) == pytest.approx(0.1, abs=1e-15)  # the course's formula divides by zero
    assert effective_momentum(1.0, 7) == 1.0
    assert effective_momentum(0.1, 512) == pytest.approx(1 - 0.9 / math.sqrt(511), abs=1e-15)
    assert effective_momentum(0.1, 64) == pytest.approx(0.887, abs=5e-4)  # nn.BatchNorm2d: 0.1 at every size
    with pytest.raises(ValueError, match=r'momentum must be in \(0, 1\], got 0'):
        effective_momentum(0, 4)
    with pytest.raises(ValueError, match=r'batch_size must be in \[1, inf\), got 0'):
        effective_momentum(0.1, 0)
    with pytest.raises(TypeError, match='batch_size must be an integer, got 2.5'):
        effective_momentum(0.1, 2.5)


def test_course_layer_fails_at_batch_size_1_and_ours_does_not():
    with pytest.raises(ZeroDivisionError):
        CourseRunningBatchNorm(3)(torch.randn(1, 3, 4, 4))
    y = RunningBatchNorm(3)(torch.randn(1, 3, 4, 4))
    assert torch.isfinite(y).all()


# ---------------------------------------------------------------- merge_stats

@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=12), st.floats(0.05, 1.0), st.integers(0, 10**6))
def test_merge_stats_is_the_weighted_mean_and_variance(sizes, mom1, seed):
    g = torch.Generator().manual_seed(seed)
    stream = [torch.randn(n, generator=g, dtype=torch.float64) * 2 - 7 for n in sizes]
    mean = var = torch.zeros(1, dtype=torch.float64)
    count = torch.zeros((), dtype=torch.float64)
    for s in stream:
        mean, var, count = merge_stats(mean, var, count, s.mean().view(1), s.var(correction=0).view(1), len(s), mom1)
    w = np.concatenate([np.full(n, wi) for n, wi in zip(sizes, weights_per_step([mom1] * len(sizes)))])
    x = torch.cat(stream).numpy()
    mu = np.average(x, weights=w)
    assert mean.item() == pytest.approx(mu, rel=1e-12)
    assert var.item() == pytest.approx(np.average((x - mu) ** 2, weights=w), rel=1e-10)
    assert count.item() == pytest.approx((w * 1.0).sum(), rel=1e-12)


# ---------------------------------------------------------------- the layer against the course's

@pytest.mark.parametrize('bs', [2, 3, 16, 64])
def test_agrees_with_course_layer_in_float64(bs):
    torch.manual_seed(bs)
    ours, course = RunningBatchNorm(4).double(), CourseRunningBatchNorm(4).double()
    for t in range(120):  # past the course's 100 debiased steps
        x = (torch.randn(bs, 4, 3, 3, dtype=torch.float64) * 2 + 3 + 0.01 * t).requires_grad_()
        ya, yb = ours(x), course(x)
        torch.testing.assert_close(ya, yb, rtol=1e-9, atol=1e-9)
        ga, = torch.autograd.grad(ya.pow(3).sum(), x)
        gb, = torch.autograd.grad(yb.pow(3).sum(), x)
        torch.testing.assert_close(ga, gb, rtol=1e-8, atol=1e-8)
    means = (course.sums / course.count).flatten()
    torch.testing.assert_close(ours.running_mean, means, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours.running_var, (course.sqrs / course.count).flatten() - means**2, rtol=1e-8, atol=1e-8)
    assert ours.count.item() == pytest.approx(course.count.item(), rel=1e-12)
    ours.eval(); course.eval()
    x = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(ours(x), course(x), rtol=1e-9, atol=1e-9)


def test_gradient_is_exact_in_float64():
    torch.manual_seed(0)
    m = RunningBatchNorm(3).double()
    for _ in range(3): m(torch.randn(4, 3, 5, 5, dtype=torch.float64))
    saved = {k: v.clone() for k, v in m.named_buffers()}
    def f(x):
        for k, v in saved.items(): setattr(m, k, v.clone())
        return m(x)
    assert torch.autograd.gradcheck(f, (torch.randn(4, 3, 2, 2, dtype=torch.float64, requires_grad=True),))


def test_double_backward_is_refused_not_wrong():
    "create_graph=True through a training step raises, rather than return a second derivative that holds the statistics fixed."
    torch.manual_seed(0)
    x = torch.randn(24, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    up = torch.randn(24, 3, 4, 4, dtype=torch.float64)
    ours, ref = RunningBatchNorm(3).double(), nn.BatchNorm2d(3).double()
    gx, = torch.autograd.grad((ref(x) * up).sum(), x, create_graph=True)  # nn.BatchNorm2d supports it
    assert torch.autograd.grad((gx ** 2).sum(), x)[0].norm() > 1
    with pytest.raises(RuntimeError, match='first order only'):
        torch.autograd.grad((ours(x) * up).sum(), x, create_graph=True)
    g1, = torch.autograd.grad((ours(x) * up).sum(), x)  # first order is unaffected
    assert torch.isfinite(g1).all()
    ours.eval()  # evaluation mode is torch's own batch_norm, twice differentiable
    gx, = torch.autograd.grad((ours(x) * up).sum(), x, create_graph=True)
    assert gx.requires_grad


# ---------------------------------------------------------------- properties of the module

def test_buffers_reset_repr():
    m = RunningBatchNorm(5, mom=0.2, eps=1e-3)
    assert {k for k, _ in m.named_buffers()} == {'running_mean', 'running_var', 'count', 'num_samples_tracked',
                                                 'num_batches_tracked'}
    assert {k for k, _ in m.named_parameters()} == {'weight', 'bias'}
    assert repr(m) == 'RunningBatchNorm(5, eps=0.001, momentum=0.2, affine=True)'  # nn.BatchNorm2d's words
    m(torch.randn(8, 5, 3) + 2)
    assert m.num_batches_tracked.item() == 1 and m.num_samples_tracked.item() == 8
    assert m.running_mean.abs().min() > 1
    m.reset_running_stats()
    for k, b in m.named_buffers():  # as in a new layer (and nn.BatchNorm2d): variance 1, everything else 0
        assert torch.equal(b, torch.ones(5) if k == 'running_var' else torch.zeros_like(b)), k
    assert set(m.state_dict()) == {'weight', 'bias', 'running_mean', 'running_var', 'count', 'num_samples_tracked',
                                   'num_batches_tracked'}


def test_training_updates_and_eval_does_not():
    m = RunningBatchNorm(3)
    x = torch.randn(6, 3, 4) * 3 + 1
    m(x)
    torch.testing.assert_close(m.running_mean, x.mean((0, 2)))  # first step: the batch itself
    torch.testing.assert_close(m.running_var, x.var((0, 2), correction=0))
    m.eval()
    before = copy.deepcopy(m.state_dict())
    y = m(torch.randn(2, 3, 4))
    for k, v in m.state_dict().items(): assert torch.equal(v, before[k]), k
    x2 = torch.randn(2, 3, 4)
    expect = (x2 - m.running_mean.view(1, 3, 1)) / (m.running_var.view(1, 3, 1) + m.eps).sqrt()
    torch.testing.assert_close(m(x2), expect)
    assert y.shape == (2, 3, 4)


def test_to_dtype_and_state_dict_round_trip():
    torch.manual_seed(0)
    m = RunningBatchNorm(3)
    for _ in range(30): m(torch.randn(4, 3, 5))
    m64 = copy.deepcopy(m).to(torch.float64)
    assert m64.running_mean.dtype == m64.count.dtype == m64.weight.dtype == torch.float64
    assert m64.num_batches_tracked.dtype == torch.long
    assert m64(torch.randn(4, 3, 5, dtype=torch.float64)).dtype == torch.float64
    fresh = RunningBatchNorm(3)
    fresh.load_state_dict(m.state_dict())
    x = torch.randn(4, 3, 5)
    m.eval(); fresh.eval()
    assert torch.equal(m(x), fresh(x))
    m.train(); fresh.train()
    assert torch.equal(m(x), fresh(x))
    for k, v in m.state_dict().items(): assert torch.equal(v, fresh.state_dict()[k]), k


def test_batch_size_one_and_first_step():
    m = RunningBatchNorm(3)
    y = m(torch.randn(1, 3))  # one sample, no spatial dims: variance 0 on the very first step
    assert torch.isfinite(y).all() and y.abs().max() < 1e-6  # x equals the mean; the clamp keeps 1/sqrt finite
    for _ in range(40): y = m(torch.randn(1, 3) * 2 + 1)
    assert torch.isfinite(y).all()
    assert m.num_samples_tracked.item() == 41


def test_clamp_only_while_fewer_than_20_samples():
    m = RunningBatchNorm(1)
    x = torch.tensor([1.0, 1.01]).view(2, 1)  # variance 2.5e-5
    assert m(x).abs().max().item() == pytest.approx(0.005 / math.sqrt(0.01 + 1e-5), rel=1e-4)
    m = RunningBatchNorm(1)
    big = torch.tensor([1.0] * 10 + [1.01] * 10).view(20, 1)  # 20 samples seen: no clamp
    assert m(big).abs().max().item() == pytest.approx(0.005 / math.sqrt(2.5e-5 + 1e-5), rel=1e-3)


def test_float32_variance_with_mean_1000_times_std():
    torch.manual_seed(0)
    ours32, ours64, course32 = RunningBatchNorm(3), RunningBatchNorm(3).double(), CourseRunningBatchNorm(3)
    for _ in range(50):
        x = torch.randn(16, 3, 4, 4, dtype=torch.float64) + 1000
        ours32(x.float()); ours64(x); course32(x.float())
    truth = ours64.running_var
    assert ((ours32.running_var.double() - truth).abs() / truth).max() < 0.01
    course_var = (course32.sqrs / course32.count - (course32.sums / course32.count) ** 2).flatten().double()
    assert ((course_var - truth).abs() / truth).max() > 0.01  # the E[x^2]-E[x]^2 formula fails this test


def test_stationary_input_gives_unit_outputs_in_eval():
    torch.manual_seed(0)
    m = RunningBatchNorm(4)
    loc, scale = torch.tensor([-3., 0., 2., 50.]).view(1, 4, 1, 1), torch.tensor([1., 0.1, 5., 10.]).view(1, 4, 1, 1)
    for _ in range(300): m(torch.randn(32, 4, 6, 6) * scale + loc)
    m.eval()
    y = m(torch.randn(512, 4, 6, 6) * scale + loc)
    assert y.mean((0, 2, 3)).abs().max() < 0.05
    assert (y.std((0, 2, 3)) - 1).abs().max() < 0.05


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=8), st.integers(1, 4), st.integers(0, 2),
       st.sampled_from([0.01, 0.1, 0.5, 1.0]), st.integers(0, 10**6))
def test_running_stats_are_numpys_weighted_stats(batch_sizes, channels, n_spatial, mom, seed):
    g = torch.Generator().manual_seed(seed)
    spatial = tuple(int(s) for s in torch.randint(1, 4, (n_spatial,), generator=g))
    m = RunningBatchNorm(channels, mom=mom).double()
    batches = [torch.randn((b, channels) + spatial, generator=g, dtype=torch.float64) * 2 + 1 for b in batch_sizes]
    for x in batches: y = m(x)
    assert y.shape == batches[-1].shape and torch.isfinite(y).all()
    w_step = weights_per_step([effective_momentum(mom, b) for b in batch_sizes])
    for c in range(channels):
        items = [x[:, c].reshape(-1).numpy() for x in batches]
        w = np.concatenate([np.full(len(v), wi) for v, wi in zip(items, w_step)])
        v = np.concatenate(items)
        mu = np.average(v, weights=w)
        assert m.running_mean[c].item() == pytest.approx(mu, rel=1e-9, abs=1e-12)
        assert m.running_var[c].item() == pytest.approx(np.average((v - mu) ** 2, weights=w), rel=1e-8, abs=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match=r'x must have 3 channels in dim 1, got shape \(4, 5\)'):
        RunningBatchNorm(3)(torch.randn(4, 5))
    with pytest.raises(ValueError, match=r'x must have shape \(N, C, ...\) with C = 3, got shape \(3,\)'):
        RunningBatchNorm(3)(torch.randn(3))
    with pytest.raises(ValueError, match=r'mom must be in \(0, 1\], got 1.5'):
        RunningBatchNorm(3, mom=1.5)
    with pytest.raises(ValueError, match=r'mom must be in \(0, 1\], got 0.0'):
        RunningBatchNorm(3, mom=0.0)
    with pytest.raises(ValueError, match=r'eps must be in \(0, inf\), got 0.0'):
        RunningBatchNorm(3, eps=0.0)
    with pytest.raises(ValueError, match=r'eps must be in \(0, inf\), got -1e-05'):
        RunningBatchNorm(3, eps=-1e-5)
    with pytest.raises(ValueError, match=r'num_features must be in \[1, inf\), got 0'):
        RunningBatchNorm(0)


# ---------------------------------------------------------------- torch.compile (compiled once for the module)

STEPS, SHAPE = 110, (4, 3, 5, 5)


@pytest.fixture(scope='module')
def compiled_run():
    "Eager and compiled copies trained side by side for STEPS steps on inputs that require grad."
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager, twin = RunningBatchNorm(3), RunningBatchNorm(3)
    twin.load_state_dict(eager.state_dict())
    compiled = torch.compile(twin)
    worst = dict(out=0.0, grad=0.0)
    for t in range(STEPS):
        x = (torch.randn(SHAPE) * 2 + 1 + 0.01 * t).requires_grad_()
        ye, yc = eager(x), compiled(x)
        ge, = torch.autograd.grad(ye.pow(3).sum(), x)
        gc, = torch.autograd.grad(yc.pow(3).sum(), x)
        worst['out'] = max(worst['out'], (ye - yc).abs().max().item())
        worst['grad'] = max(worst['grad'], ((ge - gc).abs().max() / ge.abs().max()).item())
    eager.eval(); twin.eval()
    x = torch.randn(SHAPE)
    worst['eval'] = (eager(x) - compiled(x)).abs().max().item()
    yield eager, twin, worst
    torch._dynamo.reset()


@pytest.mark.slow  # 110 compiled steps; the fast loop compiles a ragged epoch in tests/test_bad_input_batchnorm.py
def test_compiled_matches_eager_outputs_and_gradients(compiled_run):
    _, _, worst = compiled_run
    assert worst['out'] < 1e-5 and worst['eval'] < 1e-5
    assert worst['grad'] < 1e-5


@pytest.mark.slow
def test_compiled_buffers_match_eager(compiled_run):
    eager, twin, _ = compiled_run
    assert twin.num_batches_tracked.item() == eager.num_batches_tracked.item() == STEPS
    for k, v in eager.state_dict().items():
        torch.testing.assert_close(twin.state_dict()[k], v, rtol=1e-5, atol=1e-6, msg=k)


def test_no_graph_breaks():
    x = torch.randn(SHAPE, requires_grad=True)
    ours = torch._dynamo.explain(RunningBatchNorm(3))(x)
    course = torch._dynamo.explain(CourseRunningBatchNorm(3))(x)
    torch._dynamo.reset()
    assert ours.graph_break_count == 0 and ours.graph_count == 1
    assert course.graph_break_count > 0  # the test can fail: the course's layer has host syncs


# ---------------------------------------------------------------- the CNN and its init

def test_init_cnn_handles_missing_bias():
    model = digits_cnn('batch')
    assert model[0].bias is None and isinstance(model[2], nn.BatchNorm2d)
    assert isinstance(digits_cnn('running')[2], RunningBatchNorm)
    plain = digits_cnn('none')
    assert plain[0].bias is not None and plain[0].bias.abs().sum() == 0
    conv = nn.Conv2d(1, 4, 3, bias=False)
    init_cnn(nn.Sequential(conv))
    assert conv.bias is None and conv.weight.std() > 0
    assert isinstance(digits_cnn(CourseRunningBatchNorm)[2], CourseRunningBatchNorm)
    with pytest.raises(ValueError, match=r"norm must be one of \['batch', 'none', 'running'\] or a class, got 'layer'"):
        digits_cnn('layer')
    assert digits_cnn('running')(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_train_digits_small_batches():
    sgd = functools.partial(torch.optim.SGD, lr=0.01, momentum=0.9)
    bn = train_digits('batch', 2, epochs=0.25, opt_func=sgd, generator=torch.Generator().manual_seed(0))
    rbn = train_digits('running', 2, epochs=0.25, opt_func=sgd, generator=torch.Generator().manual_seed(0))
    assert bn['steps'] == rbn['steps'] == 180  # the lesson's setting; it repeats this over three seeds
    assert rbn['accuracy'] > bn['accuracy'] + 0.3
    assert rbn['sec_per_epoch'] > 0 and isinstance(rbn['model'][2], RunningBatchNorm)


def test_train_digits_leaves_global_state_alone_and_is_reproducible():
    "An explicit generator: the caller's RNG and thread count are as they were, and a seed gives the same run."
    torch.manual_seed(123)
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a = train_digits('running', 32, epochs=0.2, generator=torch.Generator().manual_seed(5))
        assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == 2
        b = train_digits('running', 32, epochs=0.2, generator=torch.Generator().manual_seed(5))
        train_digits('running', 32, epochs=0.1)  # generator=None: a fresh random one, the global RNG untouched
        assert torch.equal(torch.get_rng_state(), rng)
    finally:
        torch.set_num_threads(threads)
    assert a['accuracy'] == b['accuracy']
    for p, q in zip(a['model'].parameters(), b['model'].parameters()): assert torch.equal(p, q)
    used = []
    def opt_func(params):
        used.append(1)
        return torch.optim.Adam(params, lr=1e-3)
    train_digits('batch', 64, epochs=0.1, opt_func=opt_func, generator=torch.Generator().manual_seed(0))
    assert used == [1]


def test_train_digits_bad_input():
    with pytest.raises(ValueError, match=r'batch_size must be in \[1, inf\), got 0'):
        train_digits('running', 0)
    with pytest.raises(ValueError, match=r'epochs must be in \(0, inf\), got 0'):
        train_digits('running', 8, epochs=0)
    with pytest.raises(TypeError, match="progress must be a bool .True or False., got 'no'"):
        train_digits('running', 8, progress='no')
    with pytest.raises(TypeError, match='generator must be a torch.Generator or None, got 0'):
        train_digits('running', 8, generator=0)
    with pytest.raises(TypeError, match="opt_func must be a callable params -> optimizer, got 'sgd'"):
        train_digits('running', 8, opt_func='sgd')
    with pytest.raises(TypeError, match='norm must be a str or a callable, got 3'):
        digits_cnn(3)


# ---------------------------------------------------------------- the learner's instrumented layer

def test_instrumented_layer_stores_post_equal_pre_plus_eps():
    "The learner's recording: a stored reference changed in place by vars.add_(eps); a clone fixes it."
    torch.manual_seed(0)
    for eps in (1e-5, 1e-3):
        m = InstrumentedRunningBatchNorm(3, eps=eps)
        fixed = InstrumentedRunningBatchNorm(3, eps=eps, clone=True)
        for t in range(30):
            x = torch.randn(8, 3, 4, 4) * 0.7 + 0.2
            m(x); fixed(x)
        gap = torch.stack(m.post_vars) - torch.stack(m.pre_vars)
        assert (gap - eps).abs().max() < 1e-6
        torch.testing.assert_close(torch.stack(m.post_means), torch.stack(m.pre_means))
        fixed_gap = torch.stack(fixed.post_vars) - torch.stack(fixed.pre_vars)
        assert fixed_gap.abs().max() < 1e-6 and all(not v.requires_grad for v in fixed.post_vars)
        # the course's layer without recording gives the same outputs
        course = CourseRunningBatchNorm(3, eps=eps)
        torch.testing.assert_close(course(x), InstrumentedRunningBatchNorm(3, eps=eps)(x))


# ---------------------------------------------------------------- the exercises

def test_exercises_accept_the_right_answers_and_refuse_wrong_ones():
    from lossnotes.course.exercises import check
    assert set(EXERCISES) == {'ratio-of-emas', 'predict-no-cancel', 'running-var-start', 'clamp-stored', 'debias-running-var'}
    assert check('batchnorm/ratio-of-emas', 'b') and not check('batchnorm/ratio-of-emas', 'a')
    assert 'ten times too large' in check('batchnorm/ratio-of-emas', 'a').message
    g = torch.Generator().manual_seed(0)  # the right option, by experiment: two zero-started EMAs, their ratio exact
    loss_sums, tokens = torch.rand(30, generator=g, dtype=torch.float64) * 50, torch.randint(5, 50, (30,), generator=g).double()
    r = running_sums(loss_sums, tokens, 0.1)
    w = torch.tensor([0.1 * 0.9 ** (29 - i) for i in range(30)], dtype=torch.float64)
    assert (r['sums'][-1] / r['count'][-1]).item() == pytest.approx(((w * loss_sums).sum() / (w * tokens).sum()).item(), rel=1e-12)
    # 2: only sums divided by dbias, 3 steps at batch size 2: measured on the course's buffers
    d = debias_stream(0.1, 2, steps=3)
    factor = ((d['sums'] / d['dbias'] / d['count']) / (d['sums'] / d['count']))[-1].item()
    assert factor == pytest.approx(1 / (1 - 0.9 ** 3), rel=1e-12)
    assert check('batchnorm/predict-no-cancel', factor) and not check('batchnorm/predict-no-cancel', 1.0)
    assert 'dbias' in check('batchnorm/predict-no-cancel', 1 - 0.9 ** 3).hint
    assert str(round(factor, 2)) not in check('batchnorm/predict-no-cancel', 1.0).message
    # 3: nn.BatchNorm2d itself as the oracle
    bn = nn.BatchNorm2d(1, momentum=0.1).double()
    a = math.sqrt(0.09 / 2)  # two items +-a: unbiased variance 0.09
    for _ in range(5): bn(torch.tensor([a, -a], dtype=torch.float64).view(2, 1, 1, 1))
    var5 = bn.running_var.item()
    assert var5 == pytest.approx(0.9 ** 5 + (1 - 0.9 ** 5) * 0.09, rel=1e-12)
    assert check('batchnorm/running-var-start', var5) and not check('batchnorm/running-var-start', 0.09)
    assert 'starts at 1' in check('batchnorm/running-var-start', (1 - 0.9 ** 5) * 0.09).hint
    # 4: the learner's layer, run: the clamp and eps both reach the stored post tensor
    layer = InstrumentedRunningBatchNorm(1)
    layer(torch.tensor([0.95, 1.05]).view(2, 1, 1, 1))
    gap = (layer.post_vars[0] - layer.pre_vars[0]).item()
    assert gap == pytest.approx(0.01 + 1e-5 - 0.0025, rel=1e-4)
    assert check('batchnorm/clamp-stored', gap) and not check('batchnorm/clamp-stored', 1e-5)
    assert 'eps the only thing' in check('batchnorm/clamp-stored', 1e-5).hint
    # 5: a correct solution is accepted, and on readings of a real nn.BatchNorm2d it gives numpy's weighted average
    def solution(readings, momentum):
        t = torch.arange(1, len(readings) + 1, dtype=readings.dtype)
        keep = (1 - momentum) ** t
        return (readings - keep) / (1 - keep)
    batch_vars = [0.3, 1.2, 0.7, 2.0, 0.5, 0.9]
    bn, readings = nn.BatchNorm2d(1, momentum=0.2).double(), []
    for v in batch_vars:
        a = math.sqrt(v / 2); bn(torch.tensor([a, -a], dtype=torch.float64).view(2, 1, 1, 1)); readings.append(bn.running_var.item())
    wts = [0.2 * 0.8 ** (len(batch_vars) - 1 - i) for i in range(len(batch_vars))]
    assert solution(torch.tensor(readings, dtype=torch.float64), 0.2)[-1].item() == pytest.approx(np.average(batch_vars, weights=wts), rel=1e-12)
    assert check('batchnorm/debias-running-var', solution)
    assert not check('batchnorm/debias-running-var', lambda r, m: r / (1 - (1 - m) ** torch.arange(1, len(r) + 1)))  # the start ignored
    assert not check('batchnorm/ratio-of-emas', ...)  # the learner's stub

def test_exercise_specs_hold_no_plain_answer():
    "Nothing in the lesson's EXERCISES reads as an answer: the choice and the function outputs are sealed."
    spec = EXERCISES['ratio-of-emas']
    assert 'cancels' not in repr(spec) and all(f.startswith('sealed:') for f in spec['feedback'])
    assert EXERCISES['debias-running-var']['expected'].startswith('sealed:')
    assert 'reference' not in EXERCISES['debias-running-var']
    for name in ('predict-no-cancel', 'running-var-start', 'clamp-stored'):  # sealed values, no recomputing callable
        assert EXERCISES[name]['answer'].startswith('sealed:') and 'factors' not in EXERCISES[name]
    import lossnotes.lessons.batchnorm as lesson
    assert not {'_no_cancel_factor', '_running_var_after', '_stored_gap'} & set(dir(lesson))


# ---------------------------------------------------------------- the live figure

def test_debias_stream_and_ratio():
    d = debias_stream(0.1, 2, steps=30)
    assert d['mom1'] == pytest.approx(0.1)
    torch.testing.assert_close(d['count'] / d['dbias'], torch.full((30,), 128.0, dtype=torch.float64))
    assert d['dbias'][4].item() == pytest.approx(1 - 0.9 ** 5, rel=1e-12)
    assert ratio_change(d) < 1e-14
    assert d['images'].shape == (30, 2, 1, 8, 8)
    with pytest.raises(ValueError, match=r'steps must be in \[1, inf\), got 0'):
        debias_stream(0.1, 2, steps=0)


@pytest.mark.parametrize('mom,bs', [(0.1, 2), (0.3, 8), (0.01, 1)])
def test_debias_stream_means_are_batchnorm2ds(mom, bs):
    "The zero-started EMA of batch means is nn.BatchNorm2d's running_mean; the plain average is momentum=None."
    d = debias_stream(mom, bs, steps=25)
    bn, plain = nn.BatchNorm2d(1, momentum=mom).double(), nn.BatchNorm2d(1, momentum=None).double()
    got = []
    for xb in d['images']:
        bn(xb); plain(xb)
        got.append([bn.running_mean.item(), plain.running_mean.item()])
    got = torch.tensor(got, dtype=torch.float64)
    torch.testing.assert_close(got[:, 0], d['ema'], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got[:, 1], d['cumulative'], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(d['ema_dbias'], 1 - (1 - mom) ** torch.arange(1, 26, dtype=torch.float64))
    torch.testing.assert_close(d['batch_mean'], d['images'].flatten(1).mean(1))
    if d['mom1'] == pytest.approx(mom):  # batch size 1 or 2: the course's ratio has the debiased EMA's weights
        torch.testing.assert_close(d['sums'] / d['count'], d['ema'] / d['ema_dbias'], rtol=1e-12, atol=0)


def test_plot_debias_lines_colours_and_labels():
    d = debias_stream(0.3, 8)
    fig = new_figure()
    ax, ax_mean = fig.subplots(1, 2)
    assert plot_debias(d, ax, ax_mean) is ax
    assert [line.get_color() for line in ax.get_lines()] == [EMA, DEBIASED]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), 1.0, rtol=1e-12)  # count / dbias / n
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), d['dbias'].numpy(), rtol=1e-12)  # count / n = dbias
    assert ax.get_ylabel() and ax_mean.get_ylabel() and ax.get_xlabel() == ax_mean.get_xlabel() == 'step'
    lines = {line.get_label(): line for line in ax_mean.get_lines()}
    # one colour per concept across the course: orange a zero-started average left alone, blue a corrected one
    assert lines['batch mean'].get_color() == RAW and lines['EMA of batch means from 0 (BatchNorm2d)'].get_color() == EMA
    assert lines['that EMA / its dbias'].get_color() == lines['plain average (momentum=None)'].get_color() == DEBIASED
    np.testing.assert_allclose(lines['EMA of batch means from 0 (BatchNorm2d)'].get_ydata(), d['ema'].numpy())
    np.testing.assert_allclose(lines['that EMA / its dbias'].get_ydata(), (d['ema'] / d['ema_dbias']).numpy())
    assert lines['course: sums / count, no debias'].get_color() == DEBIASED
    assert plot_debias(d).get_lines()  # ax=None makes its own figure


def test_explorer_parts_readout_matches_library():
    draw, controls = explorer_parts()
    assert list(controls) == ['mom', 'batch_size'] and draw is draw_debias
    assert controls['batch_size'].options[0] == 1  # batch size 1 is offered: no division by zero
    for mom in controls['mom'].options:
        for bs in controls['batch_size'].options:
            fig = new_figure()
            lines = dict(line.split(': ') for line in draw(fig, mom=mom, batch_size=bs).splitlines())
            d = debias_stream(mom, bs)
            assert float(lines['mom1']) == pytest.approx(effective_momentum(mom, bs), abs=5e-5)
            assert float(lines['dbias after 5 steps']) == pytest.approx(d['dbias'][4].item(), abs=5e-5)
            assert float(lines['sums/count after 5 steps']) == pytest.approx((d['sums'][4] / d['count'][4]).item(), abs=5e-5)
            assert float(lines['EMA of batch means from 0 after 5 steps']) == pytest.approx(d['ema'][4].item(), abs=5e-5)
            assert float(lines['ratio change']) < 1e-14
            assert len(fig.axes) == 2 and all(a.get_ylabel() for a in fig.axes)


def test_explorer_running_means_axis_is_matplotlibs_over_every_slider_stop():
    "The fixed y limits of the running means are those matplotlib picks for every slider stop drawn on one axes."
    draw, controls = explorer_parts()
    ax_all = new_figure().subplots()
    for mom in controls['mom'].options:
        for bs in controls['batch_size'].options:
            plot_debias(debias_stream(mom, bs), new_figure().subplots(), ax_all)
    expected = ax_all.get_ylim()  # autoscaled: all the data plus 5% margins
    for mom, bs in ((0.1, 2), (0.9, 512)):  # the teaching default, and the stop matplotlib alone would zoom in most
        fig = new_figure()
        draw(fig, mom=mom, batch_size=bs)
        assert fig.axes[1].get_ylim() == pytest.approx(expected, rel=1e-12)


def test_explorer_moves_in_place_with_the_full_readout():
    "Both sliders update the curves and the title in place, the limits still; the readout is a full drawing's."
    draw, controls = explorer_parts()
    moves = [dict(mom=m) for m in controls['mom'].options] + [dict(batch_size=b) for b in controls['batch_size'].options]
    bd.assert_in_place_with_still_limits(draw, controls, moves)


# At the teaching defaults, tests/test_plotting.py::test_every_lesson_explorer_draws_at_every_control_value sweeps
# this explorer with every fast frame compared to a full drawing; a sweep here would repeat it frame for frame.


# ---------------------------------------------------------------- help() and the two re-typings of the course

@pytest.mark.parametrize('fn', [RunningBatchNorm, effective_momentum, merge_stats])
def test_help_explains_every_parameter(fn):
    "Every parameter of the signature is named in the numpy-style docstring, which also has an example."
    import inspect
    doc = fn.__doc__
    assert 'Parameters\n    ----------' in doc and 'Examples\n    --------' in doc and '>>>' in doc
    section = doc.split('Parameters')[1].split('Returns' if 'Returns' in doc else 'Attributes')[0]
    for name in inspect.signature(fn).parameters:
        assert name in section, f'{fn.__name__}: {name} is not explained'
    if fn is RunningBatchNorm:
        assert 'the weight of the *new* batch' in doc and "decay is ``1 - momentum``" in doc  # the momentum convention


def test_reset_parameters():
    m = RunningBatchNorm(3)
    with torch.no_grad(): m.weight.mul_(3); m.bias.add_(2)
    m(torch.randn(4, 3, 2))
    m.reset_parameters()
    fresh = RunningBatchNorm(3)
    for (k, v), (k2, v2) in zip(m.state_dict().items(), fresh.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k


def test_the_lessons_course_layer_is_the_tests_course_layer():
    "The lesson re-types the course's class too: both copies give the same outputs and buffers."
    from lossnotes.lessons.batchnorm import CourseRunningBatchNorm as LessonCourse
    torch.manual_seed(0)
    a, b = CourseRunningBatchNorm(3).double(), LessonCourse(3).double()
    for t in range(105):
        x = torch.randn(3, 3, 2, 2, dtype=torch.float64) + 0.01 * t
        assert torch.equal(a(x), b(x))
    for k, v in a.state_dict().items(): assert torch.equal(v, b.state_dict()[k]), k


# ---------------------------------------------------------------- drop-in manners: DDP, eval identity, momentum, convert

def test_buffers_are_updated_in_place_and_ddp_broadcasts_them(tmp_path):
    "Training steps under DDP keep the layer's buffer tensors (identity and storage), and DDP's broadcast list holds them."
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    own = not dist.is_initialized()  # another test of the session may have left a one-process group
    if own: dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    assert dist.get_world_size() == 1
    try:
        model = nn.Sequential(nn.Conv2d(2, 3, 3), RunningBatchNorm(3))
        layer = model[1]
        before = {k: (b, b.data_ptr()) for k, b in layer.named_buffers()}
        ddp = DDP(model)
        for t in range(3):
            ddp(torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(t))).square().sum().backward()
        assert int(layer.num_batches_tracked) == 3 and layer.running_var.ne(1).all()
        for k, b in layer.named_buffers(): assert b is before[k][0] and b.data_ptr() == before[k][1], k
        tracked = {id(b) for b in ddp.modules_buffers}  # what DDP broadcasts from rank 0 at each forward
        assert all(id(b) in tracked for b in layer.buffers())
    finally:
        ddp = model = layer = None  # the reducer goes first, while its group lives
        let_gloo_workers_finish()
        if own: dist.destroy_process_group()


def test_ddp_collects_buffers_afresh_before_every_broadcast(tmp_path):
    """Not a reason for in-place updates: torch's DDP (_sync_buffers -> _assign_modules_buffers) re-reads the module's
    buffers before each broadcast, so a buffer *replaced* by the previous forward is the one it broadcasts."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    class Replacing(nn.Module):
        def __init__(self):
            super().__init__(); self.lin = nn.Linear(2, 2); self.register_buffer('b', torch.zeros(1))
        def forward(self, x):
            self.b = self.b + 1  # a new tensor each forward, never in place
            return self.lin(x)
    own = not dist.is_initialized()
    if own: dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    try:
        model = Replacing(); ddp = DDP(model)
        first = model.b
        for _ in range(3):
            before = model.b  # the tensor the coming forward's broadcast must use
            ddp(torch.randn(2, 2)).sum().backward()
            assert ddp.modules_buffers[0] is before and before is not model.b
        assert ddp.modules_buffers[0] is not first and float(model.b) == 3
    finally:
        ddp = model = None  # the reducer goes first, while its group lives
        let_gloo_workers_finish()
        if own: dist.destroy_process_group()


def test_activation_checkpointing_is_refused_not_wrong():
    """torch.utils.checkpoint recomputes the forward inside backward, on statistics that already hold the batch: a
    RuntimeError with either use_reentrant; nn.BatchNorm2d (the oracle) gives eager's gradient but counts twice."""
    from torch.utils.checkpoint import checkpoint
    g = torch.Generator().manual_seed(0)
    warm = torch.randn(8, 3, 4, 4, generator=g) * 2 + 1
    x = (torch.randn(4, 3, 4, 4, generator=g) * 3).requires_grad_()
    for reentrant in (False, True):
        layer = RunningBatchNorm(3); layer(warm)
        with pytest.raises(RuntimeError, match='inside a backward pass, as activation checkpointing'):
            checkpoint(layer, x, use_reentrant=reentrant).pow(3).sum().backward()
        assert int(layer.num_batches_tracked) == 2  # the first pass merged once, the recompute nothing
        bn, ref = nn.BatchNorm2d(3), nn.BatchNorm2d(3)
        want, = torch.autograd.grad(ref(x).pow(3).sum(), x)
        x.grad = None
        checkpoint(bn, x, use_reentrant=reentrant).pow(3).sum().backward()  # reentrant: .backward(), not .grad()
        torch.testing.assert_close(x.grad, want)
        assert int(bn.num_batches_tracked) == 2 and int(ref.num_batches_tracked) == 1
    layer = RunningBatchNorm(3); layer(warm)  # outside the checkpointed function: autograd through plain operations
    state = (layer.running_mean.clone(), layer.running_var.clone(), layer.count.item(), int(layer.num_samples_tracked))
    w, b = layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_()
    lin = nn.Linear(4, 4)
    seg = lambda t: torch.tanh(lin(t))
    y = layer(checkpoint(seg, x, use_reentrant=False))
    want, = torch.autograd.grad(_plain_step(seg(x), state, w, b)[0].pow(3).sum(), x)
    got, = torch.autograd.grad(y.pow(3).sum(), x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_first_step_is_batchnorm2d_unless_the_clamp_acts():
    "First step: nn.BatchNorm2d's output, except with fewer than 20 samples and a batch variance under 0.01."
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 4, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(RunningBatchNorm(3).double()(x), nn.BatchNorm2d(3).double()(x))
    small = x * 0.05  # batch variance ~0.0025 < 0.01: the variance used is 0.01
    ours, ref = RunningBatchNorm(3).double()(small), nn.BatchNorm2d(3).double()(small)
    assert (ours - ref).abs().max() > 1
    mu, var = small.mean((0, 2, 3), keepdim=True), small.var((0, 2, 3), correction=0, keepdim=True)
    torch.testing.assert_close(ours, (small - mu) / torch.sqrt(var.clamp_min(0.01) + 1e-5))
    assert (ours.abs().max() / ref.abs().max()) < 0.6  # the gain is capped at 1/sqrt(0.01) = 10
    y = RunningBatchNorm(1).double()(torch.tensor([[0.0], [1e-4]], dtype=torch.float64))
    assert y.abs().max().item() == pytest.approx(0.5e-4 / math.sqrt(0.01 + 1e-5), rel=1e-9)  # eps alone: 316x


def test_positional_arguments_follow_batchnorm2d():
    "num_features, eps, momentum, affine, track_running_stats, device, dtype by position, as nn.BatchNorm2d; bias by name."
    import inspect
    ours, ref = inspect.signature(RunningBatchNorm).parameters, inspect.signature(nn.BatchNorm2d).parameters
    assert list(ours)[:7] == list(ref)[:7]
    assert [ours[k].kind for k in list(ours)[:7]] == [ref[k].kind for k in list(ref)[:7]]
    assert all(ours[k].kind is inspect.Parameter.KEYWORD_ONLY for k in ('bias', 'mom')) and ref['bias'].kind is inspect.Parameter.KEYWORD_ONLY
    m64, bn64 = RunningBatchNorm(3, 1e-5, 0.1, True, True, 'cpu', torch.float64), nn.BatchNorm2d(3, 1e-5, 0.1, True, True, 'cpu', torch.float64)
    assert [(b.dtype, b.device) for b in m64.parameters()] == [(b.dtype, b.device) for b in bn64.parameters()] == [(torch.float64, torch.device('cpu'))] * 2
    assert m64.running_mean.dtype == m64.running_var.dtype == m64.count.dtype == torch.float64
    m, bn = RunningBatchNorm(3, 1e-3, 0.3, False, True), nn.BatchNorm2d(3, 1e-3, 0.3, False, True)
    assert (m.eps, m.momentum, m.affine, m.weight) == (bn.eps, bn.momentum, bn.affine, bn.weight) == (1e-3, 0.3, False, None)
    x = torch.randn(4, 3, 5, 5) * 2 + 1
    torch.testing.assert_close(m(x), bn(x), rtol=1e-5, atol=1e-5)


def test_bias_false_is_batchnorm2ds():
    "bias=False: a weight and no bias, as nn.BatchNorm2d(bias=False); outputs, gradients, state_dict, reset."
    x = (torch.randn(4, 3, 5, 5, dtype=torch.float64) * 2 + 1).requires_grad_()
    ours, ref = RunningBatchNorm(3, bias=False).double(), nn.BatchNorm2d(3, bias=False).double()
    with torch.no_grad(): ours.weight.copy_(torch.tensor([0.5, 2., 3.])); ref.weight.copy_(ours.weight)
    assert ours.bias is None and [k for k, _ in ours.named_parameters()] == ['weight']
    assert repr(ours) == 'RunningBatchNorm(3, eps=1e-05, momentum=0.1, affine=True, bias=False)'
    up = torch.randn_like(x)
    ga = torch.autograd.grad(ours(x), [x, ours.weight], up)
    gb = torch.autograd.grad(ref(x), [x, ref.weight], up)
    for a, b in zip(ga, gb): torch.testing.assert_close(a, b)
    assert set(ours.state_dict()) == {'weight', 'running_mean', 'running_var', 'count', 'num_samples_tracked',
                                      'num_batches_tracked'}
    fresh = RunningBatchNorm(3, bias=False).double()
    fresh.load_state_dict(ours.state_dict())
    assert torch.equal(fresh.weight, ours.weight)
    fresh.reset_parameters()
    assert torch.equal(fresh.weight, torch.ones(3, dtype=torch.float64)) and fresh.bias is None
    with pytest.raises(ValueError, match="state_dict has unexpected keys \\['bias'\\]"):
        fresh.load_state_dict(RunningBatchNorm(3).double().state_dict())


def test_convert_bias_false_sync_and_lazy():
    "convert handles bias=False, nn.SyncBatchNorm and an initialised lazy layer; an uninitialised one warns."
    torch.manual_seed(0)
    orig = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3, bias=False), nn.ReLU())
    for _ in range(3): orig(torch.randn(4, 1, 6, 6))
    conv = RunningBatchNorm.convert(copy.deepcopy(orig))
    assert conv[1].bias is None and conv[1].weight is not None
    conv[1].load_state_dict(conv[1].state_dict()); conv[1].reset_parameters()  # a working layer
    conv = RunningBatchNorm.convert(copy.deepcopy(orig))
    x = torch.randn(5, 1, 6, 6)
    torch.testing.assert_close(conv.eval()(x), orig.eval()(x))
    sync = nn.SyncBatchNorm(3, momentum=0.3)
    sync.load_state_dict(orig[1].state_dict() | {'bias': torch.zeros(3)})
    new = RunningBatchNorm.convert(nn.Sequential(sync))[0]
    assert isinstance(new, RunningBatchNorm) and new.momentum == 0.3 and new.weight is sync.weight
    y = torch.randn(4, 3, 4, 4)
    ref = nn.BatchNorm2d(3).eval(); ref.load_state_dict(sync.state_dict())
    torch.testing.assert_close(new.eval()(y), ref(y))
    lazy = nn.Sequential(nn.LazyBatchNorm2d())
    with pytest.warns(UserWarning, match='left LazyBatchNorm2d.* unchanged: a lazy batch norm that has not seen'):
        out = RunningBatchNorm.convert(lazy)
    assert isinstance(out[0], nn.LazyBatchNorm2d)
    lazy(torch.randn(2, 3, 4, 4))  # initialised: torch turns it into an nn.BatchNorm2d
    assert isinstance(RunningBatchNorm.convert(lazy)[0], RunningBatchNorm)


def test_init_help_points_to_the_arguments():
    "help(RunningBatchNorm.__init__) is the layer's own text, not nn.Module's."
    import inspect
    assert 'help(RunningBatchNorm)' in inspect.getdoc(RunningBatchNorm.__init__)
    for name in ('track_running_stats', 'bias', 'device', 'dtype', 'mom'):
        assert name in RunningBatchNorm.__doc__.split('Attributes')[0]


def test_fresh_layer_in_eval_mode_is_the_identity_like_batchnorm2d():
    x = torch.randn(4, 3, 5, 5) * 7 + 3
    for ours, ref in ((RunningBatchNorm(3), nn.BatchNorm2d(3)), (RunningBatchNorm(3, affine=False), nn.BatchNorm2d(3, affine=False))):
        ours.eval(); ref.eval()
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ours(x), x, rtol=1e-5, atol=1e-5)  # x / sqrt(1 + eps)
    m = RunningBatchNorm(3)
    m(torch.randn(2, 3, 4)); m.reset_running_stats(); m.eval()
    torch.testing.assert_close(m(x), nn.BatchNorm2d(3).eval()(x))


def test_first_batch_replaces_the_initial_statistics_exactly():
    "share is exactly 1 at the first step, so running_var's start at 1 leaves no trace."
    x = torch.randn(4, 3, 6, dtype=torch.float64) * 0.01 + 5
    m = RunningBatchNorm(3).double()
    m(x)
    torch.testing.assert_close(m.running_var, x.var((0, 2), correction=0), rtol=1e-12, atol=0)
    torch.testing.assert_close(m.running_mean, x.mean((0, 2)), rtol=1e-12, atol=0)


def test_momentum_is_torchs_name_and_mom_the_courses():
    x = [torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(t)) for t in range(4)]
    a, b, c = RunningBatchNorm(4, momentum=0.3), RunningBatchNorm(4, mom=0.3), RunningBatchNorm(4, 1e-5, 0.3)
    for xb in x:
        for m in (a, b, c): m(xb)
    for k, v in a.state_dict().items():
        assert torch.equal(b.state_dict()[k], v) and torch.equal(c.state_dict()[k], v), k
    assert a.momentum == a.mom == 0.3 and RunningBatchNorm(4).momentum == nn.BatchNorm2d(4).momentum
    assert type(RunningBatchNorm(4).momentum) is float  # the default is a plain 0.1 once built
    with pytest.raises(ValueError, match='give momentum or its other name mom, not both: got momentum=0.1, mom=0.5'):
        RunningBatchNorm(4, momentum=0.1, mom=0.5)  # an explicit 0.1 is not the default
    assert RunningBatchNorm(4, 1e-3).eps == 1e-3  # the second positional argument is eps, as in nn.BatchNorm2d


@pytest.mark.parametrize('sizes', [(2, 5, 1, 3), (4, 4, 4)])
def test_momentum_none_weighs_every_item_alike(sizes):
    "momentum=None: the running statistics are the plain mean and variance of every item seen (numpy the oracle)."
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(bs, 2, 3, dtype=torch.float64, generator=g) * (1 + i) + i for i, bs in enumerate(sizes)]
    m = RunningBatchNorm(2, momentum=None).double()
    for x in xs: m(x)
    items = torch.cat([x.transpose(0, 1).reshape(2, -1) for x in xs], 1).numpy()
    np.testing.assert_allclose(m.running_mean.numpy(), items.mean(1), rtol=1e-12)
    np.testing.assert_allclose(m.running_var.numpy(), items.var(1), rtol=1e-12)


def test_affine_false_first_step_is_batchnorm_without_affine():
    x = (torch.randn(4, 3, 5, 5, dtype=torch.float64) * 2 + 1).requires_grad_()
    ours, ref = RunningBatchNorm(3, affine=False).double(), nn.BatchNorm2d(3, affine=False).double()
    assert ours.weight is None and ours.bias is None and list(ours.parameters()) == []
    up = torch.randn_like(x)
    y1, y2 = ours(x), ref(x)
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(torch.autograd.grad(y1, x, up)[0], torch.autograd.grad(y2, x, up)[0])
    ours.load_state_dict(ours.state_dict())  # no weight or bias expected


def _net():
    return nn.Sequential(nn.Conv3d(1, 2, 1), nn.BatchNorm3d(2, momentum=None), nn.Flatten(2), nn.BatchNorm1d(2, eps=1e-3),
                         nn.Unflatten(2, (3, 4)), nn.BatchNorm2d(2, momentum=0.3, affine=False), nn.Flatten(),
                         nn.Linear(24, 4), nn.BatchNorm1d(4))


def test_convert_replaces_every_batchnorm_and_matches_the_original():
    torch.manual_seed(0)
    orig = _net()
    g = torch.Generator().manual_seed(1)
    x = lambda bs: torch.randn(bs, 1, 1, 3, 4, generator=g) * 2 + 1
    for _ in range(3): orig(x(6))  # trained statistics
    twin = copy.deepcopy(orig)
    params = [twin[i].weight for i in (1, 3, 8)]
    conv = RunningBatchNorm.convert(twin)
    assert conv is twin
    kinds = [type(m).__name__ for m in conv]
    assert kinds.count('RunningBatchNorm') == 4 and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in conv)
    for i, ref in zip((1, 3, 5, 8), (orig[1], orig[3], orig[5], orig[8])):
        new = conv[i]
        assert (new.num_features, new.eps, new.momentum, new.affine) == (ref.num_features, ref.eps, ref.momentum, ref.affine)
        for k in ('running_mean', 'running_var', 'num_batches_tracked'): assert torch.equal(getattr(new, k), getattr(ref, k))
    assert [conv[i].weight for i in (1, 3, 8)] == params and all(a is b for a, b in zip([conv[i].weight for i in (1, 3, 8)], params))
    xe = x(5)
    conv.eval(); orig.eval()
    torch.testing.assert_close(conv(xe), orig(xe), rtol=1e-5, atol=1e-6)  # evaluation: the very same statistics
    conv.train(); orig.train()
    xt = x(5).requires_grad_()
    yc, yo = conv(xt), orig(xt)  # first training step: both normalise with the batch's own statistics
    torch.testing.assert_close(yc, yo, rtol=1e-5, atol=1e-5)
    gc = torch.autograd.grad(yc.square().sum(), [xt, conv[0].weight])
    go = torch.autograd.grad(yo.square().sum(), [xt, orig[0].weight])
    for a, b in zip(gc, go): torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    single = RunningBatchNorm.convert(nn.BatchNorm2d(5))
    assert isinstance(single, RunningBatchNorm) and single.num_samples_tracked.item() == 0


def test_compiled_fullgraph_gradients_and_buffers_match_eager():
    "25 steps at batch size 2 (the clamp holds for the first 9): fullgraph=True, outputs, gradients, buffers."
    torch._dynamo.reset()
    eager, twin = RunningBatchNorm(3), RunningBatchNorm(3)
    compiled = torch.compile(twin, fullgraph=True, backend='aot_eager')
    g = torch.Generator().manual_seed(0)
    for t in range(25):
        x = (torch.randn(2, 3, 4, 4, generator=g) * 0.05 + 1).requires_grad_()  # small variance: the clamp acts
        ye, yc = eager(x), compiled(x)
        ge, gc = (torch.autograd.grad(y.pow(3).sum(), [x, m.weight]) for y, m in ((ye, eager), (yc, twin)))
        torch.testing.assert_close(yc, ye, rtol=1e-5, atol=1e-5)
        for a, b in zip(gc, ge): torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for k, v in eager.state_dict().items(): torch.testing.assert_close(twin.state_dict()[k], v, rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()


def _plain_step(x, state, w, b, mom=0.1, eps=1e-5):
    "One training step in plain differentiable operations (autograd the oracle); returns y and the next state."
    mean0, var0, count0, seen0 = state
    bv, bm = torch.var_mean(x, (0, *range(2, x.ndim)), correction=0)
    n, bs = x.numel() // x.shape[1], x.shape[0]
    m1 = effective_momentum(mom, bs)
    count = count0 * (1 - m1) + m1 * n
    f = m1 * n / count
    d = bm - mean0
    mean, var = mean0 + f * d, (1 - f) * var0 + f * bv + f * (1 - f) * d * d
    used = var.clamp_min(0.01) if seen0 + bs < 20 else var
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.view(shape)) * (w * torch.rsqrt(used + eps)).view(shape) + b.view(shape)
    return y, (mean.detach(), var.detach(), count, seen0 + bs)


def test_a_layer_called_twice_before_backward_has_autograds_gradient():
    "The second call reads the buffers the first wrote in place; the first call's backward still uses its own values."
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(3, 2, 4, dtype=torch.float64, generator=g) * 2 + 1).requires_grad_()
    layer = RunningBatchNorm(2).double()
    with torch.no_grad(): layer.weight.copy_(torch.tensor([0.5, 2.0])); layer.bias.copy_(torch.tensor([0.1, -0.3]))
    for _ in range(8): layer(torch.randn(3, 2, 4, dtype=torch.float64, generator=g))  # past the clamp
    state = (layer.running_mean.clone(), layer.running_var.clone(), layer.count.item(), int(layer.num_samples_tracked))
    w, b = layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_()
    y1, state = _plain_step(x, state, w, b)
    y2, state = _plain_step(x * 3 + 1, state, w, b)
    want = torch.autograd.grad((y1.square() + y2).sum(), [x, w, b])
    got = torch.autograd.grad((layer(x).square() + layer(x * 3 + 1)).sum(), [x, layer.weight, layer.bias])
    for a, r in zip(got, want): torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(layer.running_var, state[1], rtol=1e-12, atol=0)


def test_training_step_under_inference_mode_leaves_ordinary_buffers():
    m = RunningBatchNorm(3)
    with torch.inference_mode(): m(torch.randn(2, 3, 4))
    assert not any(b.is_inference() for b in m.buffers())
    x = torch.randn(2, 3, 4, requires_grad=True)
    m(x).sum().backward()  # buffers written in place after inference mode: no "inference tensor" error
    assert int(m.num_batches_tracked) == 2 and x.grad is not None
    m.load_state_dict(RunningBatchNorm(3).state_dict()); m.reset_running_stats()
    class Replacing(nn.Module):  # the control: a buffer replaced under inference mode is an inference tensor
        def __init__(self): super().__init__(); self.register_buffer('b', torch.zeros(3))
        def forward(self, x): self.b = self.b + x.mean(); return x
    r = Replacing()
    with torch.inference_mode(): r(torch.randn(2, 3))
    assert r.b.is_inference()
    with pytest.raises(RuntimeError, match='Inplace update to inference tensor outside InferenceMode'):
        r.load_state_dict({'b': torch.zeros(3)})


def test_batchnorm2d_checkpoint_loads_through_convert():
    "An nn.BatchNorm2d checkpoint lacks count and num_samples_tracked: refused by the layer, loaded by the model, then convert."
    torch.manual_seed(0)
    make = lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3))
    trained = make()
    for _ in range(3): trained(torch.randn(4, 1, 6, 6))
    ckpt = trained.state_dict()
    with pytest.raises(ValueError, match=r"state_dict is missing \['count', 'num_samples_tracked'\]"):
        RunningBatchNorm(3).load_state_dict({k[2:]: v for k, v in ckpt.items() if k.startswith('1.')})
    model = make(); model.load_state_dict(ckpt)
    model = RunningBatchNorm.convert(model).eval()
    x = torch.randn(5, 1, 6, 6)
    torch.testing.assert_close(model(x), trained.eval()(x))


def test_convert_keeps_set_statistics_without_tracked_batches():
    "Statistics set by hand or loaded without num_batches_tracked (it stays 0): evaluation still gives the original's outputs."
    bn = nn.BatchNorm2d(3)
    bn.running_var.copy_(torch.tensor([0.001, 0.004, 1.0])); bn.running_mean.copy_(torch.tensor([1., 2., 3.])); bn.eval()
    assert int(bn.num_batches_tracked) == 0
    x = torch.randn(2, 3, 4, 4) * 0.03 + torch.tensor([1., 2., 3.]).view(1, 3, 1, 1)
    ref = bn(x)
    new = RunningBatchNorm.convert(bn)
    torch.testing.assert_close(new(x), ref)  # the clamp (variance >= 0.01) would change channels 0 and 1 by up to 1.4
    assert int(new.num_samples_tracked) == 20
    loaded = nn.BatchNorm2d(3)  # a checkpoint without num_batches_tracked, loaded with strict=False
    loaded.load_state_dict({k: v for k, v in bn.state_dict().items() if k != 'num_batches_tracked'}, strict=False)
    torch.testing.assert_close(RunningBatchNorm.convert(loaded.eval())(x), ref)
    fresh = RunningBatchNorm.convert(nn.BatchNorm2d(3))  # a new layer's statistics: still a new layer, clamp and all
    assert int(fresh.num_samples_tracked) == 0 and int(fresh.num_batches_tracked) == 0


def test_compiled_step_under_inference_mode_then_reset_and_load():
    "Compiled, count and num_samples_tracked made under inference mode are inference tensors: reset and load still work."
    torch._dynamo.reset()
    m = RunningBatchNorm(3)
    compiled = torch.compile(m, fullgraph=True, backend='eager')
    compiled(torch.randn(8, 3, 4, 4))
    with torch.inference_mode(): compiled(torch.randn(8, 3, 4, 4))
    assert m.count.is_inference()  # the case the methods handle
    fresh = RunningBatchNorm(3).state_dict()
    m.load_state_dict(fresh)
    assert not any(b.is_inference() for b in m.buffers())
    for k, v in m.state_dict().items(): assert torch.equal(v, fresh[k]), k
    with torch.inference_mode(): compiled(torch.randn(8, 3, 4, 4))
    m.reset_running_stats()
    assert not any(b.is_inference() for b in m.buffers())
    for k, v in m.state_dict().items(): assert torch.equal(v, fresh[k]), k
    x = torch.randn(8, 3, 4, 4)
    torch.testing.assert_close(compiled(x), RunningBatchNorm(3)(x))  # trains on from a new layer's state
    torch._dynamo.reset()
