"""lossnotes.gradtricks and its lesson: detach compositions, value/gradient tricks, trajectories, docstrings, and the live figure."""
import doctest
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch.autograd.gradcheck import GradcheckError

from lossnotes.lessons.gradtricks import COMPOSITIONS, composition_grad, composition_loss, composition_readout, draw_composition, fit_linear, plot_composition, plot_fits, points_downhill, sign_table
from lossnotes.lessons.gradtricks import COMPOSITION_COLORS, MSE_COLOR, explorer_parts
from lossnotes.gradtricks import grad_wrt, irls_loss, straight_through, value_with_grad_of
from lossnotes.lessons.plotting import MISTAKE, Explorer, new_figure
import browser_driver as bd

F64 = torch.float64
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3)
finite = st.floats(-5, 5, allow_nan=False, allow_infinity=False)


def tensor_of(shape, seed, dtype=F64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def mse(p, t): return ((p - t) ** 2).mean()
def detached(p, t): return ((p - t) * (p - t).detach()).mean()


# ---------------------------------------------------------------- grad_wrt
@settings(max_examples=50, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000))
def test_grad_wrt_half_gradient_closed_forms(shape, seed):
    pred, target = tensor_of(shape, seed), tensor_of(shape, seed + 1)
    e, n = pred - target, pred.numel()
    torch.testing.assert_close(grad_wrt(mse, pred, target), 2 * e / n, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(grad_wrt(detached, pred, target), e / n, rtol=1e-14, atol=1e-15)
    # the detached loss shows the same value as MSE
    assert detached(pred, target).item() == mse(pred, target).item()


def test_grad_wrt_matches_backward_and_leaves_state_alone():
    w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    pred = w * 3.0  # part of a graph the caller will still use
    target_src = torch.tensor([1.0, 1.0, 1.0], requires_grad=True)
    target = target_src * 2.0  # comes out of another graph
    g = grad_wrt(torch.nn.functional.mse_loss, pred, target)
    assert w.grad is None and target_src.grad is None and not g.requires_grad
    torch.nn.functional.mse_loss(pred, target).backward()  # both graphs are still intact
    torch.testing.assert_close(w.grad, 3.0 * g)
    torch.testing.assert_close(target_src.grad, -2.0 * g)


def test_grad_wrt_does_not_touch_leaf_grad_or_values():
    leaf = torch.tensor([1.0, 2.0], requires_grad=True)
    leaf.grad = torch.tensor([7.0, 7.0])
    def inplace_loss(p, t):
        p = p * 1.0
        p.mul_(2)
        return (p * t).sum()
    g = grad_wrt(inplace_loss, leaf, torch.tensor([3.0, 4.0]))
    assert g.tolist() == [6.0, 8.0] and leaf.grad.tolist() == [7.0, 7.0] and leaf.tolist() == [1.0, 2.0]


def test_grad_wrt_fully_detached_loss_has_zero_gradient():
    pred = torch.tensor([1.0, -2.0])
    assert grad_wrt(lambda p, t: ((p - t).detach() ** 2).mean(), pred, 0.0).tolist() == [0.0, 0.0]
    assert grad_wrt(lambda p, t: torch.tensor(3.0), pred, 0.0).tolist() == [0.0, 0.0]


def test_grad_wrt_bad_input():
    pred = torch.zeros(4)
    with pytest.raises(ValueError, match=r'loss_fn must return a single-element tensor, got shape \(4,\)'):
        grad_wrt(lambda p, t: p - t, pred, pred)
    with pytest.raises(TypeError, match='loss_fn must return a tensor, got 1.0 of type float'):
        grad_wrt(lambda p, t: 1.0, pred, pred)
    with pytest.raises(TypeError, match=r'pred must be a torch.Tensor, got \[1.0\] of type list'):
        grad_wrt(mse, [1.0], torch.zeros(1))
    with pytest.raises(TypeError, match='pred must have a floating-point dtype, got torch.int64'):
        grad_wrt(mse, torch.arange(3), torch.zeros(3))


def test_grad_wrt_passes_class_indices_to_the_loss():
    logits = tensor_of((5, 3), 3)
    labels = torch.tensor([0, 2, 1, 1, 0])
    expected = (logits.softmax(1) - torch.nn.functional.one_hot(labels, 3).to(F64)) / 5
    torch.testing.assert_close(grad_wrt(torch.nn.functional.cross_entropy, logits, labels), expected, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- compositions
@pytest.mark.parametrize('name', COMPOSITIONS)
@pytest.mark.parametrize('p', [0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
def test_composition_grad_closed_form(name, p):
    e = torch.linspace(-3, 3, 61, dtype=F64)
    got = grad_wrt(composition_loss(name, p, reduction='sum'), e, torch.zeros_like(e))
    torch.testing.assert_close(got, composition_grad(name, e, p), rtol=1e-12, atol=1e-12)
    # away from the eps floor, the closed form is an exact power law
    nz = e.abs() > 0.05
    a = e[nz].abs()
    expected = {'e*e': 2 * torch.sign(e[nz]) * a ** (p - 1), 'e*sg(e)': torch.sign(e[nz]) * a ** (p - 1),
                '|e|*sg(|e|)': torch.sign(e[nz]) * a ** (p - 1), 'e*sg(|e|)': a ** (p - 1),
                '|e|*sg(e)': a ** (p - 1)}[name]
    torch.testing.assert_close(got[nz], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('name', COMPOSITIONS)
def test_composition_values_at_p2(name):
    e = torch.tensor([-1.5, -0.5, 0.0, 2.0], dtype=F64)
    value = composition_loss(name, reduction='none')(e, torch.zeros_like(e))
    expected = e * e if name in ('e*e', 'e*sg(e)', '|e|*sg(|e|)') else e * e.abs()
    torch.testing.assert_close(value, expected, rtol=0, atol=0)
    torch.testing.assert_close(composition_loss(name)(e, torch.zeros_like(e)), expected.mean(), rtol=1e-15, atol=0)


@pytest.mark.parametrize('p', [0.5, 1.0, 2.0, 4.0])
def test_points_downhill_and_sign_table(p):
    right = {'e*e', 'e*sg(e)', '|e|*sg(|e|)'}
    for name in COMPOSITIONS: assert points_downhill(name, p) == (name in right)
    rows = {r['composition']: r for r in sign_table(p)}
    assert list(rows) == list(COMPOSITIONS)
    for name, r in rows.items():
        assert math.copysign(1, r['grad at e=-1']) == (-1 if name in right else 1)
        assert r['grad at e=+1'] > 0
        assert r['loss at e=-1'] == (1.0 if name in right else -1.0) and r['loss at e=+1'] == 1.0
        assert r['points downhill'] == (name in right)
    assert rows['e*e']['grad at e=-1'] == -2.0 and rows['e*sg(e)']['grad at e=-1'] == -1.0


def test_composition_bad_input():
    with pytest.raises(ValueError, match="name must be one of"): composition_loss('sg(e)*e')
    with pytest.raises(ValueError, match=r'p must be in \(0, inf\), got -1'): composition_loss('e*e', p=-1)
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'max'"):
        composition_loss('e*e', reduction='max')


# ---------------------------------------------------------------- value_with_grad_of
@settings(max_examples=50, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e6))
def test_value_with_grad_of_exact_value_and_surrogate_gradient(shape, seed, scale):
    x = (tensor_of(shape, seed) * scale).requires_grad_()
    out = value_with_grad_of(x.abs().mean(), (x ** 2).mean())
    assert out.item() == x.abs().mean().item()  # exact, not merely close
    g, = torch.autograd.grad(out, x)
    torch.testing.assert_close(g, 2 * x.detach() / x.numel(), rtol=1e-14, atol=0)


def test_value_with_grad_of_gradcheck():
    x = torch.tensor([0.3, -1.2, 2.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: value_with_grad_of(x.sin() + 5.0, x.sin()), (x,))
    with pytest.raises(GradcheckError, match='Jacobian mismatch'):
        torch.autograd.gradcheck(lambda x: value_with_grad_of(x.cos(), x.sin()), (x,))
    # gradcheck has tolerances (atol 1e-5, rtol 1e-3): slopes that differ by less pass, by more fail
    for c in (1e-9, 1e-6, 1e-4):
        assert torch.autograd.gradcheck(lambda x: value_with_grad_of(x.sin() + c * x ** 2, x.sin()), (x,))
    with pytest.raises(GradcheckError, match='Jacobian mismatch'):
        torch.autograd.gradcheck(lambda x: value_with_grad_of(x.sin() + 1e-2 * x ** 2, x.sin()), (x,))


def test_value_with_grad_of_broadcasts_and_detaches_value():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    out = value_with_grad_of(torch.tensor(5.0) * x.sum(), 3 * x)  # value's own graph is ignored
    assert out.tolist() == [15.0, 15.0]
    out.sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_value_with_grad_of_bad_input():
    with pytest.raises(ValueError, match=r'value of shape \(3,\) and surrogate of shape \(2,\) do not broadcast'):
        value_with_grad_of(torch.ones(3), torch.ones(2))
    with pytest.raises(TypeError, match='value must be a torch.Tensor, got 1.0 of type float'):
        value_with_grad_of(1.0, torch.ones(2))
    with pytest.raises(TypeError, match='surrogate must be a torch.Tensor, got 3 of type int'):
        value_with_grad_of(torch.ones(2), 3)


# ---------------------------------------------------------------- straight_through
@settings(max_examples=50, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000), fn=st.sampled_from([torch.round, torch.sign, torch.floor]))
def test_straight_through_forward_fn_backward_identity(shape, seed, fn):
    x = (tensor_of(shape, seed, torch.float32) * 3).requires_grad_()
    y = straight_through(x, fn)
    assert torch.equal(y.detach(), fn(x.detach()))  # exact forward value
    up = tensor_of(shape, seed + 7, torch.float32)
    g, = torch.autograd.grad(y, x, grad_outputs=up)
    assert torch.equal(g, up)


def test_straight_through_gradcheck():
    x = torch.tensor([0.2, -1.7, 3.1], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: straight_through(x, lambda t: t + 3.0), (x,))
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(lambda x: straight_through(x, lambda t: 2 * t), (x,))


def test_straight_through_bad_input():
    x = torch.zeros(4)
    with pytest.raises(ValueError, match=r'fn must keep the shape of x \(4,\), got \(\)'):
        straight_through(x, lambda t: t.sum())
    with pytest.raises(ValueError, match=r'fn must keep the shape of x \(4,\), got \(2, 2\)'):
        straight_through(x, lambda t: t.view(2, 2))
    with pytest.raises(TypeError, match=r'fn must return a torch.Tensor, got \[0.0, 0.0, 0.0, 0.0\] of type list'):
        straight_through(x, lambda t: t.tolist())
    with pytest.raises(TypeError, match=r'x must be a torch.Tensor, got \[1.0\] of type list'):
        straight_through([1.0], torch.round)
    with pytest.raises(TypeError, match="fn must be callable, got 'round'"):
        straight_through(x, 'round')


def test_straight_through_rounds_an_integer_result_to_the_promoted_dtype():
    x = torch.ones(3, dtype=torch.float16, requires_grad=True)
    y = straight_through(x, lambda t: torch.tensor([2048, 2049, 2050]))
    assert y.dtype == torch.promote_types(torch.int64, torch.float16) == torch.float16
    assert y.tolist() == torch.tensor([2048, 2049, 2050]).to(torch.float16).tolist() == [2048.0, 2048.0, 2050.0]
    y = straight_through(x.detach().float(), lambda t: torch.tensor([2048, 2049, 2050]))  # float32 holds 2049
    assert y.tolist() == [2048.0, 2049.0, 2050.0]


# ---------------------------------------------------------------- irls_loss
def test_irls_returns_the_dtype_of_pred_minus_target():
    F16, F32 = torch.float16, torch.float32
    cases = [(torch.ones(5), torch.tensor(0.5, dtype=F64)),  # a 0-d wider target does not widen pred
             (torch.ones(5), torch.zeros(5, dtype=F64)),  # a full-size one does
             (torch.ones(5, dtype=F16), torch.tensor(0.5, dtype=F64)),
             (torch.ones(5, dtype=F16), torch.zeros(5)),
             (torch.tensor(1.0), torch.tensor(0.5, dtype=F64)),  # both 0-d: promoted
             (torch.ones(5, dtype=F64), torch.tensor(0.5))]
    for pred, target in cases:
        assert irls_loss(pred, target).dtype == (pred - target).dtype, (pred.dtype, target.shape, target.dtype)
    assert irls_loss(torch.ones(5), 0.5).dtype == (torch.ones(5) - 0.5).dtype == F32


def test_irls_p1_fit_has_l1_losss_gradient_at_its_predictions():
    "As the page's loop: the irls_loss(p=1) fit (not the MSE one) finds the line; at its predictions irls_loss has F.l1_loss's gradient."
    g = torch.Generator().manual_seed(0)
    x = 4 * torch.rand(200, 1, generator=g) - 2
    y = 1.5 * x - 0.5 + 0.1 * torch.randn(200, 1, generator=g)
    y[::10] += 8.0
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=20, shuffle=True, generator=g)
    threads = torch.get_num_threads(); torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = torch.nn.Linear(1, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for epoch in range(20):
            for xb, yb in loader:
                loss = irls_loss(model(xb), yb, p=1.0)
                opt.zero_grad(); loss.backward(); opt.step()
    finally: torch.set_num_threads(threads)
    assert model.weight.item() == pytest.approx(1.5, abs=0.05) and model.bias.item() == pytest.approx(-0.5, abs=0.05)
    xb, yb = next(iter(loader))
    pred = model(xb).detach()
    assert (pred - yb).abs().min() > 1e-6  # away from the eps floor: the two gradients are equal, not only close
    torch.testing.assert_close(grad_wrt(lambda p, t: irls_loss(p, t, p=1.0), pred, yb), grad_wrt(F.l1_loss, pred, yb),
                               rtol=1e-6, atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000), p=st.floats(0.5, 4.0))
def test_irls_gradient_is_that_of_lp(shape, seed, p):
    pred, target = tensor_of(shape, seed), tensor_of(shape, seed + 1)
    e = pred - target
    pred = torch.where(e.abs() < 1e-3, pred + 0.01, pred)  # stay away from the eps floor
    lp = lambda q, t: ((q - t).abs() ** p).mean() / p
    torch.testing.assert_close(grad_wrt(lambda q, t: irls_loss(q, t, p), pred, target), grad_wrt(lp, pred, target),
                               rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(irls_loss(pred, target, p), lp(pred, target), rtol=1e-14, atol=0)


@pytest.mark.parametrize('p', [0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
def test_irls_gradcheck_float64(p):
    target = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=F64)
    pred = torch.tensor([-2.0, 0.3, 2.8, -0.6], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q: irls_loss(q, target, p), (pred,))


@pytest.mark.parametrize('p', [0.25, 0.5, 1.0, 1.5])
def test_irls_finite_at_zero_error(p):
    eps = 1e-4
    pred = torch.tensor([0.0, 1e-6, -1e-6, 2.0], dtype=F64)
    g = grad_wrt(lambda q, t: irls_loss(q, t, p, eps=eps), pred, torch.zeros(4, dtype=F64))
    assert torch.isfinite(g).all() and g[0] == 0
    # inside the floor the weight is eps**(p-2): the gradient is linear in e there
    torch.testing.assert_close(g[1:3], eps ** (p - 2) * pred[1:3] / 4, rtol=1e-12, atol=0)
    torch.testing.assert_close(g[3], torch.tensor(2.0 ** (p - 1) / 4, dtype=F64), rtol=1e-12, atol=0)


def test_irls_p2_is_half_mse():
    pred, target = torch.tensor([0.0, 1.0, 3.0]), torch.tensor([1.0, 1.0, 1.0])
    torch.testing.assert_close(grad_wrt(lambda q, t: irls_loss(q, t, 2.0), pred, target),
                               grad_wrt(detached, pred, target))
    assert irls_loss(pred, target, 2.0).item() == pytest.approx(mse(pred, target).item() / 2, rel=1e-7)


def test_irls_bad_input():
    z = torch.zeros(3)
    with pytest.raises(ValueError, match=r'p must be in \(0, inf\), got 0'): irls_loss(z, z, p=0)
    with pytest.raises(ValueError, match=r'p must be in \(0, inf\), got -2'): irls_loss(z, z, p=-2)
    with pytest.raises(ValueError, match=r'eps must be in \(0, inf\), got 0'): irls_loss(z, z, eps=0)
    with pytest.raises(ValueError, match=r'pred of shape \(3,\) and target of shape \(2,\) do not broadcast'):
        irls_loss(z, torch.zeros(2))


# ---------------------------------------------------------------- training trajectories
@pytest.fixture(scope='module')
def data():
    from lossnotes.lessons.data import digits
    x, y, _, _ = digits()
    return x[:400], y[:400].float()


def SGD(lr, **kw): return functools.partial(torch.optim.SGD, lr=lr, **kw)
def ADAM(lr, **kw): return functools.partial(torch.optim.Adam, lr=lr, **kw)


def test_sgd_double_lr_on_detached_equals_mse(data):
    x, y = data
    a = fit_linear(mse, x, y, SGD(0.05), steps=25, progress=False)
    b = fit_linear(detached, x, y, SGD(0.1), steps=25, progress=False)
    c = fit_linear(detached, x, y, SGD(0.05), steps=25, progress=False)
    assert a['params'].shape == (26, 65)
    assert torch.equal(a['params'], b['params']) and a['loss'] == b['loss']
    assert (a['params'] - c['params']).abs().max() > 1e-2  # same lr: a different run


@pytest.mark.parametrize('kw, equal', [(dict(momentum=0.9), True), (dict(weight_decay=0.1), False)])
def test_sgd_double_lr_condition(data, kw, equal):
    "Momentum is linear in the gradients and keeps the equality; coupled weight decay is not halved and breaks it."
    x, y = data
    a = fit_linear(mse, x, y, SGD(0.05, **kw), steps=25, progress=False)
    b = fit_linear(detached, x, y, SGD(0.1, **kw), steps=25, progress=False)
    assert torch.equal(a['params'], b['params']) == equal
    if not equal:  # halving the detached run's weight decay restores the equality
        c = fit_linear(detached, x, y, SGD(0.1, weight_decay=kw['weight_decay'] / 2), steps=25, progress=False)
        assert torch.equal(a['params'], c['params'])


def test_adam_same_lr_equal_up_to_eps(data):
    x, y = data
    tiny = [fit_linear(f, x, y, ADAM(0.05, eps=1e-12), steps=25, progress=False)['params'] for f in (mse, detached)]
    assert torch.equal(*tiny)
    default = [fit_linear(f, x, y, ADAM(0.05), steps=25, progress=False)['params'] for f in (mse, detached)]
    diff = (default[0] - default[1]).abs().max().item()
    assert 0 < diff < 1e-4
    l2 = [fit_linear(f, x, y, ADAM(0.05, eps=1e-12, weight_decay=0.1), steps=25, progress=False)['params']
          for f in (mse, detached)]
    assert (l2[0] - l2[1]).abs().max() > 1e-2  # L2 decay is added to the gradient before the moments
    dec = [fit_linear(f, x, y, functools.partial(torch.optim.AdamW, lr=0.05, eps=1e-12, weight_decay=0.1), steps=25,
                      progress=False)['params'] for f in (mse, detached)]
    assert torch.equal(*dec)


def test_sgd_trajectory_matches_manual_update(data):
    x, y = data
    fit = fit_linear(detached, x, y, SGD(0.1), steps=3, progress=False)
    w = fit['params'][0].clone()
    for k in range(3):
        e = x @ w[:-1] + w[-1] - y
        grad = torch.cat([x.T @ e, e.sum().view(1)]) / len(y)  # gradient of mean(e * sg(e)) is mean(e * de/dw)
        w = w - 0.1 * grad
        torch.testing.assert_close(fit['params'][k + 1], w, rtol=1e-5, atol=1e-6)


def test_fit_linear_generator_is_explicit_and_global_rng_untouched(data):
    x, y = data
    state = torch.get_rng_state()
    a = fit_linear(mse, x, y, SGD(0.05), steps=2, progress=False)
    b = fit_linear(mse, x, y, SGD(0.05), steps=2, progress=False, generator=torch.Generator().manual_seed(0))
    c = fit_linear(mse, x, y, SGD(0.05), steps=2, progress=False, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a['params'], b['params']) and not torch.equal(a['params'], c['params'])


def test_fit_linear_trains_on_one_thread_and_restores_the_callers_setting(data):
    x, y = data
    before = torch.get_num_threads()
    seen = []
    def loss_fn(p, t):
        seen.append(torch.get_num_threads())
        return ((p - t) ** 2).mean()
    try:
        torch.set_num_threads(2)
        fit_linear(loss_fn, x, y, SGD(0.05), steps=2, progress=False)
        assert seen == [1, 1] and torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match='boom'):  # restored when the loss raises too
            fit_linear(lambda p, t: (_ for _ in ()).throw(RuntimeError('boom')), x, y, SGD(0.05), steps=1, progress=False)
        assert torch.get_num_threads() == 2
    finally: torch.set_num_threads(before)


def test_wrong_sign_compositions_diverge(data):
    x, y = data
    for name in ('e*sg(|e|)', '|e|*sg(e)'):
        fit = fit_linear(composition_loss(name), x, y, SGD(0.1), steps=30, progress=False)
        assert fit['mae'][-1] > 10 * fit['mae'][0] and fit['loss'][-1] < 0
    good = fit_linear(composition_loss('e*sg(e)'), x, y, SGD(0.1), steps=30, progress=False)
    assert good['mae'][-1] < good['mae'][0]


def test_fit_linear_bad_input(data):
    x, y = data
    with pytest.raises(TypeError, match="opt_func must be callable, got 'sgd'"):
        fit_linear(mse, x, y, 'sgd')
    with pytest.raises(TypeError, match='opt_func must return a torch.optim.Optimizer, got list'):
        fit_linear(mse, x, y, list)
    with pytest.raises(ValueError, match=r'y must have shape \(400,\) like x.s rows, got \(10,\)'):
        fit_linear(mse, x, y[:10], SGD(0.1))
    with pytest.raises(ValueError, match=r'x must have 2 dimension\(s\), got shape \(400,\)'):
        fit_linear(mse, y, y, SGD(0.1))
    with pytest.raises(TypeError, match='steps must be an integer'): fit_linear(mse, x, y, SGD(0.1), steps=2.5)
    with pytest.raises(TypeError, match="progress must be a bool .*got 'no'"): fit_linear(mse, x, y, SGD(0.1), progress='no')
    with pytest.raises(TypeError, match='generator must be a torch.Generator or None, got 0'):
        fit_linear(mse, x, y, SGD(0.1), generator=0)


# ---------------------------------------------------------------- docstrings, help() and the exercises
@pytest.mark.parametrize('name', ['grad_wrt', 'value_with_grad_of', 'straight_through', 'irls_loss'])
def test_help_explains_every_parameter(name):
    import inspect
    import lossnotes.gradtricks as gt
    fn = getattr(gt, name)
    doc = inspect.getdoc(fn)
    for section in ('Parameters\n----------', 'Returns\n-------', 'Examples\n--------'):
        assert section in doc, (name, section)
    params = doc.split('Parameters\n----------')[1].split('Returns')[0]
    for p in inspect.signature(fn).parameters:
        assert f'\n{p} : ' in '\n' + params, (name, p)


def test_docstring_examples_run():
    import lossnotes.gradtricks as gt
    result = doctest.testmod(gt, extraglobs={'torch': torch}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 12 and result.failed == 0


def test_exercises_accept_the_solutions_and_refuse_the_misconceptions():
    from lossnotes.course.exercises import check
    from lossnotes.lessons.gradtricks import EXERCISES
    assert 3 <= len(EXERCISES) <= 5
    e = torch.tensor([-3.0], requires_grad=True)
    g, = torch.autograd.grad((e * e.detach() ** 2).sum(), e)  # the oracle: autograd on the exercise's loss
    assert check('gradtricks/predict-sign', g.item()) and g.item() == 9.0
    for wrong in (-9.0, -3.0, 27.0, 3.0): assert not check('gradtricks/predict-sign', wrong)  # sign, e*sg(e), e**3 whole, |e|
    assert 'cannot be negative' in check('gradtricks/predict-sign', -3.0).hint  # the sign feedback fits every negative answer
    assert str(EXERCISES['predict-sign']['answer']).startswith('sealed:')  # sealed, not recomputed by a function of the module
    cubic = lambda q, t: irls_loss(q, t, p=3.0)
    assert check('gradtricks/cubic-doubling', (grad_wrt(cubic, torch.tensor([6.0]), 0.0) / grad_wrt(cubic, torch.tensor([3.0]), 0.0)).item())
    assert not callable(EXERCISES['cubic-doubling']['answer'])  # sealed, not recomputed by a function of the module
    for wrong in (2.0, 8.0, 16.0): assert not check('gradtricks/cubic-doubling', wrong)  # linear, the value's 2**3, the value's growth squared
    from lossnotes.lessons.data import digits
    x, y, _, _ = digits(); y = y.float()
    sgd = lambda lr, wd: functools.partial(torch.optim.SGD, lr=lr, weight_decay=wd)
    mse = fit_linear(lambda p, t: ((p - t) ** 2).mean(), x, y, sgd(0.05, 0.1), steps=10, progress=False)['params']
    quarter = lambda p, t: ((p - t) * (p - t).detach()).mean() / 2
    assert torch.equal(mse, fit_linear(quarter, x, y, sgd(0.2, 0.025), steps=10, progress=False)['params'])  # the oracle
    assert check('gradtricks/decay-for-quarter', 0.025)
    for wrong in (0.05, 0.1, 0.4): assert not check('gradtricks/decay-for-quarter', wrong)
    assert check('gradtricks/diagnose-curve', 'b')
    for letter in 'acd': assert not check('gradtricks/diagnose-curve', letter)
    e = torch.tensor([-2.0, 1.0], requires_grad=True)  # option b: a negative value and a gradient |e| >= 0
    loss = (e.abs() * e.detach()).mean()
    assert loss.item() < 0 and (torch.autograd.grad(loss, e)[0] >= 0).all()
    offset = fit_linear(lambda p, t: ((p - t) * (p - t).detach()).mean() - 10, x, y, sgd(0.1, 0.0), steps=20, progress=False)
    assert offset['loss'][0] > 0 > offset['loss'][-1] and offset['mae'][-1] < offset['mae'][0]  # option a: negative, but the errors fall


# ---------------------------------------------------------------- plots and the live figure
def test_explorer_parts_controls():
    draw, controls = explorer_parts()
    assert draw is draw_composition
    assert list(controls) == ['p', 'composition']
    assert controls['p'].options == [0.5, 1.0, 1.5, 2.0, 3.0, 4.0] and controls['p'].value == 2.0
    assert controls['composition'].options == list(COMPOSITIONS) and controls['composition'].value == 'e*sg(e)'


@pytest.mark.parametrize('composition', COMPOSITIONS)
@pytest.mark.parametrize('p', [0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
def test_draw_readout_matches_library(p, composition):
    fig = new_figure()
    text = draw_composition(fig, p=p, composition=composition)
    assert len(fig.axes) == 2
    lines = dict(line.split(': ') for line in text.splitlines())
    assert list(lines) == ['loss at e=-1', 'grad at e=-1', 'grad at e=+1', 'points downhill']
    e = torch.tensor([-1.0, 1.0], dtype=F64)
    g = composition_grad(composition, e, p)  # closed form: |1|**(p-2) = 1, so p does not change these
    assert float(lines['grad at e=-1']) == pytest.approx(g[0].item(), abs=5e-4)
    assert float(lines['grad at e=+1']) == pytest.approx(g[1].item(), abs=5e-4)
    right = composition in ('e*e', 'e*sg(e)', '|e|*sg(|e|)')
    assert float(lines['loss at e=-1']) == (1.0 if right else -1.0)
    assert lines['points downhill'] == ('yes' if right else 'no')
    assert text == composition_readout(composition, p)
    red = [l for ax in fig.axes for l in ax.get_lines() if l.get_color() == MISTAKE]
    assert bool(red) == (not right)  # wrong signs are drawn in red, and only then


@pytest.mark.parametrize('composition', COMPOSITIONS)
def test_explorer_moves_p_in_place_with_the_full_readout(composition):
    "A move of p updates the curves, limits and title in place; a background is drawn once per y limits and layer."
    draw, controls = explorer_parts()
    counts = bd.step_through(draw, controls, [dict(p=p) for p in controls['p'].options], composition=composition)
    # from p = 2: to 0.5 (new limits), 1.0 (the same), then 1.5, 2 (the first limits again), 3, 4 (new limits each)
    assert (counts['draw'], counts['update'], counts['limits']) == (1, len(controls['p'].options), 5)
    assert counts['background'] == counts['layers']  # a background per limits and set of artists in the layer, once


@pytest.mark.slow
@pytest.mark.parametrize('composition', [c for c in COMPOSITIONS if c != explorer_parts()[1]['composition'].value])
def test_explorer_fast_frames_are_pixel_for_pixel_full_drawings(composition):
    "Every composition but the teaching default, which tests/test_plotting.py sweeps."
    draw, controls = explorer_parts()
    ex = Explorer(draw, controls)
    ex.values['composition'] = composition
    assert ex.sweep(compare=True) == 0  # every p at this composition, then every composition


def test_plot_composition_draws_autograd_gradient():
    e = torch.linspace(-2, 2, 41, dtype=F64)
    ax = plot_composition('e*sg(e)', 3.0, 'grad', new_figure().subplots(), errors=e)
    purple = [l for l in ax.get_lines() if l.get_label() == 'e*sg(e)'][0]
    torch.testing.assert_close(torch.as_tensor(purple.get_ydata()), composition_grad('e*sg(e)', e, 3.0))
    truth = [l for l in ax.get_lines() if l.get_linestyle() == '--'][0]
    torch.testing.assert_close(torch.as_tensor(truth.get_ydata()), torch.sign(e) * e.abs() ** 2)
    ax = plot_composition('e*sg(|e|)', 2.0, 'value', new_figure().subplots(), errors=e)
    assert all(l.get_color() == MISTAKE for l in ax.get_lines() if l.get_label() in ('e*sg(|e|)', 'wrong sign'))
    red = [l for l in ax.get_lines() if l.get_label() == 'wrong sign'][0]
    y = torch.as_tensor(red.get_ydata())
    assert torch.isnan(y[e >= 0]).all() and torch.equal(y[e < 0], (e * e.abs())[e < 0])
    for name in COMPOSITIONS:  # each composition keeps its colour from the fits figure (MSE olive everywhere)
        ax = plot_composition(name, 2.0, 'grad', new_figure().subplots(), errors=e)
        line = [l for l in ax.get_lines() if l.get_label() == name][0]
        assert line.get_color() == COMPOSITION_COLORS[name]
        assert all(l.get_color() == MSE_COLOR for l in ax.get_lines() if l.get_label().startswith('e*e'))
    with pytest.raises(ValueError, match="what must be 'grad' or 'value', got 'hessian'"):
        plot_composition('e*e', what='hessian', ax=new_figure().subplots())


def test_plot_fits():
    fits = {'e*sg(e)': dict(loss=[3.0, 2.0, 1.0], mae=[2.0, 1.5, 1.0]),
            'e*sg(|e|)': dict(loss=[3.0, -1.0, -5.0], mae=[2.0, 4.0, 8.0])}
    ax = plot_fits(fits, 'loss', new_figure().subplots())
    lines = ax.get_lines()
    assert [l.get_label() for l in lines] == ['e*sg(e)', 'e*sg(|e|)'] and lines[1].get_color() == MISTAKE
    assert list(lines[1].get_ydata()) == [3.0, -1.0, -5.0] and list(lines[0].get_xdata()) == [1, 2, 3]
    ax = plot_fits(fits, 'mae', new_figure().subplots())
    assert list(ax.get_lines()[1].get_ydata()) == [2.0, 4.0, 8.0]
    with pytest.raises(ValueError, match="metric must be 'mae' or 'loss', got 'acc'"):
        plot_fits(fits, 'acc', new_figure().subplots())


# ---------------------------------------------------------------- torch.func
def test_tools_work_under_torch_func_grad_and_vmap():
    from torch.func import grad, vmap
    x = tensor_of((5,), 11)
    torch.testing.assert_close(grad(lambda x: value_with_grad_of(x.abs().mean(), (x ** 2).mean()))(x), 2 * x / 5)
    torch.testing.assert_close(grad(lambda x: straight_through(x, torch.round).pow(2).sum())(x), 2 * torch.round(x))
    batch = tensor_of((4, 5), 12)
    per_row = vmap(grad(lambda r: irls_loss(r, 0.0, p=1.5)))(batch)
    loop = torch.stack([grad_wrt(lambda q, t: irls_loss(q, t, p=1.5), r, 0.0) for r in batch])
    torch.testing.assert_close(per_row, loop, rtol=1e-14, atol=0)
    torch.testing.assert_close(vmap(lambda r: irls_loss(r, 0.0, p=3.0))(batch), (batch.abs() ** 3).mean(1) / 3, rtol=1e-14, atol=0)


def test_an_undetached_target_keeps_its_graph_either_way():
    "autograd.grad(loss, p) runs only the nodes that lead to p: a target made by a network, used undetached or via"
    " grad_wrt, can still be backpropagated afterwards, and the network's gradient is the one backward() gives alone."
    torch.manual_seed(0)
    net, x = torch.nn.Linear(3, 3), torch.randn(4, 3)
    p = torch.randn(4, 3, dtype=torch.float32)
    made = net(x).exp()
    g_undetached, = torch.autograd.grad(((p.requires_grad_() - made) ** 2).mean(), p)  # graph not retained
    g_tool = grad_wrt(lambda q, t: ((q - t) ** 2).mean(), p.detach(), made)
    torch.testing.assert_close(g_tool, g_undetached, rtol=0, atol=0)
    made.sum().backward()  # the network's graph is intact
    w = net.weight.grad.clone()
    net.zero_grad(); net(x).exp().sum().backward()  # the oracle: the same backward on a fresh graph
    torch.testing.assert_close(w, net.weight.grad, rtol=0, atol=0)


@pytest.mark.parametrize('number', [0.0, 0.5, 2])
def test_grad_wrt_accepts_a_number_target_for_torch_losses(number):
    "A number target works with F.mse_loss and F.l1_loss (they need a tensor): the gradient is autograd's at that target."
    pred = torch.tensor([1.0, 2.0, 4.0, -3.0])
    want = 2 * (pred - number) / pred.numel()  # d/dp mean((p - c)^2)
    torch.testing.assert_close(grad_wrt(F.mse_loss, pred, number), want, rtol=0, atol=1e-7)
    torch.testing.assert_close(grad_wrt(F.l1_loss, pred, number), torch.sign(pred - number) / pred.numel(), rtol=0, atol=0)
    p = pred.clone().requires_grad_(True)
    ((p - number) ** 2).mean().backward()  # a hand-written loss: the same gradient as before
    torch.testing.assert_close(grad_wrt(lambda q, t: ((q - t) ** 2).mean(), pred, number), p.grad)


def test_mse_loss_only_warns_on_a_target_that_enlarges_the_loss():
    "F.mse_loss with a (4,) prediction and a (4, 1) target warns and averages a (4, 4) difference; grad_wrt refuses it."
    p, t = torch.tensor([0., 1., 2., 3.]), torch.tensor([0., 1., 2., 3.])
    with pytest.warns(UserWarning, match='Using a target size'):
        v = F.mse_loss(p, t[:, None])
    assert v.item() == pytest.approx(((p[None, :] - t[:, None]) ** 2).mean().item())  # 5/2 (4 x 4 pairs), not 0
    with pytest.raises(ValueError, match=r'target of shape \(4, 1\) does not fit pred of shape \(4,\)'):
        grad_wrt(F.mse_loss, p, t[:, None])
