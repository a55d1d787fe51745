"""lossnotes.losscheck: soft accuracy, check_loss's flags and passes, the weight-space slice, plots and the explorer."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from lossnotes.gradtricks import irls_loss
from lossnotes.losscheck import CHECKS, Check, LossReport, check_loss, mse_on_probabilities, soft_accuracy
from lossnotes.lessons.losscheck import draw_explorer, explorer_parts
from lossnotes.lessons.losscheck import (EXERCISES, accuracy, digits_slice, digits_split,
                                        fit_bias_only, overfit_one_batch, plot_slice, plot_temperature_sweep, plot_training,
                                        slice_curves, slice_point, sweep_losses, train_logreg)
from lossnotes.lessons.losscheck import _one_minus_soft, random_batches
from lossnotes.lessons.plotting import new_figure
import browser_driver as bd

torch.set_num_threads(1)


def _cls(n=64, c=5, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)


def _reg(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = 1 + torch.rand(n, generator=g)
    return y + 0.1 * torch.randn(n, generator=g), y


# ---------- soft accuracy ----------

def test_soft_accuracy_closed_form():
    z, y = _cls()
    p = F.softmax(z / 0.7, dim=1)[torch.arange(len(y)), y].mean()
    torch.testing.assert_close(soft_accuracy(z, y, 0.7), p, rtol=1e-6, atol=1e-7)
    two = torch.tensor([[0., 1.5], [2., -1.]])
    want = (torch.sigmoid(torch.tensor(1.5 / 0.5)) + torch.sigmoid(torch.tensor(-3. / 0.5))) / 2
    torch.testing.assert_close(soft_accuracy(two, torch.tensor([1, 1]), 0.5), want)


def test_soft_accuracy_gradcheck_float64():
    z = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 3, 2, 1])
    for t in (0.1, 1.0, 5.0):
        assert torch.autograd.gradcheck(lambda z: soft_accuracy(z, y, t), (z,))


def test_soft_accuracy_spatial_shapes():
    z = torch.randn(2, 3, 4, 5)
    y = torch.randint(0, 3, (2, 4, 5))
    want = F.softmax(z, 1).gather(1, y[:, None]).mean()
    torch.testing.assert_close(soft_accuracy(z, y), want)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), c=st.integers(2, 8))
def test_soft_accuracy_tends_to_accuracy(seed, n, c):
    z, y = _cls(n, c, seed)
    gap = float(z.topk(2, dim=1).values.diff(dim=1).abs().min())
    if gap == 0: return  # a tie: the limit is not the argmax accuracy
    torch.testing.assert_close(soft_accuracy(z.double(), y, gap / 40), accuracy(z.double(), y).double(),
                               rtol=0, atol=1e-12)
    s = float(soft_accuracy(z, y, 1.0))
    assert 0.0 <= s <= 1.0


def test_soft_accuracy_bad_input():
    z, y = _cls()
    for t in (0.0, -1.0):
        with pytest.raises(ValueError, match=r'temperature must be in \(0, inf\)'): soft_accuracy(z, y, t)
    with pytest.raises(TypeError, match='temperature must be a real number'): soft_accuracy(z, y, '1')
    with pytest.raises(ValueError, match='do not fit'): soft_accuracy(z, y[:3])
    with pytest.raises(TypeError, match='target must be an integer tensor'): soft_accuracy(z, y.float())
    with pytest.raises(TypeError, match='logits must have a floating-point dtype, got torch.int64'): soft_accuracy(y, y)
    with pytest.raises(ValueError, match='temperature must be finite, got inf'): soft_accuracy(z, y, math.inf)


def test_accuracy_and_mse_on_probabilities():
    z = torch.tensor([[2., 1.], [0., 3.], [1., 0.]])
    y = torch.tensor([0, 0, 1])
    assert float(accuracy(z, y)) == pytest.approx(1 / 3)
    onehot = F.one_hot(y, 2).float()
    want = (F.softmax(z, 1) - onehot).pow(2).sum(1).mean()
    torch.testing.assert_close(mse_on_probabilities(z, y), want)


# ---------- check_loss: what it flags ----------

def test_flags_accuracy_no_gradient():
    z, y = _cls()
    r = check_loss(lambda z, y: 1 - accuracy(z, y), z, y)
    assert not r.ok and not r['informative gradient'].passed
    assert r['minimum at target'].passed and r['finite'].passed
    assert 'no path from the loss to pred' in r['informative gradient'].reason


def test_flags_staircase_with_zero_gradient():
    "A piecewise-constant loss that keeps autograd's graph (gradient exactly 0) is flagged too."
    z, y = _cls()
    def stair(z, y): return (1 - soft_accuracy(z, y, 1.0)).mul(0).add(1 - accuracy(z, y))
    r = check_loss(stair, z, y)
    assert not r['informative gradient'].passed and 'exactly zero' in r['informative gradient'].reason


def test_flags_percentage_loss_with_zero_target():
    p, y = _reg()
    y[3] = 0.0
    r = check_loss(lambda p, y: (1 - p / y).abs().mean(), p, y)
    assert not r.ok and not r['finite'].passed
    assert 'inf' in r['finite'].reason


def test_flags_log_of_softmax_at_extreme_logits():
    z, y = _cls(scale=100.0)
    def nll(z, y): return -torch.log(torch.softmax(z, 1)).gather(1, y[:, None]).mean()
    r = check_loss(nll, z, y)
    assert not r['finite'].passed and not r.ok
    # moderate logits: the example itself is fine, the extreme probes still find the problem
    z, y = _cls(scale=1.0)
    r = check_loss(nll, z, y)
    assert not r['finite'].passed and 'random logits of size' in r['finite'].reason
    assert check_loss(F.cross_entropy, 100 * z, y).ok


def test_sum_reduction_warns_with_the_reason():
    p, y = _reg()
    fn = lambda p, y: F.mse_loss(p, y, reduction='sum')
    r = check_loss(fn, p, y, batch_consistency=True)
    c = r['batch-size consistent']
    assert r.ok and c.passed and c.warning and c.status == 'warn' and r.warnings == [c]
    assert f'{2 * float(fn(p, y)):.4g} = 2 x {float(fn(p, y)):.4g}' in c.reason and 'with SGD the effective learning rate is lr x N' in c.reason
    assert 'usable, with 1 warning' in repr(r) and '! warn' in r._repr_html_()
    r = check_loss(fn, p, y, batch_consistency=False)
    assert r.ok and [c.name for c in r.checks] == list(CHECKS[:3]) and not r.warnings
    z, c = _cls()
    assert check_loss(lambda z, y: F.cross_entropy(z, y, reduction='sum'), z, c)['batch-size consistent'].status == 'warn'
    # neither a mean nor a sum: a failure
    r = check_loss(lambda p, y: F.mse_loss(p, y, reduction='sum') ** 2, p, y)
    assert not r['batch-size consistent'].passed and '(4x)' in r['batch-size consistent'].reason


def test_label_smoothing_has_a_finite_minimum_by_design():
    "The optimum margin with smoothing eps over C classes is log((1 - eps + eps / C) / (eps / C))."
    z, c = _cls(c=5)
    for eps in (0.05, 0.1, 0.3):
        r = check_loss(lambda z, y: F.cross_entropy(z, y, label_smoothing=eps), z, c)
        assert r.ok, r
        reason = r['minimum at target'].reason
        assert 'Finite minimum by design' in reason
        margin = math.log((1 - eps + eps / 5) / (eps / 5))
        assert f'margin of {margin:.3g} logits' in reason, (margin, reason)
    # soft targets given as probabilities: the same finite optimum
    q = torch.full((64, 5), 0.05); q[torch.arange(64), c] = 0.8
    r = check_loss(lambda z, y: F.cross_entropy(z, q[:len(z)].repeat(len(z) // 64, 1)), z, c)
    assert r.ok and f'margin of {math.log(0.8 / 0.05):.3g} logits' in r['minimum at target'].reason


def test_flags_loss_without_minimum_at_target():
    p, y = _reg()
    r = check_loss(lambda p, y: (1 - p / y).mean(), p, y)
    assert not r['minimum at target'].passed
    z, c = _cls()
    r = check_loss(lambda z, y: F.cross_entropy(-z, y), z, c)  # sign error
    assert not r['minimum at target'].passed and not r.ok


def test_flags_sqrt_of_square_nan_gradient_at_target():
    p, y = _reg()
    r = check_loss(lambda p, y: torch.sqrt((1 - p / y) ** 2).mean(), p, y)
    assert not r['finite'].passed and 'nan' in r['finite'].reason and 'prediction = target' in r['finite'].reason


def test_loss_raising_on_double_batch_fails_batch_check():
    p, y = _reg()
    w = torch.ones(len(p))
    r = check_loss(lambda p, y: (w * (p - y) ** 2).mean(), p, y)
    assert not r['batch-size consistent'].passed and 'raised' in r['batch-size consistent'].reason


# ---------- check_loss: what it passes ----------

@pytest.mark.parametrize('fn', [F.mse_loss, F.l1_loss, F.smooth_l1_loss])
def test_passes_regression_losses(fn):
    p, y = _reg()
    r = check_loss(fn, p, y)
    assert r.ok, r


def test_l1_kink_noted_mse_smooth():
    p, y = _reg()
    assert 'kink' in check_loss(F.l1_loss, p, y)['minimum at target'].reason
    assert 'smooth minimum' in check_loss(F.mse_loss, p, y)['minimum at target'].reason


@pytest.mark.parametrize('weighted', [False, True])
def test_passes_cross_entropy(weighted):
    z, y = _cls()
    w = torch.linspace(0.2, 3.0, 5)
    fn = (lambda z, y: F.cross_entropy(z, y, weight=w)) if weighted else F.cross_entropy
    r = check_loss(fn, z, y)
    assert r.ok, r
    assert r.value == pytest.approx(float(fn(z, y)), rel=1e-6)


def test_passes_mse_on_probabilities_and_soft_accuracy():
    z, y = _cls()
    assert check_loss(mse_on_probabilities, z, y).ok
    assert check_loss(lambda z, y: 1 - soft_accuracy(z, y, 0.5), z, y).ok


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 30), c=st.integers(2, 6))
def test_cross_entropy_always_passes(seed, n, c):
    z, y = _cls(n, c, seed)
    assert check_loss(F.cross_entropy, z, y).ok


# ---------- check_loss: hygiene ----------

def test_inputs_and_grad_mode_untouched():
    z, y = _cls()
    z0, y0 = z.clone(), y.clone()
    with torch.no_grad():
        r = check_loss(F.cross_entropy, z, y)
        assert not torch.is_grad_enabled()
    assert r.ok and torch.is_grad_enabled()
    assert torch.equal(z, z0) and torch.equal(y, y0) and not z.requires_grad and z.grad is None
    leaf = z.clone().requires_grad_()
    check_loss(F.cross_entropy, leaf, y)
    assert leaf.grad is None and leaf.requires_grad
    # a loss that modifies its inputs in place cannot reach the caller's tensors
    def rude(p, t): t.mul_(0); return F.mse_loss(p, t)
    p, t = _reg()
    t0 = t.clone()
    check_loss(rude, p, t)
    assert torch.equal(t, t0)


def test_report_table_and_html():
    p, y = _reg()
    r = check_loss(F.mse_loss, p, y)
    text = repr(r)
    assert text.startswith('check_loss(mse_loss) on a regression batch') and 'usable' in text
    for name in CHECKS: assert name in text
    assert text.count('pass') >= 4
    h = r._repr_html_()
    assert '<table>' in h and h.count('<tr>') == 5 and '✓ pass' in h
    bad = check_loss(lambda p, y: (1 - p / y).mean(), p, y, name='ratio')
    assert 'NOT usable' in repr(bad) and '✗ FAIL' in bad._repr_html_() and 'FAIL' in str(bad)
    assert isinstance(bad.checks[0], Check) and isinstance(bad, LossReport)
    assert bad.failed == [c for c in bad.checks if not c.passed]
    with pytest.raises(KeyError, match='no check named'): r['speed']


def test_probes_use_only_the_generator_given():
    z, y = _cls()
    gen = lambda: torch.Generator().manual_seed(3)
    state = torch.get_rng_state()
    assert repr(check_loss(F.cross_entropy, z, y, generator=gen())) == repr(check_loss(F.cross_entropy, z, y, generator=gen()))
    p, t = _reg()
    assert repr(check_loss(F.l1_loss, p, t)) == repr(check_loss(F.l1_loss, p, t, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(torch.get_rng_state(), state)


def test_bad_input():
    p, y = _reg()
    with pytest.raises(ValueError, match=r'pred of shape \(3,\) and target of shape \(4,\) do not broadcast'):
        check_loss(F.mse_loss, torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match='would broadcast pred'):
        check_loss(F.mse_loss, torch.zeros(3, 1), torch.zeros(3))
    with pytest.raises(TypeError, match='loss_fn must return a tensor, got 0.5'):
        check_loss(lambda p, y: 0.5, p, y)
    with pytest.raises(ValueError, match='single number'):
        check_loss(lambda p, y: (p - y) ** 2, p, y)
    with pytest.raises(TypeError, match='loss_fn must be callable'):
        check_loss('mse', p, y)
    with pytest.raises(TypeError, match='pred must be a floating-point torch.Tensor'):
        check_loss(F.mse_loss, [1.0], y)
    z, c = _cls()
    with pytest.raises(ValueError, match=r'class indices in \[0, 4\]'):
        check_loss(F.cross_entropy, z, c + 5)
    with pytest.raises(ValueError, match='do not fit'):
        check_loss(F.cross_entropy, z, c[:5])
    with pytest.raises(ValueError, match=r"task must be one of \('classification', 'soft classification', 'binary classification', 'regression'\) or None, got 'ranking'"):
        check_loss(F.cross_entropy, z, c, task='ranking')
    with pytest.raises(ValueError, match='n_probes must be in'):
        check_loss(F.cross_entropy, z, c, n_probes=0)


# ---------- the weight-space slice, training, plots, explorer ----------

def test_slice_staircase_takes_values_k_over_100():
    sl = digits_slice()
    pos = torch.linspace(-2, 2, 201)
    acc = 1 - slice_curves(sl, pos, 1.0)['accuracy'][0]
    k = acc * 100
    torch.testing.assert_close(k, k.round(), rtol=0, atol=1e-4)
    assert len(acc.unique()) > 20


def test_slice_curves_match_direct_evaluation():
    sl = digits_slice()
    pos = torch.tensor([-1.0, 0.0, 0.7])
    c = slice_curves(sl, pos, 0.3)
    for i, t in enumerate(pos.tolist()):
        z = sl.logits(t)
        torch.testing.assert_close(c['cross entropy'][0][i], F.cross_entropy(z, sl.y), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(c['soft accuracy'][0][i], 1 - soft_accuracy(z, sl.y, 0.3), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(c['MSE on probabilities'][0][i], mse_on_probabilities(z, sl.y), rtol=1e-5, atol=1e-6)
        pt = slice_point(sl, t, 0.3)
        assert c['soft accuracy'][1][i].item() == pytest.approx(pt['|grad|'], rel=1e-4)
        assert c['cross entropy'][1][i].item() == pytest.approx(pt['|grad cross entropy|'], rel=1e-4)
    assert float(c['accuracy'][1].abs().max()) == 0.0


def test_training_accuracy_as_loss_cannot_move():
    r = train_logreg(lambda z, y: 1 - accuracy(z, y), steps=5)
    assert r['valid_accuracy'].shape == (1, 6) and len(set(r['valid_accuracy'][0].tolist())) == 1
    ce = train_logreg(F.cross_entropy, steps=30)
    assert ce['valid_accuracy'][0, -1] > ce['valid_accuracy'][0, 0] + 0.3
    with pytest.raises(ValueError, match='steps must be in'): train_logreg(F.cross_entropy, steps=-1)
    with pytest.raises(TypeError, match='progress must be a bool'): train_logreg(F.cross_entropy, steps=1, progress='no')
    with pytest.raises(ValueError, match=r'init must have shape \(2, 64, 10\)'):
        train_logreg(F.cross_entropy, steps=1, n_models=2, init=torch.zeros(1, 64, 10))


def test_models_trained_side_by_side_match_one_at_a_time():
    "Stacking S models in one run gives each the gradient of its own mean: the same run as training it alone."
    import functools
    opt = functools.partial(torch.optim.SGD, lr=0.5)  # SGD: no per-coordinate normalisation to hide a scale error
    both = train_logreg(F.cross_entropy, steps=20, opt_func=opt, n_models=2, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    inits = 0.01 * torch.randn(2, 64, 10, generator=g)
    for s in range(2):
        one = train_logreg(F.cross_entropy, steps=20, opt_func=opt, init=inits[s:s + 1])
        torch.testing.assert_close(both['weight'][s], one['weight'][0], rtol=1e-4, atol=1e-6)


def test_sweep_soft_runs_match_the_library_soft_accuracy():
    "The sweep trains every temperature at once with its own soft-accuracy code; one run with soft_accuracy agrees."
    runs = sweep_losses(temperatures=(0.3,), n_models=1, steps=30)
    lib = train_logreg(lambda z, y: _one_minus_soft(z, y, 0.3), steps=30)
    torch.testing.assert_close(runs['soft accuracy, T = 0.3'], lib['valid_accuracy'], rtol=0, atol=0.006)
    torch.testing.assert_close(runs['cross entropy'], train_logreg(F.cross_entropy, steps=30)['valid_accuracy'])


def test_lesson_helpers_leave_global_state_alone(two_threads):
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    train_logreg(F.cross_entropy, steps=2)
    overfit_one_batch(F.cross_entropy, n=8, steps=2)
    assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == threads
    a, b = digits_split(), digits_split()
    a[0].zero_()
    assert b[0].abs().sum() > 0 and digits_split()[0].abs().sum() > 0  # every call gets its own copies
    sl = digits_slice()
    sl.weight.zero_()
    assert digits_slice().weight.abs().sum() > 0


def test_bias_only_model_learns_weighted_frequencies():
    "With class weights w and frequencies q the optimum is p = w q / sum(w q)."
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    q = torch.tensor([0.6, 0.3, 0.1])
    for w in (None, torch.tensor([1., 2., 6.])):
        want = q if w is None else w * q / (w * q).sum()
        torch.testing.assert_close(fit_bias_only(y, w, steps=400), want, rtol=0, atol=2e-3)
    # another loss: the Brier score is calibrated too; soft accuracy puts everything on the likeliest class
    torch.testing.assert_close(fit_bias_only(y, loss_fn=mse_on_probabilities), q, rtol=0, atol=2e-3)
    assert fit_bias_only(y, loss_fn=lambda z, y: 1 - soft_accuracy(z, y, 1.0))[0] > 0.99


def test_overfit_one_batch_reaches_near_zero():
    out = overfit_one_batch(F.cross_entropy, n=32, steps=100)
    assert len(out) == 101 and out[0] == pytest.approx(math.log(10), abs=0.02) and out[-1] < 0.01


def test_exercises_reference_and_answers():
    from lossnotes.course.exercises import check
    assert 3 <= len(EXERCISES) <= 5
    assert check('losscheck/percentage-constant', 1.0).correct  # the 1/y-weighted median of 1, 2, 4
    for wrong in (2.0, 7 / 3, 0.5): assert not check('losscheck/percentage-constant', wrong).correct  # median, mean, too low
    z = torch.zeros(4, 3, requires_grad=True)
    loss = (torch.tensor([1., 3., 3., 3.]) * F.cross_entropy(z, torch.tensor([0, 2, 2, 2]), reduction='none')).sum() / 10
    assert check('losscheck/weighted-mean-grad', torch.autograd.grad(loss, z)[0][0, 0].item()).correct  # -(2/3) / 10
    for wrong in (-1 / 6, 1 / 15, -0.1): assert not check('losscheck/weighted-mean-grad', wrong).correct  # sum / N, sign, no 1 - p
    def sum_over_n(z, y, w): return (w[y] * F.cross_entropy(z, y, reduction='none')).mean()
    assert check('losscheck/weighted-nll', sum_over_n).correct
    assert not check('losscheck/weighted-nll', lambda z, y, w: F.cross_entropy(z, y, weight=w)).correct  # the weighted mean
    log_of_softmax = lambda z, y, w: (w[y] * -F.softmax(z, 1).log().gather(1, y[:, None]).squeeze(1)).mean()
    assert not check('losscheck/weighted-nll', log_of_softmax).correct  # inf on the large-logit case
    inf = torch.log(torch.sigmoid(torch.tensor([200., -200., 0., 20.]))).isinf()  # the oracle: which logit gives inf
    for letter, value, bad in zip('abcd', ('200', '-200', '0', '20'), inf.tolist()):
        assert check('losscheck/diagnose-log-sigmoid', letter).correct == bad == check('losscheck/diagnose-log-sigmoid', value).correct
    assert 'log(0)' not in repr(EXERCISES['diagnose-log-sigmoid'])  # the feedback is sealed
    # batches of two, frequencies (0.9, 0.1), weights (1, 9): where the average gradient of F.cross_entropy(weight=) is zero
    w2, b = torch.tensor([1., 9.], dtype=torch.float64), torch.zeros(2, dtype=torch.float64, requires_grad=True)
    batches = {(0, 0): 0.81, (0, 1): 0.18, (1, 1): 0.01}
    opt = torch.optim.LBFGS([b], line_search_fn='strong_wolfe')
    def closure():
        opt.zero_grad()
        loss = sum(pr * F.cross_entropy(b.expand(2, 2), torch.tensor(bt), weight=w2) for bt, pr in batches.items())
        loss.backward(); return loss
    for _ in range(5): opt.step(closure)
    p_rare = torch.softmax(b.detach(), 0)[1].item()
    assert check('losscheck/batch-of-two', p_rare).correct and abs(p_rare - 0.172) < 1e-4
    for wrong in (0.5, 0.1, 0.9): assert not check('losscheck/batch-of-two', wrong).correct  # sum / N, batch of one, the share
    for name in ('percentage-constant', 'weighted-mean-grad', 'batch-of-two'):
        assert str(EXERCISES[name]['answer']).startswith('sealed:'), name  # no answer-computing function in the module


def test_plots():
    fig = new_figure()
    ax = plot_slice([0, 1, 2], [0.5, 0.4, 0.4], 'accuracy', ax=fig.subplots(), marker=1.0)
    assert len(ax.get_lines()) == 2
    ax = plot_training({'cross entropy': [0.1, 0.5, 0.9], 'accuracy': [0.1, 0.1, 0.1]}, ax=new_figure().subplots())
    assert [l.get_label() for l in ax.get_lines()] == ['cross entropy', 'accuracy']
    assert list(ax.get_lines()[0].get_ydata()) == pytest.approx([0.1, 0.5, 0.9])
    ax = plot_training({'cross entropy': torch.tensor([[0.1, 0.5], [0.3, 0.7]])}, ax=new_figure().subplots())
    assert list(ax.get_lines()[0].get_ydata()) == pytest.approx([0.2, 0.6])  # the mean over runs
    runs = {'cross entropy': torch.tensor([[0.1, 0.9]]), 'MSE on probabilities': torch.tensor([[0.1, 0.8]]),
            'soft accuracy, T = 0.1': torch.tensor([[0.1, 0.5], [0.1, 0.7]]), 'soft accuracy, T = 1': torch.tensor([[0.1, 0.6]])}
    ax = plot_temperature_sweep(runs, ax=new_figure().subplots())
    mean_line = [l for l in ax.get_lines() if l.get_label() == 'soft accuracy (mean)'][0]
    assert list(mean_line.get_xdata()) == [0.1, 1.0] and list(mean_line.get_ydata()) == pytest.approx([0.6, 0.6])


def _parse(readout):
    return dict((k, float(v)) for k, v in (line.split(': ') for line in readout.split('\n')))


def test_explorer_readout_matches_library():
    draw, controls = explorer_parts()
    assert list(controls) == ['temperature', 'position']
    for t in controls['temperature'].options[::2]:
        for pos in (-2.0, 0.3, 2.0):
            out = _parse(draw(new_figure(), temperature=t, position=pos))
            pt = slice_point(digits_slice(), pos, t)
            assert out['accuracy'] == pytest.approx(pt['accuracy'], abs=0.005)
            assert out['soft accuracy'] == pytest.approx(pt['soft accuracy'], abs=5e-5)
            assert out['cross entropy'] == pytest.approx(pt['cross entropy'], abs=5e-5)
            assert out['|grad|'] == pytest.approx(pt['|grad|'], rel=5e-3)
    sl = digits_slice()
    assert _parse(draw(new_figure(), temperature=1.0, position=0.0))['accuracy'] == pytest.approx(
        float(accuracy(sl.logits(0.0), sl.y)), abs=1e-6)


def test_draw_explorer_without_precomputed_curves():
    fig = new_figure()
    out = draw_explorer(fig, temperature=0.3, position=0.1)
    assert len(fig.axes) == 2 and out.startswith('accuracy: ')
    with pytest.raises(ValueError, match='temperature must be in'):
        draw_explorer(new_figure(), temperature=0.0)


def test_explorer_moves_in_place_with_the_full_readout():
    "Both sliders update the curves, markers and title in place, the limits still; the readout is a full drawing's."
    draw, controls = explorer_parts()
    moves = [dict(temperature=t) for t in controls['temperature'].options] + [dict(position=p) for p in (-2.0, 0.35, 2.0)]
    bd.assert_in_place_with_still_limits(draw, controls, moves)


# At the teaching defaults, tests/test_plotting.py::test_every_lesson_explorer_draws_at_every_control_value sweeps
# this explorer with every fast frame compared to a full drawing; a sweep here would repeat it frame for frame.


def test_target_broadcast_over_rows_keeps_batch_check_working():
    p = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0.5, -1.0, 2.0])  # one target per column, shared by every row
    r = check_loss(lambda p, y: ((p - y) ** 2).mean(), p, y)
    assert r.ok, r


def test_zero_targets_named_in_reason():
    p, y = _reg()
    y[[1, 5]] = 0.0
    r = check_loss(lambda p, y: (1 - p / y).abs().mean(), p, y)
    assert '(the target holds 2 zeros)' in r['finite'].reason


@pytest.mark.parametrize('fn', [check_loss, soft_accuracy, mse_on_probabilities])
def test_help_explains_every_parameter(fn):
    "help() shows a numpy-style docstring: every parameter of the signature with its meaning, Returns and Examples."
    import inspect, pydoc
    text = pydoc.render_doc(fn, renderer=pydoc.plaintext)
    for section in ('Parameters', 'Returns', 'Raises', 'Examples'): assert section in text, section
    for name in inspect.signature(fn).parameters:
        assert f'{name} : ' in text, f'{name} is not documented in help({fn.__name__})'


def test_docstring_examples_run():
    import doctest
    import lossnotes.losscheck
    result = doctest.testmod(lossnotes.losscheck)
    assert result.attempted >= 10 and result.failed == 0, result


def test_soft_targets_recognised_as_probabilities():
    "F.cross_entropy with probability targets: lowest at softmax(pred) = target, a finite minimum; MSE stays a regression."
    g = torch.Generator().manual_seed(5)
    z, q = torch.randn(32, 4, generator=g), F.softmax(2 * torch.randn(32, 4, generator=g), 1)
    r = check_loss(F.cross_entropy, z, q)
    assert r.ok and r.task == 'soft classification' and 'read as class probabilities' in r['minimum at target'].reason
    # the minimum's value is the entropy of the targets (the closed form of cross entropy at softmax(z) = q)
    entropy = float(-(q * q.log()).sum(1).mean())
    assert f'Finite minimum by design: lowest ({entropy:.4g}' in r['minimum at target'].reason
    r = check_loss(F.cross_entropy, z, q, task='soft classification')
    assert r.ok and 'read as' not in r['minimum at target'].reason
    assert check_loss(F.mse_loss, z, q).task == 'regression' and check_loss(F.mse_loss, z, q).ok
    assert not check_loss(F.cross_entropy, z, q, task='regression')['minimum at target'].passed
    with pytest.raises(ValueError, match=r"target must hold class probabilities .* row sums from 2 to 2"):
        check_loss(F.cross_entropy, z, 2 * q, task='soft classification')
    with pytest.raises(TypeError, match=r"target must be a floating-point tensor for task='soft classification'"):
        check_loss(F.cross_entropy, z, q.argmax(1), task='soft classification')


# ---------- constants, dead zones and binary labels ----------

@pytest.mark.parametrize('make', [lambda p, t: torch.tensor(1.0), lambda p, t: 0 * p.sum() + 1.0])
def test_flags_constant_regression_loss(make):
    "A loss that ignores pred (no graph, or a graph with gradient 0) fails both the minimum and the gradient check."
    p, y = _reg()
    r = check_loss(make, p, y, name='constant')
    assert not r.ok and [c.status for c in r.checks] == ['pass', 'FAIL', 'FAIL', 'pass']
    assert 'does not change with pred' in r['minimum at target'].reason
    assert 'does not depend on pred' in r['informative gradient'].reason and 'Non-zero' not in r['informative gradient'].reason


def test_flags_constant_classification_loss():
    z, y = _cls()
    r = check_loss(lambda z, y: 0 * z.sum(), z, y)
    assert [c.status for c in r.checks] == ['pass', 'FAIL', 'FAIL', 'pass']
    assert 'it does not depend on the logits' in r['minimum at target'].reason


def test_dead_zone_is_not_a_constant():
    "An epsilon-insensitive loss with the example inside its dead zone: flat near the target, rising further away."
    p, y = _reg()
    r = check_loss(lambda p, y: F.relu((p - y).abs() - 5).mean(), p, y)
    assert r['minimum at target'].passed and 'dead zone' in r['minimum at target'].reason
    assert r['informative gradient'].passed
    assert not check_loss(lambda p, y: 0 * F.relu((p - y).abs() - 1e6).mean(), p, y)['minimum at target'].passed


def test_loss_at_its_minimum_around_the_example_warns():
    "Example and every nearby probe inside a dead zone: no point above the minimum nearby, so a warning, not a pass."
    p, y = _reg()
    r = check_loss(lambda p, y: F.relu((p - y).abs() - 5).mean(), p, y)
    c = r['informative gradient']
    assert r.ok and c.status == 'warn' and 'check a batch the model gets wrong' in c.reason
    assert r['minimum at target'].status == 'pass' and 'higher further away' in r['minimum at target'].reason


def test_item_returning_float_names_the_cause():
    p, y = _reg()
    with pytest.raises(TypeError, match=r'\.item\(\) or float\(\) turned the loss into a Python number'):
        check_loss(lambda p, y: F.mse_loss(p, y).item(), p, y)


@pytest.mark.parametrize('soft', [False, True])
def test_binary_cross_entropy_with_logits_is_read_as_binary(soft):
    "BCE with logits on float labels in [0, 1]: judged as binary classification, not as a regression onto the labels."
    g = torch.Generator().manual_seed(3)
    z = torch.randn(32, 1, generator=g)
    t = torch.rand(32, 1, generator=g) if soft else (torch.rand(32, 1, generator=g) > 0.5).float()
    for fn in (F.binary_cross_entropy_with_logits, lambda z, t: F.binary_cross_entropy(torch.sigmoid(z), t)):
        r = check_loss(fn, z, t)
        assert r.ok and r.task == 'binary classification', r
        assert 'read as binary labels' in r['minimum at target'].reason
    if soft:  # the closed form: the path ends at logits = logit(t), where BCE is the labels' mean entropy
        entropy = float(-(t * t.log() + (1 - t) * (1 - t).log()).mean())
        assert f'to {entropy:.4g};' in r['minimum at target'].reason, r['minimum at target'].reason
    r = check_loss(F.binary_cross_entropy_with_logits, z, t, task='binary classification')
    assert r.ok and 'read as' not in r['minimum at target'].reason
    assert not check_loss(F.binary_cross_entropy_with_logits, z, t, task='regression').ok


def test_binary_sign_error_and_regression_onto_labels():
    g = torch.Generator().manual_seed(4)
    z, t = torch.randn(32, generator=g), (torch.rand(32, generator=g) > 0.5).float()
    r = check_loss(lambda z, t: F.binary_cross_entropy_with_logits(-z, t), z, t)
    assert not r['minimum at target'].passed and 'Read as binary labels for logits, the loss fails too' in r['minimum at target'].reason
    r = check_loss(F.mse_loss, z, t)  # a regression onto 0/1 labels stays a regression
    assert r.ok and r.task == 'regression' and 'binary' not in r['minimum at target'].reason


def test_probability_loss_on_random_probes_explains_the_fix():
    g = torch.Generator().manual_seed(4)
    p, t = torch.rand(16, generator=g), (torch.rand(16, generator=g) > 0.5).float()
    with pytest.raises(ValueError, match=r'the example itself was fine.*F\.binary_cross_entropy\(torch\.sigmoid\(z\), y\)'):
        check_loss(F.binary_cross_entropy, p, t)


def test_binary_label_smoothing_has_a_finite_minimum():
    "BCE on labels smoothed to 0.05 / 0.95: lowest at logits +-ln(0.95 / 0.05), a fraction of the way to +-30."
    z, t = torch.randn(8, generator=torch.Generator().manual_seed(2)), (torch.arange(8) % 2).float()
    r = check_loss(lambda z, y: F.binary_cross_entropy_with_logits(z, 0.9 * y + 0.05), z, t, task='binary classification')
    c = r['minimum at target']
    assert r.ok and 'Finite minimum by design' in c.reason
    import re
    margin = float(re.search(r'logits \+-([0-9.]+) for labels 1 and 0', c.reason).group(1))
    assert abs(margin - math.log(0.95 / 0.05)) < 0.01 and "on the labels' side)" in c.reason, c.reason


# ---------- misses and false alarms: each finding on a real loss, with its numbers against an oracle ----------

def _half_mse(p, t): return ((p - t) * (p - t).detach()).mean()


def _gradcheck_passes(fn, x):
    "torch's own oracle: does autograd's gradient match the finite differences of the value (float64)?"
    try: return torch.autograd.gradcheck(fn, (x.double().requires_grad_(),), raise_exception=True)
    except Exception: return False


@pytest.mark.parametrize('loss', [
    _half_mse,  # value mean(e^2), gradient e / N: half of the slope 2e / N
    lambda p, t: 2 * _half_mse(p, t),  # value 2 mean(e^2), gradient 2e / N: half again
    lambda p, t: ((p - t).abs() * (p - t).detach().abs()).mean() * 3,  # value 3 mean(e^2), gradient 3e / N: half
])
def test_flags_gradient_that_is_not_the_slope_of_the_value(loss):
    p, y = _reg()
    r = check_loss(loss, p, y)
    c = r['informative gradient']
    assert not r.ok and c.status == 'FAIL' and "is not the slope of the loss value" in c.reason, c.reason
    assert not _gradcheck_passes(lambda q: loss(q, y.double()), p)  # gradcheck agrees: the gradient is not the value's
    assert '(0.5x)' in c.reason, c.reason  # autograd's slope over the difference quotient: 1/2, the closed form
    # the same loss without the detach passes, and gradcheck agrees
    assert check_loss(F.mse_loss, p, y)['informative gradient'].status == 'pass'
    assert _gradcheck_passes(lambda q: F.mse_loss(q, y.double()), p)


def test_gradient_mismatch_ratio_is_the_true_ratio():
    "A value of MSE with k times MSE's gradient (value_with_grad_of) is reported as k x, for k = 0.25, 3."
    from lossnotes.gradtricks import value_with_grad_of
    p, y = _reg()
    for k in (0.25, 3.0):
        r = check_loss(lambda q, t: value_with_grad_of(F.mse_loss(q, t), k * F.mse_loss(q, t)), p, y)
        assert r['informative gradient'].status == 'FAIL' and f'({k:.3g}x)' in r['informative gradient'].reason


@pytest.mark.parametrize('loss', [F.mse_loss, F.l1_loss, F.smooth_l1_loss, F.huber_loss,
                                  lambda p, t: irls_loss(p, t, p=1.5)])  # a detach by design whose gradient is the slope
def test_gradients_that_are_the_slope_pass(loss):
    "Losses whose gradient is the slope of their value (an L1 kink included) are not flagged; gradcheck agrees."
    p, y = _reg()
    c = check_loss(loss, p, y)['informative gradient']
    assert c.status == 'pass' and 'matches the slope of the loss value' in c.reason, c.reason
    assert _gradcheck_passes(lambda q: loss(q, y.double()), p + 0.01)  # away from L1's kinks


def test_detached_max_in_a_softmax_is_not_flagged():
    "The stable-softmax detach (subtracting a detached row max) leaves the gradient the slope: it passes."
    z, y = _cls(c=10)
    loss = lambda z, y: F.cross_entropy(z - z.amax(1, keepdim=True).detach(), y)
    r = check_loss(loss, z, y)
    assert r.ok and r['informative gradient'].status == 'pass', r


def test_flags_nll_loss_on_raw_logits_as_unbounded_below():
    "F.nll_loss(raw logits) is -mean(z[y]): at logits M (onehot - 1/C) that is -M (1 - 1/C), a closed form."
    z, y = _cls(c=10)
    r = check_loss(F.nll_loss, z, y)
    c = r['minimum at target']
    assert not r.ok and c.status == 'FAIL' and 'unbounded below' in c.reason, c.reason
    for M in (30, 300, 3000):
        want = -M * (1 - 1 / 10)
        logits = M * (F.one_hot(y, 10).float() - 1 / 10)
        assert abs(float(F.nll_loss(logits, y)) - want) < 1e-3 * M  # the closed form is what torch computes
        assert f'{want:.4g} at a margin of {M}' in c.reason, c.reason
    # with log_softmax it is cross entropy: bounded, usable
    assert check_loss(lambda z, y: F.nll_loss(F.log_softmax(z, 1), y), z, y).ok


def test_cross_entropy_and_focal_loss_level_off():
    "Losses bounded below that fall all the way (cross entropy, a focal loss) are not called unbounded."
    z, y = _cls(c=10)
    def focal(z, y, gamma=2.0):
        logp = F.log_softmax(z, 1).gather(1, y[:, None]).squeeze(1)
        return (-(1 - logp.exp()) ** gamma * logp).mean()
    for loss in (F.cross_entropy, focal, lambda z, y: F.multi_margin_loss(z, y)):
        r = check_loss(loss, z, y)
        assert r.ok and r['minimum at target'].status == 'pass', r


def test_warns_cross_entropy_on_softmax_outputs():
    "Cross entropy of softmax outputs: its gradient at a confident mistake is the one torch computes there, ~1e-14."
    z, y = _cls(c=10)
    loss = lambda z, y: F.cross_entropy(F.softmax(z, 1), y)
    r = check_loss(loss, z, y)
    c = r['informative gradient']
    assert r.ok and c.status == 'warn' and 'confident mistake' in c.reason and 'saturates' in c.reason, c.reason
    # the numbers quoted are torch's gradient norms at the two points (oracle: torch.autograd.grad)
    wrong = 30 * (F.one_hot((y + 1) % 10, 10).float() - 1 / 10)
    uniform = torch.zeros_like(z)
    norm = lambda x: float(torch.autograd.grad(loss(x.requires_grad_(), y), x)[0].norm())
    n_wrong, n_uniform = norm(wrong.clone()), norm(uniform.clone())
    assert n_wrong < 1e-10 * n_uniform
    assert f'the gradient is {n_wrong:.4g}, against {n_uniform:.4g} at uniform logits' in c.reason, c.reason
    # proper cross entropy: no warning, and its gradient at the same confident mistake is large
    assert check_loss(F.cross_entropy, z, y)['informative gradient'].status == 'pass'
    ce_wrong = float(torch.autograd.grad(F.cross_entropy(w := wrong.clone().requires_grad_(), y), w)[0].norm())
    assert ce_wrong > n_uniform


@pytest.mark.parametrize('loss', [mse_on_probabilities, lambda z, y: 1 - soft_accuracy(z, y)])
def test_warns_losses_of_the_softmax_that_saturate(loss):
    z, y = _cls()
    r = check_loss(loss, z, y)
    assert r.ok and r['informative gradient'].status == 'warn' and 'confident mistake' in r['informative gradient'].reason


@pytest.mark.parametrize('reduction', ['mean', 'sum'])
def test_accepts_ignore_index_targets(reduction):
    "Targets with -100 entries (F.cross_entropy's default ignore_index): the value is torch's, that of the kept rows."
    z, y = _cls(c=10)
    y = y.clone(); y[::4] = -100
    keep = y != -100
    loss = lambda z, y: F.cross_entropy(z, y, reduction=reduction)
    r = check_loss(loss, z, y)
    assert r.ok, r
    assert math.isclose(r.value, float(F.cross_entropy(z[keep], y[keep], reduction=reduction)), rel_tol=1e-6)
    # a custom ignore_index, passed as torch does
    y255 = y.masked_fill(~keep, 255)
    r = check_loss(lambda z, y: F.cross_entropy(z, y, ignore_index=255), z, y255, ignore_index=255)
    assert r.ok and abs(r.value - float(F.cross_entropy(z[keep], y[keep]))) < 1e-6


def test_ignore_index_refusals():
    z, y = _cls(c=10)
    y = y.clone(); y[:3] = -100
    with pytest.raises(ValueError, match=r'target must hold class indices in \[0, 9\] for pred with 10 classes, got values from -100 to'):
        check_loss(F.cross_entropy, z, y, ignore_index=None)
    with pytest.raises(ValueError, match=r'target holds only ignore_index \(-100\) entries'):
        check_loss(F.cross_entropy, z, torch.full_like(y, -100))
    with pytest.raises(ValueError, match=r'loss_fn raised (RuntimeError|IndexError) at the example'):  # a loss that does not ignore
        check_loss(lambda z, y: -F.log_softmax(z, 1).gather(1, y[:, None]).mean(), z, y)
    with pytest.raises(TypeError, match='ignore_index must be an integer, got 1.5'):
        check_loss(F.cross_entropy, z, y, ignore_index=1.5)


def test_float_class_target_says_what_to_pass():
    z, y = _cls(c=10)
    with pytest.raises(ValueError) as e: check_loss(F.cross_entropy, z, y.float())
    msg = str(e.value)
    assert 'target must be class indices, an integer tensor of shape (64,) (target.long())' in msg, msg
    assert "or class probabilities of pred's shape (64, 10)" in msg, msg
    # and passing what it says works, with torch's value
    assert abs(check_loss(F.cross_entropy, z, y.float().long()).value - float(F.cross_entropy(z, y))) < 1e-6


@pytest.mark.slow
def test_longer_sweep_plateau_can_end_and_cross_entropy_has_stopped_rising():
    "Lesson 02 trains 400 steps: cross entropy no longer rises after that, and a stuck T = 1 run can leave its plateau later."
    from lossnotes.lessons.losscheck import sweep_fits
    long = sweep_fits(temperatures=(1.0,), n_models=3, steps=1500)  # its first 400 steps equal a 400-step run (full batch, constant lr)
    ce = [long['cross entropy']['valid_accuracy'][:, s].mean().item() for s in (400, -1)]
    assert ce[1] <= ce[0] + 0.002
    stuck = long['soft accuracy, T = 1']['valid_accuracy'][:, 400]
    later = long['soft accuracy, T = 1']['valid_accuracy'][:, -1]
    assert (stuck < 0.9).all() and (later > 0.95).any()


def test_kink_on_the_example_is_not_a_mismatch():
    "Half the predictions exactly on the target: L1's subgradient 0 there lies between the one-sided slopes, no alarm."
    p, y = _reg()
    p = p.clone(); p[:32] = y[:32]
    for loss in (F.l1_loss, lambda p, t: F.relu(p - t).mean() + 0.5 * F.relu(t - p).mean()):
        c = check_loss(loss, p, y)['informative gradient']
        assert c.status == 'pass' and 'matches the slope' in c.reason, c.reason


def test_straight_through_loss_is_flagged_as_a_surrogate_gradient():
    "A rounded prediction with a straight-through gradient: the value is a staircase (slope 0), the gradient is not 0."
    from lossnotes.gradtricks import straight_through
    p, y = _reg()
    loss = lambda p, t: ((straight_through(4 * p, torch.round) / 4 - t) ** 2).mean()
    c = check_loss(loss, p, y)['informative gradient']
    assert c.status == 'FAIL' and 'the loss changes by 0 per unit step' in c.reason, c.reason
    assert not _gradcheck_passes(lambda q: loss(q, y.double()), p)


# ---------- minima off the target, random losses, inference mode, half precision ----------

def _soft(n=64, c=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(n, c, generator=g), 3 * torch.randn(n, c, generator=g)


def test_rebuilt_with_torch_tensor_fails_the_gradient_only():
    z, y = _cls()
    r = check_loss(lambda z, y: torch.tensor(F.cross_entropy(z, y).item()), z, y)
    assert [c.status for c in r.checks] == ['pass', 'pass', 'FAIL', 'pass']
    assert 'autograd finds no path' in r['informative gradient'].reason
    assert [c.status for c in check_loss(lambda z, y: torch.tensor(1.0), z, y).checks] == ['pass', 'FAIL', 'FAIL', 'pass']


@pytest.mark.parametrize('eps', [0.1, 0.3])
def test_soft_targets_with_label_smoothing_are_never_binary(eps):
    z, teacher = _soft()
    q = F.softmax(teacher / 4, 1)
    r = check_loss(lambda z, q: F.cross_entropy(z, q, label_smoothing=eps), z, q)
    assert (r.task, r.ok, r['minimum at target'].status) == ('soft classification', True, 'warn')
    # the optimum of cross entropy with the smoothed target (1 - eps) q + eps / C is softmax = that target
    assert f'softmax(pred) = (1 - {eps:.3g}) target + {eps:.3g} / C' in r['minimum at target'].reason
    best = ((1 - eps) * q + eps / 10).log()
    lowest = float(r['minimum at target'].reason.split('Lowest (')[1].split(')')[0])
    assert lowest == pytest.approx(F.cross_entropy(best, q, label_smoothing=eps).item(), rel=1e-3)


@pytest.mark.parametrize('T', [2.0, 4.0])
def test_distillation_with_temperature_names_it(T):
    z, teacher = _soft()
    q = F.softmax(teacher / T, 1)
    distill = lambda z, q: F.kl_div(F.log_softmax(z / T, 1), q, reduction='batchmean') * T ** 2
    for task in (None, 'soft classification'):
        r = check_loss(distill, z, q, task=task)
        assert (r.task, r.ok, r['minimum at target'].status) == ('soft classification', True, 'warn')
        assert f'logits = {T:.3g} x log(target)' in r['minimum at target'].reason
    assert distill(T * q.log(), q).abs().item() < 1e-5  # the oracle: KL(q || q) = 0 at T log q


@pytest.mark.parametrize('lam', [0.1, 0.25])
def test_regularised_regression_names_the_shrunk_optimum(lam):
    p, t = _reg()
    r = check_loss(lambda p, t: F.mse_loss(p, t) + lam * (p ** 2).mean(), p, t)
    assert (r.task, r.ok, r['minimum at target'].status) == ('regression', True, 'warn')
    assert f'pred = {1 / (1 + lam):.3g} x target' in r['minimum at target'].reason  # 2(p - t) + 2 lam p = 0


def test_poisson_log_input_names_log_space_and_no_zero_hint_far_away():
    g = torch.Generator().manual_seed(1)
    p, t = torch.randn(64, generator=g), torch.poisson(torch.full((64,), 3.0), generator=g)
    assert int((t == 0).sum()) > 0
    r = check_loss(F.poisson_nll_loss, p, t)
    assert r['minimum at target'].status == 'warn' and 'pred = log(target)' in r['minimum at target'].reason
    assert 'zero' not in r['finite'].reason  # its overflow at a log-rate of hundreds is not the zeros' fault
    assert r['finite'].status == 'FAIL' and f'overflows torch.float32 above {math.log(torch.finfo(torch.float32).max):.4g}' in r['finite'].reason
    assert torch.tensor(89.0).exp().isinf() and torch.tensor(88.7).exp().isfinite()  # the oracle: float32's exp
    assert check_loss(F.poisson_nll_loss, p, t, extreme=(1.0, 3.0, 10.0))['finite'].status == 'pass'
    assert check_loss(lambda p, t: F.poisson_nll_loss(p, t, log_input=False), p.exp(), t)['minimum at target'].passed


def test_sign_error_fails_and_quotes_the_value_where_it_was_seen():
    p, t = _reg()
    r = check_loss(lambda p, t: -F.mse_loss(p, t), p, t)
    assert r['minimum at target'].status == 'FAIL'
    want = f'{-F.mse_loss(p, t).item():.4g}'
    assert r['minimum at target'].reason.startswith(f'The loss is {want} at the example but 0 at pred = target')


def test_random_loss_is_reported_as_random():
    z, y = _cls()
    torch.manual_seed(0)
    r = check_loss(lambda z, y: F.cross_entropy(F.dropout(z, 0.5), y), z, y)
    assert [c.status for c in r.checks] == ['warn', 'FAIL', 'warn', 'warn'] and not r.ok
    assert 'it is random' in r['minimum at target'].reason
    assert all(c.reason.startswith('Cannot be judged') for c in r.checks if c.status == 'warn')


def test_check_loss_inside_inference_mode():
    z, y = _cls()
    want = [c.status for c in check_loss(F.cross_entropy, z, y).checks]
    with torch.inference_mode():
        r = check_loss(F.cross_entropy, z, y)
        zi = z * 1.0  # an inference tensor
        r2 = check_loss(F.cross_entropy, zi, y)
        assert torch.is_inference_mode_enabled()
    assert [c.status for c in r.checks] == want == ['pass'] * 4 and r2.ok
    assert r.value == pytest.approx(F.cross_entropy(z, y).item(), rel=1e-6)


def test_half_precision_overflow_at_extreme_probes_warns():
    g = torch.Generator().manual_seed(2)
    p, t = torch.randn(64, generator=g), torch.randn(64, generator=g)
    r = check_loss(F.mse_loss, p.half(), t.half())
    assert r.ok and r['finite'].status == 'warn'
    # the float32 loss at the first overflowing probe fits float16: a step inside it overflows, not its value
    import re
    v32 = float(re.search(r'where float32 gives ([-+.e\d]+), a value torch.float16 holds, so a step inside the loss '
                          r'overflows', r['finite'].reason)[1])
    assert math.isfinite(v32) and abs(v32) <= torch.finfo(torch.float16).max
    assert F.mse_loss(torch.full((4,), 300.0).half(), torch.zeros(4).half()).isinf()  # the oracle: 90000 > 65504
    # ... though the mean itself fits: [300, 0] has mean square 45000
    assert F.mse_loss(torch.tensor([300.0, 0.0]).half(), torch.zeros(2).half()).isinf()
    assert F.mse_loss(torch.tensor([300.0, 0.0]), torch.zeros(2)).item() == 45000.0 < torch.finfo(torch.float16).max
    # a loss whose float32 value is beyond float16's range is named as such
    r = check_loss(F.mse_loss, p.half(), t.half(), extreme=(1000.0,))
    assert r['finite'].status == 'warn' and 'beyond the range of torch.float16' in r['finite'].reason
    z, y = _cls(64, 10, 1)
    assert check_loss(F.cross_entropy, z.half(), y).ok
    # a loss that is not finite in float32 either still fails
    assert check_loss(lambda z, y: -F.softmax(z, 1).log().gather(1, y[:, None]).mean(), z.half(), y)['finite'].status == 'FAIL'


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_runs_torchs_losses_in_float32_not_a_hand_written_one(dtype):
    "The scope of the float16 reason: under CPU autocast F.mse_loss and F.cross_entropy return float32, (a - b)**2 does not."
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, generator=g).to(dtype), torch.randn(4, 3, generator=g).to(dtype)
    y = torch.tensor([0, 1, 2, 0])
    with torch.autocast('cpu', dtype=dtype):
        assert F.mse_loss(a, b).dtype == F.cross_entropy(a, y).dtype == torch.float32
        assert (a - b).pow(2).mean().dtype == dtype
    assert F.mse_loss(a, b).dtype == dtype  # without autocast a half-precision model's loss stays in its dtype


def test_regression_probe_scale_has_a_floor():
    "s = max(mean |pred - target|, 0.1 mean |target|, 1e-3): the page's words, with the 1e-3 floor."
    from lossnotes.losscheck import _probes
    gen = lambda: torch.Generator().manual_seed(0)
    zero = torch.zeros(6)
    assert _probes(zero, zero, False, 1, (10.0,), gen())[2] == 1e-3  # a perfect prediction of zeros: the floor
    assert _probes(zero + 1e-5, zero, False, 1, (10.0,), gen())[2] == 1e-3
    assert _probes(zero + 0.5, zero, False, 1, (10.0,), gen())[2] == 0.5
    assert _probes(zero + 2.0, zero + 2.0 + 1e-4, False, 1, (10.0,), gen())[2] == pytest.approx(0.1 * 2.0001, rel=1e-6)  # a tenth of |target|


def test_batch_check_that_cannot_be_judged_warns():
    p, t = torch.randn(8, generator=torch.Generator().manual_seed(0)), torch.arange(8.0)  # one zero target
    r = check_loss(lambda p, t: ((p - t).abs() / t.abs()).mean(), p, t)
    c = r['batch-size consistent']
    assert c.status == 'warn' and c.reason.startswith('Cannot be judged') and r['finite'].status == 'FAIL'


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")  # torch's own warning, expected here
def test_blind_spots_documented():
    "What the page says check_loss cannot see: a constant rescaling, and a detached term within the 5% tolerance."
    z, teacher = _soft()
    q = F.softmax(teacher, 1)
    kl_mean = lambda z, q: F.kl_div(F.log_softmax(z, 1), q, reduction='mean')
    kl_batch = lambda z, q: F.kl_div(F.log_softmax(z, 1), q, reduction='batchmean')
    assert kl_mean(z, q).item() == pytest.approx(kl_batch(z, q).item() / 10, rel=1e-5)  # divides by N x C
    assert check_loss(kl_mean, z, q)['batch-size consistent'].status == 'pass'
    ce_over_c = lambda z, q: -(q * F.log_softmax(z, 1)).mean()
    assert ce_over_c(z, q).item() == pytest.approx(F.cross_entropy(z, q).item() / 10, rel=1e-5)
    assert check_loss(ce_over_c, z, q).ok
    p, t = _reg()
    r = check_loss(lambda p, t: F.mse_loss(p, t) + 0.01 * (p.detach() ** 2).mean(), p, t)
    assert r['informative gradient'].status == 'pass'  # the slope is off by about 1%: inside the 5% tolerance


def test_random_batches_draw_as_multinomial_on_one_thread_and_restore_the_setting():
    "Lesson 02's SGD batches: torch.multinomial's own draws, step by step; the loop runs on one thread, then the caller's setting is back."
    q, threads = torch.tensor([0.7, 0.2, 0.1]), torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = [(torch.get_num_threads(), y) for y in random_batches(q, 5, 4, 6, seed=3)]
        g = torch.Generator().manual_seed(3)
        assert len(seen) == 6 and all(n == 1 for n, _ in seen)
        for _, y in seen: assert torch.equal(y, torch.multinomial(q, 20, replacement=True, generator=g).view(5, 4))
        assert torch.get_num_threads() == 2
        for y in random_batches(q, 5, 4, 6): break  # a loop left early
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match='in the loop'):
            for y in random_batches(q, 5, 4, 6): raise RuntimeError('in the loop')
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match='batch_size must be in \\[1, inf\\), got 0'): next(random_batches(q, 5, 0, 6))
    finally: torch.set_num_threads(threads)
