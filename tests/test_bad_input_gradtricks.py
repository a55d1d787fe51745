"""Bad and edge input to the gradient tools (`grad_wrt`, `value_with_grad_of`, `straight_through`, `irls_loss`).

Every call below either raises a ValueError/TypeError whose message names the argument, or returns a value and a
gradient checked against an oracle: Decimal arithmetic on the closed form for `irls_loss`, autograd on the plain
expression or the closed form for the others."""
import math
from decimal import Decimal, localcontext

import numpy as np
import pytest
import torch

from lossnotes.gradtricks import grad_wrt, irls_loss, straight_through, value_with_grad_of

F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
INF, NAN = math.inf, math.nan
T = torch.tensor
Z3 = torch.zeros(3)


def mse(p, t): return ((p - t) ** 2).mean()


# ---------------------------------------------------------------- errors: type, message, and the argument named
RAISES = [
    # irls_loss: p and eps
    ('irls p=inf', lambda: irls_loss(Z3, Z3, p=INF), ValueError, 'p must be finite, got inf'),
    ('irls p=-inf', lambda: irls_loss(Z3, Z3, p=-INF), ValueError, 'p must be finite, got -inf'),
    ('irls p=nan', lambda: irls_loss(Z3, Z3, p=NAN), ValueError, 'p must not be NaN'),
    ('irls p=0', lambda: irls_loss(Z3, Z3, p=0), ValueError, 'p must be in (0, inf), got 0'),
    ('irls p=-1', lambda: irls_loss(Z3, Z3, p=-1.0), ValueError, 'p must be in (0, inf), got -1.0'),
    ('irls p=True', lambda: irls_loss(Z3, Z3, p=True), TypeError, 'p must be a real number, got True'),
    ('irls p=np.bool_', lambda: irls_loss(Z3, Z3, p=np.bool_(True)), TypeError, 'p must be a real number'),
    ('irls p=str', lambda: irls_loss(Z3, Z3, p='2'), TypeError, "p must be a real number, got '2'"),
    ('irls p=tensor', lambda: irls_loss(Z3, Z3, p=T(2.0)), TypeError, 'p must be a real number, got tensor(2.)'),
    ('irls p=complex', lambda: irls_loss(Z3, Z3, p=2 + 0j), TypeError, 'p must be a real number, got (2+0j)'),
    ('irls p=None', lambda: irls_loss(Z3, Z3, p=None), TypeError, 'p must be a real number, got None'),
    ('irls eps=0', lambda: irls_loss(Z3, Z3, eps=0.0), ValueError, 'eps must be in (0, inf), got 0.0'),
    ('irls eps=inf', lambda: irls_loss(Z3, Z3, eps=INF), ValueError, 'eps must be finite, got inf'),
    ('irls eps<0', lambda: irls_loss(Z3, Z3, eps=-1e-6), ValueError, 'eps must be in (0, inf), got -1e-06'),
    ('irls eps=nan', lambda: irls_loss(Z3, Z3, eps=NAN), ValueError, 'eps must not be NaN'),
    # irls_loss: pred
    ('irls pred=ndarray', lambda: irls_loss(np.zeros(3), Z3), TypeError, 'pred must be a torch.Tensor'),
    ('irls pred=np.float64', lambda: irls_loss(np.float64(1.0), 0.0), TypeError, 'pred must be a torch.Tensor'),
    ('irls pred=float', lambda: irls_loss(1.0, 0.0), TypeError, 'pred must be a torch.Tensor, got 1.0'),
    ('irls pred=list', lambda: irls_loss([1.0, 2.0], 0.0), TypeError, 'pred must be a torch.Tensor, got [1.0, 2.0]'),
    ('irls pred=int64', lambda: irls_loss(torch.arange(3), Z3), TypeError, 'pred must have a floating-point dtype, got torch.int64'),
    ('irls pred=bool', lambda: irls_loss(T([True, False]), 0.0), TypeError, 'pred must have a floating-point dtype, got torch.bool'),
    ('irls pred=complex', lambda: irls_loss(torch.ones(3, dtype=torch.complex64), Z3), TypeError, 'pred must be real, got a complex tensor'),
    ('irls pred empty', lambda: irls_loss(torch.zeros(0), 0.0), ValueError, 'pred must have at least one element, got shape (0,)'),
    ('irls pred (2, 0)', lambda: irls_loss(torch.zeros(2, 0), torch.zeros(2, 0)), ValueError, 'pred must have at least one element, got shape (2, 0)'),
    # irls_loss: target
    ('irls target=complex', lambda: irls_loss(Z3, torch.zeros(3, dtype=torch.complex64)), TypeError, 'target must be real'),
    ('irls target=1j', lambda: irls_loss(Z3, 1j), TypeError, 'target must be a real tensor or number, got 1j'),
    ('irls target=ndarray', lambda: irls_loss(Z3, np.zeros(3)), TypeError, 'target must be a real tensor or number'),
    ('irls target=list', lambda: irls_loss(Z3, [0.0, 0.0, 0.0]), TypeError, 'target must be a real tensor or number, got [0.0, 0.0, 0.0]'),
    ('irls target=None', lambda: irls_loss(Z3, None), TypeError, 'target must be a real tensor or number, got None'),
    ('irls target=True', lambda: irls_loss(Z3, True), TypeError, 'target must be a real tensor or number, got True'),
    ('irls target=np.bool_', lambda: irls_loss(Z3, np.bool_(True)), TypeError, 'target must be a real tensor or number'),
    ('irls target=np.timedelta64', lambda: irls_loss(Z3, np.timedelta64(1, 's')), TypeError, "target must be a real tensor or number, got np.timedelta64(1,'s') of type timedelta64"),
    ('irls target long list', lambda: irls_loss(Z3, [0.0] * 10**5), TypeError, 'target must be a real tensor or number, got [0.0, 0.0, 0.0'),
    ('irls target=nan', lambda: irls_loss(Z3, NAN), ValueError, 'target must not be NaN'),
    ('irls shapes (3,) (2,)', lambda: irls_loss(Z3, torch.zeros(2)), ValueError, 'pred of shape (3,) and target of shape (2,) do not broadcast'),
    ('irls (3,1) with (3,)', lambda: irls_loss(torch.zeros(3, 1), Z3), ValueError, 'target of shape (3,) would broadcast pred of shape (3, 1) to (3, 3)'),
    ('irls (3,) with (2,3)', lambda: irls_loss(Z3, torch.zeros(2, 3)), ValueError, 'target of shape (2, 3) would broadcast pred of shape (3,) to (2, 3)'),
    ('irls target on meta', lambda: irls_loss(Z3, torch.zeros(3, device='meta')), ValueError, 'target is on device meta but pred is on device cpu'),
    ('irls pred on meta', lambda: irls_loss(torch.zeros(3, device='meta'), Z3), ValueError, 'target is on device cpu but pred is on device meta'),
    # grad_wrt
    ('grad_wrt loss_fn=str', lambda: grad_wrt('mse', Z3, Z3), TypeError, "loss_fn must be callable, got 'mse'"),
    ('grad_wrt loss_fn=None', lambda: grad_wrt(None, Z3, Z3), TypeError, 'loss_fn must be callable, got None'),
    ('grad_wrt returns list', lambda: grad_wrt(lambda p, t: [1.0], Z3, Z3), TypeError, 'loss_fn must return a tensor, got [1.0]'),
    ('grad_wrt returns float', lambda: grad_wrt(lambda p, t: 1.0, Z3, Z3), TypeError, 'loss_fn must return a tensor, got 1.0'),
    ('grad_wrt returns complex', lambda: grad_wrt(lambda p, t: (p * 1j).sum(), Z3, Z3), TypeError, 'loss_fn must return a real tensor, got dtype torch.complex64'),
    ('grad_wrt returns (3,)', lambda: grad_wrt(lambda p, t: p - t, Z3, Z3), ValueError, 'loss_fn must return a single-element tensor, got shape (3,)'),
    ('grad_wrt returns empty', lambda: grad_wrt(lambda p, t: p[:0], Z3, Z3), ValueError, 'loss_fn must return a single-element tensor, got shape (0,)'),
    ('grad_wrt returns (1, 2)', lambda: grad_wrt(lambda p, t: p[:2].view(1, 2), Z3, Z3), ValueError, 'got shape (1, 2)'),
    ('grad_wrt pred=ndarray', lambda: grad_wrt(mse, np.zeros(3), Z3), TypeError, 'pred must be a torch.Tensor'),
    ('grad_wrt pred=np.float32', lambda: grad_wrt(mse, np.float32(1.0), Z3), TypeError, 'pred must be a torch.Tensor'),
    ('grad_wrt pred=int32', lambda: grad_wrt(mse, torch.arange(3, dtype=torch.int32), Z3), TypeError, 'pred must have a floating-point dtype, got torch.int32'),
    ('grad_wrt pred=bool', lambda: grad_wrt(mse, T([True]), Z3), TypeError, 'pred must have a floating-point dtype, got torch.bool'),
    ('grad_wrt pred=complex128', lambda: grad_wrt(mse, torch.zeros(3, dtype=torch.complex128), Z3), TypeError, 'pred must be real'),
    ('grad_wrt target=None', lambda: grad_wrt(mse, Z3, None), TypeError, 'target must be a torch.Tensor or a real number, got None of type NoneType'),
    ('grad_wrt target=str', lambda: grad_wrt(mse, Z3, 'zeros'), TypeError, "target must be a torch.Tensor or a real number, got 'zeros' of type str"),
    ('grad_wrt target=bool', lambda: grad_wrt(mse, Z3, True), TypeError, 'target must be a torch.Tensor or a real number, got True'),
    ('grad_wrt target=list', lambda: grad_wrt(mse, Z3, [0.0, 0.0, 0.0]), TypeError, 'target must be a torch.Tensor or a real number, got [0.0, 0.0, 0.0] of type list'),
    ('grad_wrt target=np.timedelta64', lambda: grad_wrt(mse, Z3, np.timedelta64(1, 's')), TypeError, "target must be a torch.Tensor or a real number, got np.timedelta64(1,'s') of type timedelta64"),
    ('grad_wrt target long list', lambda: grad_wrt(mse, Z3, [0.0] * 10**5), TypeError, 'target must be a torch.Tensor or a real number, got [0.0, 0.0, 0.0'),
    ('grad_wrt returns ndarray', lambda: grad_wrt(lambda p, t: np.zeros((64, 10)), Z3, Z3), TypeError, 'loss_fn must return a tensor, got an array of shape (64, 10) and dtype float64 of type ndarray'),
    ('grad_wrt target complex', lambda: grad_wrt(mse, Z3, torch.zeros(3, dtype=torch.complex64)), TypeError, 'target must be real'),
    ('grad_wrt target (2,)', lambda: grad_wrt(mse, Z3, torch.zeros(2)), ValueError, 'target of shape (2,) does not fit pred of shape (3,)'),
    ('grad_wrt target (3,1) enlarges', lambda: grad_wrt(mse, Z3, torch.zeros(3, 1)), ValueError, "target of shape (3, 1) does not fit pred of shape (3,): it must broadcast to pred's shape without enlarging it"),
    ('grad_wrt target (4,) for (4,1)', lambda: grad_wrt(mse, torch.zeros(4, 1), torch.zeros(4)), ValueError, 'target of shape (4,) does not fit pred of shape (4, 1)'),
    ('grad_wrt class indices too long', lambda: grad_wrt(torch.nn.functional.cross_entropy, torch.zeros(4, 3), torch.zeros(5, dtype=torch.long)), ValueError, 'as an integer tensor of class indices, have shape (4,) or (4,)'),
    ('grad_wrt int (4,1) target for (4,3) logits', lambda: grad_wrt(torch.nn.functional.cross_entropy, torch.zeros(4, 3), torch.zeros(4, 1, dtype=torch.long)), ValueError, 'target of shape (4, 1) holds integers and would broadcast over the 3 columns of pred of shape (4, 3): as class indices it needs shape (4,) (target.squeeze(1))'),
    ('vwg shapes (3,) (3,1) enlarge', lambda: value_with_grad_of(Z3, torch.zeros(3, 1)), ValueError, 'value of shape (3,) and surrogate of shape (3, 1) would broadcast to (3, 3), larger than both'),
    ('vwg shapes (3,1) (2,) enlarge', lambda: value_with_grad_of(torch.zeros(3, 1), torch.zeros(2)), ValueError, 'value of shape (3, 1) and surrogate of shape (2,) would broadcast to (3, 2), larger than both'),
    ('grad_wrt target on meta', lambda: grad_wrt(mse, Z3, torch.zeros(3, device='meta')), ValueError, 'target is on device meta but pred is on device cpu'),
    # value_with_grad_of
    ('vwg value=float', lambda: value_with_grad_of(1.0, Z3), TypeError, 'value must be a torch.Tensor, got 1.0'),
    ('vwg value=ndarray', lambda: value_with_grad_of(np.ones(3), Z3), TypeError, 'value must be a torch.Tensor'),
    ('vwg surrogate=np.float64', lambda: value_with_grad_of(Z3, np.float64(1.0)), TypeError, 'surrogate must be a torch.Tensor'),
    ('vwg surrogate=None', lambda: value_with_grad_of(Z3, None), TypeError, 'surrogate must be a torch.Tensor, got None'),
    ('vwg value complex', lambda: value_with_grad_of(torch.ones(3, dtype=torch.complex64), Z3), TypeError, 'value must be real'),
    ('vwg surrogate complex', lambda: value_with_grad_of(Z3, torch.ones(3, dtype=torch.complex64)), TypeError, 'surrogate must be real'),
    ('vwg surrogate int', lambda: value_with_grad_of(Z3, torch.arange(3)), TypeError, 'surrogate must have a floating-point dtype, got torch.int64'),
    ('vwg surrogate bool', lambda: value_with_grad_of(Z3, T([True, False, True])), TypeError, 'surrogate must have a floating-point dtype, got torch.bool'),
    ('vwg shapes (3,) (2,)', lambda: value_with_grad_of(Z3, torch.zeros(2)), ValueError, 'value of shape (3,) and surrogate of shape (2,) do not broadcast'),
    ('vwg shapes (2,3) (3,2)', lambda: value_with_grad_of(torch.zeros(2, 3), torch.zeros(3, 2)), ValueError, 'value of shape (2, 3) and surrogate of shape (3, 2) do not broadcast'),
    ('vwg value on meta', lambda: value_with_grad_of(torch.zeros(3, device='meta'), Z3), ValueError, 'value is on device meta but surrogate is on device cpu'),
    ('vwg surrogate on meta', lambda: value_with_grad_of(Z3, torch.zeros(3, device='meta')), ValueError, 'value is on device cpu but surrogate is on device meta'),
    # straight_through
    ('st x=ndarray', lambda: straight_through(np.ones(3), torch.round), TypeError, 'x must be a torch.Tensor'),
    ('st x=float', lambda: straight_through(1.5, torch.round), TypeError, 'x must be a torch.Tensor, got 1.5'),
    ('st x=int', lambda: straight_through(torch.arange(3), torch.round), TypeError, 'x must have a floating-point dtype, got torch.int64'),
    ('st x=bool', lambda: straight_through(T([True]), torch.round), TypeError, 'x must have a floating-point dtype, got torch.bool'),
    ('st x=complex', lambda: straight_through(torch.ones(2, dtype=torch.complex64), torch.round), TypeError, 'x must be real'),
    ('st fn=str', lambda: straight_through(Z3, 'round'), TypeError, "fn must be callable, got 'round'"),
    ('st fn=None', lambda: straight_through(Z3, None), TypeError, 'fn must be callable, got None'),
    ('st fn returns list', lambda: straight_through(Z3, lambda t: t.tolist()), TypeError, 'fn must return a torch.Tensor, got [0.0, 0.0, 0.0] of type list'),
    ('st fn returns ndarray', lambda: straight_through(Z3, lambda t: t.numpy()), TypeError, 'fn must return a torch.Tensor, got an array of shape (3,) and dtype float32 of type ndarray'),
    ('st fn returns complex', lambda: straight_through(Z3, lambda t: t * 1j), TypeError, 'fn must return a real tensor, got dtype torch.complex64'),
    ('st fn reduces', lambda: straight_through(Z3, lambda t: t.sum()), ValueError, 'fn must keep the shape of x (3,), got ()'),
    ('st fn reshapes', lambda: straight_through(torch.zeros(4), lambda t: t.view(2, 2)), ValueError, 'fn must keep the shape of x (4,), got (2, 2)'),
    ('st fn moves device', lambda: straight_through(Z3, lambda t: t.to('meta')), ValueError, 'fn must keep the device of x (cpu), got meta'),
]


@pytest.mark.parametrize('call, exc, message', [c[1:] for c in RAISES], ids=[c[0] for c in RAISES])
def test_bad_input_raises_naming_the_argument(call, exc, message):
    with pytest.raises((TypeError, ValueError)) as info: call()
    assert type(info.value) is exc, f'{type(info.value).__name__}: {info.value}'
    assert message in str(info.value), str(info.value)
    assert len(str(info.value)) < 400, str(info.value)  # a long list or a big array is cut or described, not printed


# ---------------------------------------------------------------- irls_loss: value and gradient against an oracle
def _dec(x: float) -> Decimal:
    return Decimal(x) if math.isfinite(x) else Decimal('NaN') if math.isnan(x) else Decimal('Infinity') * (1 if x > 0 else -1)


def _to_float(d: Decimal) -> float:
    return math.nan if d.is_nan() else float(d)


def irls_oracle(errors: list, p: float, eps: float = 1e-6) -> tuple:
    "Value mean(|e|**p) / p and gradient (per error, with respect to pred) in 60-digit Decimal arithmetic, closed form."
    n = len(errors)
    with localcontext() as ctx:
        ctx.prec, ctx.Emax, ctx.Emin = 60, 10 ** 6, -10 ** 6
        for signal in list(ctx.traps): ctx.traps[signal] = False  # overflow gives Infinity, 0 * inf gives NaN
        P, E = _dec(p), [_dec(e) for e in errors]
        value = sum((abs(e) ** P for e in E), Decimal(0)) / n / P
        grads = []
        for e in E:
            a, s = abs(e), (Decimal(0) if e.is_zero() else Decimal(1).copy_sign(e)) if not e.is_nan() else Decimal('NaN')
            g = s * a ** (P - 1) if (p >= 2 or a >= _dec(eps)) else s * a * _dec(eps) ** (P - 2)
            grads.append(g / n)
        return _to_float(value), [_to_float(g) for g in grads]


TOL = {F16: dict(rtol=1e-3, atol=0), BF16: dict(rtol=8e-3, atol=0), F32: dict(rtol=2e-6, atol=0), F64: dict(rtol=1e-13, atol=0)}

IRLS_VALUES = [  # id, pred values, pred dtype, target, p
    ('float16 300, p=2 (e**2 overflows float16)', [300.0], F16, 0.0, 2.0),
    ('bfloat16 300, p=2', [300.0], BF16, 0.0, 2.0),
    ('float16, value beyond float16, gradient within', [300.0, -200.0], F16, 0.0, 3.0),
    ('float16 tiny errors, p=0.5', [1e-3, -2e-3, 0.0], F16, 0.0, 0.5),
    ('float32 1e20, p=2 (value overflows, gradient fits)', [1e20], F32, 0.0, 2.0),
    ('float32 3e38, p=1 (sum overflows, mean fits)', [3e38, 3e38], F32, 0.0, 1.0),
    ('float64 1e308 twice, p=1', [1e308, 1e308], F64, 0.0, 1.0),
    ('float64 +-1e308, p=2', [1e308, -1e308], F64, 0.0, 2.0),
    ('float64 1e-308, p=2', [1e-308, -1e-308], F64, 0.0, 2.0),
    ('float64 subnormal, p=1 (inside the eps floor)', [5e-324, 1.0], F64, 0.0, 1.0),
    ('-0.0 error, p=1', [-0.0, 2.0], F32, 0.0, 1.0),
    ('-0.0 error, p=3', [-0.0, 2.0], F64, 0.0, 3.0),
    ('NaN prediction', [NAN, 1.0], F32, 0.0, 1.0),
    ('+inf prediction, p=1', [INF, -2.0], F32, 0.0, 1.0),
    ('+inf prediction, p=0.5', [INF, -2.0], F64, 0.0, 0.5),
    ('-inf prediction, p=2', [-INF, 1.0], F64, 0.0, 2.0),
    ('+inf prediction, p=3', [INF, 1.0], F32, 0.0, 3.0),
    ('inf target', [1.0, 2.0], F64, INF, 1.5),
    ('p = 1e-308', [2.0, 0.5], F64, 0.0, 1e-308),
    ('p = 1e308, errors below 1', [0.5, -0.25], F64, 0.0, 1e308),
    ('p = 1e308, error 1', [1.0], F64, 0.0, 1e308),
    ('numpy float target', [1.0, 3.0], F32, np.float32(0.5), 1.0),
    ('numpy int target', [1.0, 3.0], F64, np.int64(2), 2.0),
    ('numpy float p', [1.0, -3.0], F64, 0.0, np.float64(1.5)),
    ('int target tensor', [1.0, 3.0, -2.0], F32, T([1, 2, 3]), 1.0),
    ('bool target tensor', [1.0, 0.0, 0.5], F32, T([True, False, True]), 2.0),
    ('float64 target with float32 pred', [1.0, 3.0], F32, T([0.5, 0.5], dtype=F64), 1.0),
    ('0-d target tensor', [1.0, 3.0], F32, T(2.0), 4.0),
    ('0-d float64 target with float32 pred', [1.0, 3.0], F32, T(0.5, dtype=F64), 1.0),  # stays float32, as pred - target
    ('0-d pred and target', 1.5, F64, T(0.5, dtype=F64), 1.0),
]


@pytest.mark.parametrize('values, dtype, target, p', [c[1:] for c in IRLS_VALUES], ids=[c[0] for c in IRLS_VALUES])
def test_irls_value_and_gradient_match_the_oracle(values, dtype, target, p):
    pred = T(values, dtype=dtype, requires_grad=True)
    loss = irls_loss(pred, target, p=p)
    t = target if isinstance(target, torch.Tensor) else torch.tensor(float(target), dtype=dtype)  # a number takes pred's dtype
    out_dtype = torch.result_type(pred, t) if t.is_floating_point() else dtype  # pred - target's dtype (0-d rule)
    assert loss.shape == () and loss.dtype == out_dtype
    # the oracle sees the errors as irls_loss does: pred and target in the output dtype (float32 for half)
    cdt = F32 if out_dtype in (F16, BF16) else out_dtype
    e = (pred.detach().to(cdt) - t.to(cdt)).double().reshape(-1).tolist()
    value, grads = irls_oracle(e, float(p))
    torch.testing.assert_close(loss.detach(), T(value, dtype=F64).to(out_dtype), equal_nan=True, **TOL[out_dtype])
    g, = torch.autograd.grad(loss, pred)
    assert g.dtype == dtype and g.shape == pred.shape
    torch.testing.assert_close(g.reshape(-1), T(grads, dtype=F64).to(dtype), equal_nan=True, **TOL[dtype])


def test_irls_float16_300_shows_45000_not_nan():
    pred = T([300.0], dtype=F16, requires_grad=True)
    loss = irls_loss(pred, 0.0, p=2)
    assert loss.item() == T(45000.0, dtype=F16).item() == 44992.0
    loss.backward()
    assert pred.grad.item() == 300.0


def test_irls_without_requires_grad_returns_a_plain_value():
    pred = T([1.0, -3.0])
    loss = irls_loss(pred, 0.0, p=1)
    assert not loss.requires_grad and loss.item() == 2.0


def test_irls_non_contiguous_and_expanded():
    base = torch.arange(6, dtype=F64).reshape(2, 3).requires_grad_()
    pred = base.t()  # (3, 2), not contiguous
    target = torch.ones(2, 3, dtype=F64).t()
    assert not pred.is_contiguous()
    loss = irls_loss(pred, target, p=1.5)
    e = (pred - target).detach()
    torch.testing.assert_close(loss, (e.abs() ** 1.5).mean() / 1.5, rtol=1e-14, atol=0)
    loss.backward()
    expected = (torch.sign(e) * e.abs().clamp_min(1e-6) ** -0.5 * e.abs() / 6).t()
    torch.testing.assert_close(base.grad, expected, rtol=1e-14, atol=1e-15)
    leaf = T([2.0], dtype=F64, requires_grad=True)
    loss = irls_loss(leaf.expand(4), T([0.0, 1.0, 3.0, 4.0], dtype=F64).expand(4), p=2)  # stride-0 pred
    loss.backward()
    torch.testing.assert_close(loss, T((4 + 1 + 1 + 4) / 4 / 2, dtype=F64))
    torch.testing.assert_close(leaf.grad, T([(2 + 1 - 1 - 2) / 4], dtype=F64))  # the expanded copies' gradients summed


def test_irls_on_the_meta_device():
    pred = torch.zeros(5, device='meta', requires_grad=True)
    for target in (torch.zeros(5, device='meta'), T(1.0), 0.5):  # a 0-d CPU target moves, as torch's operators allow
        loss = irls_loss(pred, target, p=1.5)
        assert loss.device.type == 'meta' and loss.shape == () and loss.requires_grad


def test_irls_matches_autograd_on_the_plain_expression_in_float64():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(7, 3, generator=g, dtype=F64), torch.randn(7, 3, generator=g, dtype=F64)
    for p in (0.3, 1.0, 1.7, 2.0, 2.5, 4.0):
        plain = lambda q, t: ((q - t).abs() ** p).mean() / p
        torch.testing.assert_close(irls_loss(pred, target, p), plain(pred, target), rtol=1e-14, atol=0)
        torch.testing.assert_close(grad_wrt(lambda q, t: irls_loss(q, t, p), pred, target), grad_wrt(plain, pred, target),
                                   rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- value_with_grad_of
def _vwg(value, surrogate_of, x):
    "value_with_grad_of(value, surrogate_of(x)), its value, and the gradient of its sum with respect to x."
    out = value_with_grad_of(value, surrogate_of(x))
    g, = torch.autograd.grad(out.sum(), x, allow_unused=True)
    return out, g


VWG_VALUES = [  # id, value, surrogate as a function of x, x, expected gradient (None: x gets no gradient)
    ('surrogate inf', T(1.0), lambda x: 2 * x, T(INF, requires_grad=True), T(2.0)),
    ('surrogate nan', T(1.0), lambda x: 3 * x, T(NAN, requires_grad=True), T(3.0)),
    ('surrogate -inf, value 0', T(0.0), lambda x: x ** 2, T(-INF, requires_grad=True), T(-INF)),
    ('value nan', T(NAN), lambda x: x, T(1.0, requires_grad=True), T(1.0)),
    ('value inf', T(INF), lambda x: x, T(1.0, requires_grad=True), T(1.0)),
    ('value 1e308', T(1e308, dtype=F64), lambda x: x * 1e-308, T(1.0, dtype=F64, requires_grad=True), T(1e-308, dtype=F64)),
    ('value 5e-324', T(5e-324, dtype=F64), lambda x: x, T(1e308, dtype=F64, requires_grad=True), T(1.0, dtype=F64)),
    ('value float16 max', T(65504.0, dtype=F16), lambda x: x * 2, T(1.0, dtype=F16, requires_grad=True), T(2.0, dtype=F16)),
    ('int value, float surrogate', T([1, 2]), lambda x: x * 5, T([0.0, 0.0], requires_grad=True), T([5.0, 5.0])),
    ('bool value', T([True, False]), lambda x: x, T([0.5, 0.5], requires_grad=True), T([1.0, 1.0])),
    ('float64 value, float32 surrogate', T(0.1, dtype=F64), lambda x: x * 4, T(1.0, requires_grad=True), T(4.0)),
    ('broadcast (3,2) with (2,)', T([[5.0, 5.0], [6.0, 6.0], [7.0, 7.0]]), lambda x: 3 * x, T([1.0, 2.0], requires_grad=True), T([9.0, 9.0])),
    ('0-d surrogate, (3,) value', T([1.0, 2.0, 3.0]), lambda x: x * x, T(2.0, requires_grad=True), T(12.0)),
    ('expanded surrogate', T([1.0, 2.0, 3.0]), lambda x: x.expand(3), T([4.0], requires_grad=True), T([3.0])),
    ('non-contiguous value', torch.arange(6.0).reshape(2, 3).t(), lambda x: x, torch.zeros(3, 2, requires_grad=True), torch.ones(3, 2)),
    ('empty', torch.zeros(0), lambda x: x * 2, torch.zeros(0, requires_grad=True), torch.zeros(0)),
    ('value with its own graph', T([2.0]) * T([3.0], requires_grad=True), lambda x: x, T([1.0], requires_grad=True), T([1.0])),
    ('-0.0 value', T(-0.0), lambda x: x, T(1.0, requires_grad=True), T(1.0)),
]


@pytest.mark.parametrize('value, surrogate_of, x, grad', [c[1:] for c in VWG_VALUES], ids=[c[0] for c in VWG_VALUES])
def test_value_with_grad_of_value_is_exact_and_gradient_is_the_surrogates(value, surrogate_of, x, grad):
    out, g = _vwg(value, surrogate_of, x)
    s = surrogate_of(x)
    shape = torch.broadcast_shapes(value.shape, s.shape)
    assert out.shape == shape and out.dtype == torch.promote_types(value.dtype, s.dtype)
    expected = value.detach().to(out.dtype).expand(shape)
    torch.testing.assert_close(out.detach(), expected, rtol=0, atol=0, equal_nan=True)  # bit for bit
    assert torch.equal(torch.signbit(out.detach()), torch.signbit(expected))  # -0.0 stays -0.0
    # oracle for the gradient: autograd on the surrogate alone, with the same upstream gradient (ones)
    ref, = torch.autograd.grad(s.expand(shape).sum(), x) if s.requires_grad else (None,)
    torch.testing.assert_close(g, ref, equal_nan=True)
    torch.testing.assert_close(g, grad.to(g.dtype), equal_nan=True)


def test_value_with_grad_of_leaves_the_values_graph_alone():
    w = T([3.0], requires_grad=True)
    x = T([1.0], requires_grad=True)
    value_with_grad_of(2 * w, 5 * x).sum().backward()
    assert w.grad is None and x.grad.tolist() == [5.0]


def test_value_with_grad_of_without_requires_grad_and_on_meta():
    out = value_with_grad_of(T(1.0), T(INF))
    assert out.item() == 1.0 and not out.requires_grad
    out = value_with_grad_of(T(2.0), torch.zeros(3, device='meta', requires_grad=True))  # 0-d CPU value moves
    assert out.device.type == 'meta' and out.shape == (3,) and out.requires_grad


# ---------------------------------------------------------------- straight_through
ST_VALUES = [  # id, x, fn
    ('inf and round', T([INF, 1.4]), torch.round),
    ('-inf, nan and round', T([-INF, NAN, -2.6]), torch.round),
    ('-0.0 and sign', T([-0.0, 0.0, -3.0]), torch.sign),
    ('float16', T([0.4, 1.6, 65504.0], dtype=F16), torch.round),
    ('bfloat16', T([0.4, 1.6], dtype=BF16), torch.floor),
    ('bool result', T([-1.0, 0.5, 2.0]), lambda t: t > 0),
    ('float64 result from float32 x', T([0.25, 1.75]), lambda t: t.double().round()),
    ('1e308 and 1e-308', T([1e308, 1e-308, 5e-324], dtype=F64), torch.round),
    ('non-contiguous', torch.arange(6.0).reshape(2, 3).t() / 4, torch.round),
    ('empty', torch.zeros(0, 2), torch.round),
    ('0-d', T(2.5), torch.round),
]


@pytest.mark.parametrize('x, fn', [c[1:] for c in ST_VALUES], ids=[c[0] for c in ST_VALUES])
def test_straight_through_forward_is_fn_backward_is_identity(x, fn):
    leaf = x.clone().requires_grad_()
    y = straight_through(leaf, fn)
    expected = fn(x)
    assert y.shape == x.shape and y.dtype == torch.promote_types(expected.dtype, x.dtype)
    torch.testing.assert_close(y.detach(), expected.to(y.dtype), rtol=0, atol=0, equal_nan=True)
    assert torch.equal(torch.signbit(y.detach()), torch.signbit(expected.to(y.dtype)))
    up = torch.arange(1.0, x.numel() + 1).reshape(x.shape).to(y.dtype)
    g, = torch.autograd.grad(y, leaf, grad_outputs=up)
    torch.testing.assert_close(g, up.to(x.dtype), rtol=0, atol=0)  # oracle: the identity


def test_straight_through_expanded_input_and_meta():
    leaf = T([1.3], requires_grad=True)
    y = straight_through(leaf.expand(3), torch.round)
    y.sum().backward()
    assert y.tolist() == [1.0, 1.0, 1.0] and leaf.grad.tolist() == [3.0]
    y = straight_through(torch.zeros(4, device='meta', requires_grad=True), torch.round)
    assert y.device.type == 'meta' and y.shape == (4,) and y.requires_grad


# ---------------------------------------------------------------- grad_wrt
GRAD_VALUES = [  # id, pred, target, loss_fn, closed form of the gradient as a function of (pred, target)
    ('float16 pred', T([1.0, -2.0, 3.0], dtype=F16), torch.zeros(3, dtype=F16), mse, lambda p, t: 2 * (p - t) / 3),
    ('bfloat16 pred', T([1.0, -2.0], dtype=BF16), 0.0, mse, lambda p, t: (p - t)),
    ('0-d pred', T(3.0, dtype=F64), T(1.0, dtype=F64), mse, lambda p, t: 2 * (p - t)),
    ('non-contiguous pred', torch.arange(6.0, dtype=F64).reshape(2, 3).t(), 1.0, mse, lambda p, t: 2 * (p - t) / 6),
    ('expanded pred', T([2.0], dtype=F64).expand(4), T([0.0, 1.0, 2.0, 3.0], dtype=F64), mse, lambda p, t: (p - t) / 2),
    ('NaN in pred', T([NAN, 1.0], dtype=F64), 0.0, mse, lambda p, t: p - t),
    ('inf in pred', T([INF, 1.0], dtype=F64), 0.0, lambda p, t: (p - t).sum(), lambda p, t: torch.ones_like(p)),
    ('1e308 in pred', T([1e308, 1.0], dtype=F64), 0.0, lambda p, t: ((p - t) ** 2).sum(), lambda p, t: 2 * (p - t)),
    ('1e-308 in pred', T([1e-308, -1e-308], dtype=F64), 0.0, lambda p, t: ((p - t) ** 2).sum(), lambda p, t: 2 * (p - t)),
    ('empty pred', torch.zeros(0), torch.zeros(0), lambda p, t: (p - t).sum(), lambda p, t: torch.zeros(0)),
    ('integer-valued loss', T([1.0, 2.0]), 0.0, lambda p, t: (p > t).sum(), lambda p, t: torch.zeros(2)),
    ('loss of shape (1,)', T([1.0, 2.0], dtype=F64), 0.0, lambda p, t: (p * p).sum().reshape(1), lambda p, t: 2 * p),
    ('class indices', T([[2.0, 0.5, -1.0]], dtype=F64), T([2]), torch.nn.functional.cross_entropy,
     lambda p, t: p.softmax(1) - torch.nn.functional.one_hot(t, 3).to(p.dtype)),
    ('numpy scalar target', T([1.0, 3.0], dtype=F64), np.float64(1.0), mse, lambda p, t: (p - float(t))),
    ('classes last (B, T, C) with (B, T)', T([[[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]], dtype=F64), T([[0, 2]]),
     lambda p, t: torch.nn.functional.cross_entropy(p.view(-1, 3), t.view(-1)),
     lambda p, t: (p.softmax(-1) - torch.nn.functional.one_hot(t, 3).to(p.dtype)) / 2),
    ('classes in dim 1 (N, C, L) with (N, L)', T([[[2.0, 0.1], [0.5, 0.2], [-1.0, 0.3]]], dtype=F64), T([[0, 2]]),
     torch.nn.functional.cross_entropy, lambda p, t: (p.softmax(1) - torch.nn.functional.one_hot(t, 3).movedim(-1, 1).to(p.dtype)) / 2),
    ('0-d CPU target', T([1.0, 3.0], dtype=F64), T(1.0, dtype=F64), mse, lambda p, t: (p - t)),
    ('pred requiring grad, in a graph', T([1.0, 2.0], requires_grad=True) * 2, T([0.0, 0.0]), mse, lambda p, t: (p - t)),
]


@pytest.mark.parametrize('pred, target, loss_fn, closed', [c[1:] for c in GRAD_VALUES], ids=[c[0] for c in GRAD_VALUES])
def test_grad_wrt_matches_the_closed_form(pred, target, loss_fn, closed):
    g = grad_wrt(loss_fn, pred, target)
    assert g.shape == pred.shape and g.dtype == pred.dtype and not g.requires_grad
    p = pred.detach()
    want = closed(p.double(), target.double() if isinstance(target, torch.Tensor) and target.is_floating_point() else target)
    torch.testing.assert_close(g, want.to(g.dtype), equal_nan=True, **TOL[g.dtype] if g.dtype != F64 else dict(rtol=1e-14, atol=0))


def test_grad_wrt_on_the_meta_device():
    g = grad_wrt(mse, torch.zeros(2, 3, device='meta'), torch.zeros(2, 3, device='meta'))
    assert g.device.type == 'meta' and g.shape == (2, 3)


def test_the_bad_input_table_is_large_enough():
    n = len(RAISES) + len(IRLS_VALUES) + len(VWG_VALUES) + len(ST_VALUES) + len(GRAD_VALUES)
    assert len(RAISES) >= 60 and n >= 120, n


@pytest.mark.slow
def test_tools_compile_without_graph_breaks():
    "The autograd Function behind the tools traces whole under torch.compile(fullgraph=True); values and gradients match eager."
    torch._dynamo.reset()
    x = torch.randn(16, generator=torch.Generator().manual_seed(0), dtype=F64, requires_grad=True)
    t = torch.randn(16, generator=torch.Generator().manual_seed(1), dtype=F64)
    calls = [lambda x: irls_loss(x, t, p=1.5), lambda x: straight_through(x, torch.round) * 3,
             lambda x: value_with_grad_of(x.abs().mean(), (x ** 2).mean())]
    for fn in calls:
        compiled = torch.compile(fn, fullgraph=True, backend='aot_eager')
        out, ref = compiled(x), fn(x)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        g, = torch.autograd.grad(out.sum(), x)
        g_ref, = torch.autograd.grad(ref.sum(), x)
        torch.testing.assert_close(g, g_ref, rtol=0, atol=0)
