"""Bad and edge input to `soft_accuracy`, `mse_on_probabilities` and `check_loss`, one table row per call.

Each row either raises a ValueError/TypeError whose message names the argument (and says what was received),
or returns a result checked against an oracle: PyTorch itself (`F.softmax`, `F.cross_entropy`) or a closed form.
"""
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossnotes.losscheck import check_loss, mse_on_probabilities, soft_accuracy

G = torch.Generator().manual_seed(0)
Z = 2 * torch.randn(6, 3, generator=G)  # (N, C) logits
Y = torch.tensor([0, 2, 1, 2, 0, 1])  # (N,) class indices
P = 1 + torch.rand(8, generator=G)  # regression predictions
T = P + 0.1 * torch.randn(8, generator=G)  # regression targets
Q = F.softmax(torch.randn(6, 3, generator=G), 1)  # (N, C) class probabilities
INF, NAN = math.inf, math.nan


def soft_oracle(z, y, t=1.0):
    "Mean softmax(z / T) probability of the target, in float64, from PyTorch's softmax."
    return F.softmax(z.double() / t, dim=1).gather(1, y.long().unsqueeze(1)).mean()


def brier_oracle(z, y):
    return (F.softmax(z.double(), 1) - F.one_hot(y.long(), z.shape[1]).movedim(-1, 1).double()).pow(2).sum(1).mean()


def with_nan(x, idx):
    x = x.clone(); x[idx] = NAN; return x


def with_inf(x, idx, v=INF):
    x = x.clone(); x[idx] = v; return x


def under_no_grad(*args):
    with torch.no_grad(): return check_loss(*args), torch.is_grad_enabled()


def needs_grad(z):
    return z.clone().requires_grad_()


@dataclass
class Raises:
    exc: type  # ValueError or TypeError
    arg: str  # the argument the message must name
    text: str  # more of the message: what was received or what is wrong


@dataclass
class Equals:
    oracle: Callable  # () -> the expected value (a tensor or number)
    tol: float = 1e-6  # absolute and relative tolerance


@dataclass
class Holds:
    test: Callable  # result -> bool, the oracle comparison written out
    what: str  # what it checks


def soft(*a, **k): return lambda: soft_accuracy(*a, **k)
def brier(*a, **k): return lambda: mse_on_probabilities(*a, **k)
def cl(*a, **k): return lambda: check_loss(*a, **k)


CE = F.cross_entropy
CASES = [
    # ---- soft_accuracy: temperature ----
    ('T inf', soft(Z, Y, INF), Raises(ValueError, 'temperature', 'must be finite, got inf')),
    ('T -inf', soft(Z, Y, -INF), Raises(ValueError, 'temperature', 'got -inf')),
    ('T nan', soft(Z, Y, NAN), Raises(ValueError, 'temperature', 'must not be NaN')),
    ('T 0', soft(Z, Y, 0.0), Raises(ValueError, 'temperature', 'must be in (0, inf), got 0.0')),
    ('T -0.0', soft(Z, Y, -0.0), Raises(ValueError, 'temperature', 'must be in (0, inf), got -0.0')),
    ('T negative', soft(Z, Y, -1.0), Raises(ValueError, 'temperature', 'got -1.0')),
    ('T bool', soft(Z, Y, True), Raises(TypeError, 'temperature', 'got True of type bool')),
    ('T numpy bool', soft(Z, Y, np.bool_(True)), Raises(TypeError, 'temperature', 'of type bool')),
    ('T str', soft(Z, Y, '1'), Raises(TypeError, 'temperature', "got '1' of type str")),
    ('T None', soft(Z, Y, None), Raises(TypeError, 'temperature', 'got None')),
    ('T complex', soft(Z, Y, 1 + 1j), Raises(TypeError, 'temperature', 'got (1+1j)')),
    ('T tensor', soft(Z, Y, torch.tensor(0.5)), Raises(TypeError, 'temperature', 'of type Tensor')),
    ('T numpy float64', soft(Z, Y, np.float64(0.5)), Equals(lambda: soft_oracle(Z, Y, 0.5))),
    ('T numpy float32', soft(Z, Y, np.float32(2.0)), Equals(lambda: soft_oracle(Z, Y, 2.0))),
    ('T numpy int', soft(Z, Y, np.int64(3)), Equals(lambda: soft_oracle(Z, Y, 3.0))),
    ('T 1e-300 gives the accuracy', soft(Z, Y, 1e-300), Equals(lambda: (Z.argmax(1) == Y).double().mean(), 1e-7)),
    ('T 1e-308 in float64', soft(Z.double(), Y, 1e-308), Equals(lambda: (Z.argmax(1) == Y).double().mean(), 0)),
    ('T 1e300 gives 1/C', soft(Z, Y, 1e300), Equals(lambda: 1 / 3)),
    # ---- soft_accuracy: logits ----
    ('logits numpy', soft(Z.numpy(), Y), Raises(TypeError, 'logits', 'of type ndarray')),
    ('logits list', soft(Z.tolist(), Y), Raises(TypeError, 'logits', 'of type list')),
    ('logits numpy scalar', soft(np.float32(1.0), Y), Raises(TypeError, 'logits', 'of type float32')),
    ('logits int64', soft(Z.long(), Y), Raises(TypeError, 'logits', 'floating-point dtype, got torch.int64')),
    ('logits bool', soft(Z > 0, Y), Raises(TypeError, 'logits', 'got torch.bool')),
    ('logits complex', soft(Z.to(torch.complex64), Y), Raises(TypeError, 'logits', 'must be real, got a complex tensor')),
    ('logits 1-D', soft(Z[0], Y[:1]), Raises(ValueError, 'logits', 'of shape (3,) and target of shape (1,) do not fit')),
    ('logits 0-d', soft(Z[0, 0], Y[0]), Raises(ValueError, 'logits', 'of shape () and target of shape () do not fit')),
    ('logits empty batch', soft(Z[:0], Y[:0]), Raises(ValueError, 'logits', 'of shape (0, 3) holds no example')),
    ('logits no classes', soft(Z[:, :0], Y), Raises(ValueError, 'logits', 'has no classes: shape (6, 0)')),
    ('logits float16', soft(Z.half(), Y, 0.3), Holds(lambda r: r.dtype == torch.float16 and abs(float(r) - float(soft_oracle(Z.half(), Y, 0.3))) < 1e-3, 'half in, half out, float32 inside')),
    ('logits float16 tiny T, no overflow', soft(Z.half(), Y, 1e-4), Equals(lambda: (Z.half().argmax(1) == Y).double().mean(), 1e-3)),
    ('logits bfloat16', soft(Z.bfloat16(), Y), Holds(lambda r: r.dtype == torch.bfloat16 and abs(float(r) - float(soft_oracle(Z.bfloat16(), Y))) < 1e-2, 'bfloat16 result')),
    ('logits float64', soft(Z.double(), Y, 0.7), Holds(lambda r: r.dtype == torch.float64 and abs(float(r) - float(soft_oracle(Z, Y, 0.7))) < 1e-6, 'float64 result')),
    ('logits requires_grad', lambda: torch.autograd.grad(soft_accuracy(Zg := needs_grad(Z.double()), Y, 0.5), Zg)[0],
     Equals(lambda: torch.autograd.grad(soft_oracle(Zo := needs_grad(Z.double()), Y, 0.5), Zo)[0], 1e-10)),
    ('logits non-contiguous', soft(Z.t().contiguous().t(), Y), Equals(lambda: soft_oracle(Z, Y))),
    ('logits transposed view', soft(torch.randn(3, 6, generator=torch.Generator().manual_seed(1)).t(), Y),
     Equals(lambda: soft_oracle(torch.randn(3, 6, generator=torch.Generator().manual_seed(1)).t(), Y))),
    ('logits expanded', soft(Z[:1].expand(6, 3), Y), Equals(lambda: soft_oracle(Z[:1].expand(6, 3).clone(), Y))),
    ('logits with NaN give NaN', soft(with_nan(Z, (1, 1)), Y), Holds(lambda r: bool(r.isnan()) and bool(soft_oracle(with_nan(Z, (1, 1)), Y).isnan()), 'NaN like F.softmax')),
    ('logits masked with -inf', soft(with_inf(Z, (0, 1), -INF), Y), Equals(lambda: soft_oracle(with_inf(Z, (0, 1), -INF), Y))),
    ('logits +inf give NaN', soft(with_inf(Z, (0, 0)), Y), Holds(lambda r: bool(r.isnan()) and bool(soft_oracle(with_inf(Z, (0, 0)), Y).isnan()), 'NaN like F.softmax')),
    ('logits 1e30 in float32', soft(1e30 * Z, Y), Equals(lambda: soft_oracle(1e30 * Z, Y))),
    ('logits spatial (N, C, H, W)', soft(Zs := torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(2)), Ys := torch.randint(0, 4, (2, 3, 5), generator=torch.Generator().manual_seed(3))),
     Equals(lambda: soft_oracle(Zs, Ys))),
    # ---- soft_accuracy: target ----
    ('target float', soft(Z, Y.float()), Raises(TypeError, 'target', 'integer tensor of class indices, got a tensor of shape (6,) and dtype torch.float32')),
    ('target bool', soft(Z, Y > 0), Raises(TypeError, 'target', 'dtype torch.bool')),
    ('soft target complex', soft(Z, Y.to(torch.complex64)), Raises(TypeError, 'target', 'must be real')),
    ('soft target numpy', soft(Z, Y.numpy()), Raises(TypeError, 'target', 'of type ndarray')),
    ('target list', soft(Z, Y.tolist()), Raises(TypeError, 'target', 'of type list')),
    ('target int32', soft(Z, Y.int()), Equals(lambda: soft_oracle(Z, Y))),
    ('target uint8', soft(Z, Y.to(torch.uint8)), Equals(lambda: soft_oracle(Z, Y))),
    ('target non-contiguous', soft(Z, torch.stack([Y, Y], 1)[:, 0]), Equals(lambda: soft_oracle(Z, Y))),
    ('target == C', soft(Z, with_inf(Y.float(), 3, 3).long()), Raises(ValueError, 'target', 'class indices in [0, 2] for logits with 3 classes, got values from 0 to 3')),
    ('target -1', soft(Z, with_inf(Y.float(), 0, -1).long()), Raises(ValueError, 'target', 'got values from -1 to 2')),
    ('target ignore_index -100', soft(Z, with_inf(Y.float(), 0, -100).long()), Raises(ValueError, 'target', 'from -100 to 2')),
    ('target (N, 1)', soft(Z, Y[:, None]), Raises(ValueError, 'target', 'target of shape (6, 1) do not fit')),
    ('target 0-d', soft(Z, Y[0]), Raises(ValueError, 'target', 'target of shape () do not fit')),
    ('target too short', soft(Z, Y[:4]), Raises(ValueError, 'target', 'target of shape (4,) do not fit')),
    ('soft target on meta', soft(Z, Y.to('meta')), Raises(ValueError, 'target', 'is on meta but logits is on cpu')),
    ('both on meta: shape only', soft(Z.to('meta'), Y.to('meta')), Holds(lambda r: r.device.type == 'meta' and r.shape == () and r.dtype == Z.dtype, 'a 0-d meta tensor')),
    # ---- mse_on_probabilities ----
    ('brier complex', brier(Z.to(torch.complex128), Y), Raises(TypeError, 'logits', 'must be real')),
    ('brier int', brier(Z.int(), Y), Raises(TypeError, 'logits', 'got torch.int32')),
    ('brier target out of range', brier(Z, Y + 1), Raises(ValueError, 'target', 'from 1 to 3')),
    ('brier empty', brier(Z[:0], Y[:0]), Raises(ValueError, 'logits', 'holds no example')),
    ('brier numpy', brier(Z.numpy(), Y), Raises(TypeError, 'logits', 'of type ndarray')),
    ('brier half', brier(Z.half(), Y), Holds(lambda r: r.dtype == torch.float16 and abs(float(r) - float(brier_oracle(Z.half(), Y))) < 2e-3, 'half in, half out')),
    ('brier float64', brier(Z.double(), Y), Equals(lambda: brier_oracle(Z, Y))),
    ('brier spatial', brier(Zs, Ys), Equals(lambda: brier_oracle(Zs, Ys))),
    ('brier requires_grad', lambda: torch.autograd.grad(mse_on_probabilities(Zg := needs_grad(Z.double()), Y), Zg)[0],
     Equals(lambda: torch.autograd.grad(brier_oracle(Zo := needs_grad(Z.double()), Y), Zo)[0], 1e-10)),
    # ---- check_loss: the example ----
    ('pred numpy', cl(CE, Z.numpy(), Y), Raises(TypeError, 'pred', 'of type ndarray')),
    ('pred list', cl(F.mse_loss, P.tolist(), T), Raises(TypeError, 'pred', 'of type list')),
    ('pred numpy scalar', cl(F.mse_loss, np.float64(1.0), T), Raises(TypeError, 'pred', 'of type float64')),
    ('pred int', cl(CE, Z.long(), Y), Raises(TypeError, 'pred', 'floating-point dtype, got torch.int64')),
    ('pred bool', cl(F.mse_loss, P > 1, T), Raises(TypeError, 'pred', 'got torch.bool')),
    ('pred complex', cl(F.mse_loss, P.to(torch.complex64), T), Raises(TypeError, 'pred', 'must be real')),
    ('pred one NaN', cl(CE, with_nan(Z, (4, 2)), Y), Raises(ValueError, 'pred', 'holds 1 NaN (the first at index (4, 2))')),
    ('pred two inf', cl(CE, with_inf(with_inf(Z, (1, 0)), (3, 1), -INF), Y), Raises(ValueError, 'pred', 'holds 2 inf (the first at index (1, 0))')),
    ('pred NaN, regression', cl(F.mse_loss, with_nan(P, 5), T), Raises(ValueError, 'pred', 'holds 1 NaN (the first at index (5,))')),
    ('pred empty', cl(CE, Z[:0], Y[:0]), Raises(ValueError, 'pred', 'of shape (0, 3) is empty')),
    ('pred empty, regression', cl(F.mse_loss, P[:0], T[:0]), Raises(ValueError, 'pred', 'of shape (0,) is empty')),
    ('pred 1-D for classes', cl(CE, Z[0], Y[:1]), Raises(ValueError, 'pred', 'pred of shape (3,) and target of shape (1,) do not fit')),
    ('pred on meta', cl(CE, Z.to('meta'), Y.to('meta')), Raises(ValueError, 'pred', 'is on the meta device')),
    ('target on meta', cl(F.mse_loss, P, T.to('meta')), Raises(ValueError, 'target', 'is on the meta device')),
    ('target class out of range', cl(CE, Z, Y + 1), Raises(ValueError, 'target', 'class indices in [0, 2] for pred with 3 classes, got values from 1 to 3')),
    ('target class negative', cl(CE, Z, with_inf(Y.float(), 2, -1).long()), Raises(ValueError, 'target', 'from -1 to 2')),
    ('target numpy', cl(CE, Z, Y.numpy()), Raises(TypeError, 'target', 'of type ndarray')),
    ('target complex', cl(F.mse_loss, P, T.to(torch.complex64)), Raises(TypeError, 'target', 'must be real')),
    ('target NaN, regression', cl(F.mse_loss, P, with_nan(T, 2)), Raises(ValueError, 'target', 'holds 1 NaN (the first at index (2,))')),
    ('target inf, regression', cl(F.mse_loss, P, with_inf(T, 7)), Raises(ValueError, 'target', 'holds 1 inf')),
    ('target broadcasts pred', cl(F.mse_loss, P[:, None], T), Raises(ValueError, 'target', 'would broadcast pred of shape (8, 1) to (8, 8)')),
    ('target does not broadcast', cl(F.mse_loss, P, T[:3]), Raises(ValueError, 'target', 'target of shape (3,) do not broadcast')),
    ('target int for regression', cl(F.mse_loss, P, T.long(), task='regression'), Raises(TypeError, 'target', "floating-point tensor for task='regression'")),
    ('target float for classification', cl(CE, Z, Y.float(), task='classification'), Raises(TypeError, 'target', 'integer tensor of class indices')),
    ('soft target negative', cl(CE, Z, with_inf(Q, (0, 0), -0.1), task='soft classification'), Raises(ValueError, 'target', 'smallest value -0.1')),
    ('soft target rows sum to 2', cl(CE, Z, 2 * Q, task='soft classification'), Raises(ValueError, 'target', 'row sums from 2 to 2')),
    ('soft target wrong shape', cl(CE, Z, Q[:, :2], task='soft classification'), Raises(ValueError, 'target', 'target of shape (6, 2) do not broadcast')),
    ('soft target NaN', cl(CE, Z, with_nan(Q, (2, 2)), task='soft classification'), Raises(ValueError, 'target', 'holds 1 NaN (the first at index (2, 2))')),
    ('binary target above 1', cl(F.binary_cross_entropy_with_logits, P, T, task='binary classification'), Raises(ValueError, 'target', "in [0, 1] for task='binary classification'")),
    ('binary target int', cl(F.binary_cross_entropy_with_logits, P, (T > 1).long(), task='binary classification'), Raises(TypeError, 'target', "floating-point tensor for task='binary classification'")),
    ('soft target one-hot', cl(CE, Z, F.one_hot(Y, 3).float()), Holds(lambda r: r.task == 'soft classification' and r.ok and abs(r.value - float(CE(Z, Y))) < 1e-6, 'one-hot probabilities: as class indices')),
    ('soft target float64', cl(CE, Z.double(), Q.double()), Holds(lambda r: r.task == 'soft classification' and r.ok and abs(r.value - float(CE(Z.double(), Q.double()))) < 1e-12, 'value as F.cross_entropy')),
    # ---- check_loss: loss_fn ----
    ('loss_fn a string', cl('mse', P, T), Raises(TypeError, 'loss_fn', "got 'mse' of type str")),
    ('loss_fn None', cl(None, P, T), Raises(TypeError, 'loss_fn', 'got None')),
    ('loss_fn raises', cl(lambda p, t: p @ t[:2], P, T), Raises(ValueError, 'loss_fn', 'raised RuntimeError at the example')),
    ('loss_fn raises ValueError', cl(lambda p, t: F.cross_entropy(p, t, reduction='avg'), Z, Y), Raises(ValueError, 'loss_fn', 'raised ValueError at the example')),
    ('loss_fn non-scalar', cl(lambda p, t: (p - t) ** 2, P, T), Raises(ValueError, 'loss_fn', 'single number (a reduced loss), got a tensor of shape (8,)')),
    ('loss_fn reduction none', cl(lambda z, y: F.cross_entropy(z, y, reduction='none'), Z, Y), Raises(ValueError, 'loss_fn', "shape (6,); use reduction='mean'")),
    ('loss_fn returns float', cl(lambda p, t: 0.5, P, T), Raises(TypeError, 'loss_fn', 'must return a tensor, got 0.5 of type float')),
    ('loss_fn returns None', cl(lambda p, t: None, P, T), Raises(TypeError, 'loss_fn', 'got None')),
    ('loss_fn returns numpy', cl(lambda p, t: np.float32(1.0), P, T), Raises(TypeError, 'loss_fn', 'of type float32')),
    ('loss_fn returns complex', cl(lambda p, t: F.mse_loss(p, t).to(torch.complex64), P, T), Raises(TypeError, 'loss_fn', 'must return a real number')),
    # ---- check_loss: options ----
    ('task unknown', cl(CE, Z, Y, task='ranking'), Raises(ValueError, 'task', "got 'ranking'")),
    ('task not a str', cl(CE, Z, Y, task=1), Raises(TypeError, 'task', 'got 1 of type int')),
    ('batch_consistency str', cl(CE, Z, Y, batch_consistency='no'), Raises(TypeError, 'batch_consistency', "got 'no' of type str")),
    ('batch_consistency None', cl(CE, Z, Y, batch_consistency=None), Raises(TypeError, 'batch_consistency', 'got None')),
    ('batch_consistency int', cl(CE, Z, Y, batch_consistency=0), Raises(TypeError, 'batch_consistency', 'got 0 of type int')),
    ('batch_consistency numpy bool', cl(CE, Z, Y, batch_consistency=np.bool_(False)), Holds(lambda r: [c.name for c in r.checks] == ['finite', 'minimum at target', 'informative gradient'], 'three checks')),
    ('n_probes 0', cl(CE, Z, Y, n_probes=0), Raises(ValueError, 'n_probes', 'got 0')),
    ('n_probes float', cl(CE, Z, Y, n_probes=2.5), Raises(TypeError, 'n_probes', 'must be an integer, got 2.5')),
    ('n_probes bool', cl(CE, Z, Y, n_probes=True), Raises(TypeError, 'n_probes', 'got True')),
    ('n_probes numpy int', cl(CE, Z, Y, n_probes=np.int64(2)), Holds(lambda r: r.ok and 'all 3 points' in r['informative gradient'].reason, 'example + 2 probes')),
    ('extreme inf', cl(CE, Z, Y, extreme=(10.0, INF)), Raises(ValueError, 'extreme[1]', 'must be finite, got inf')),
    ('extreme negative', cl(CE, Z, Y, extreme=(-1.0,)), Raises(ValueError, 'extreme[0]', 'got -1.0')),
    ('extreme not a tuple', cl(CE, Z, Y, extreme=100.0), Raises(TypeError, 'extreme', 'got 100.0 of type float')),
    ('extreme empty', cl(CE, Z, Y, extreme=()), Holds(lambda r: r.ok and 'all 10 points' in r['finite'].reason, 'example, 8 near, target')),
    ('generator an int', cl(CE, Z, Y, generator=0), Raises(TypeError, 'generator', 'got 0 of type int')),
    ('generator from numpy', cl(CE, Z, Y, generator=np.random.default_rng(0)), Raises(TypeError, 'generator', 'of type Generator')),
    ('name not a str', cl(CE, Z, Y, name=3), Raises(TypeError, 'name', 'got 3 of type int')),
    ('ignore_index a str', cl(CE, Z, Y, ignore_index='-100'), Raises(TypeError, 'ignore_index', "must be an integer, got '-100'")),
    ('ignore_index a float', cl(CE, Z, Y, ignore_index=-100.0), Raises(TypeError, 'ignore_index', 'must be an integer, got -100.0')),
    ('target all ignore_index', cl(CE, Z, torch.full_like(Y, -100)), Raises(ValueError, 'target', 'holds only ignore_index (-100) entries')),
    ('target -100 with ignore_index=None', cl(CE, Z, with_inf(Y.float(), 0, -100).long(), ignore_index=None), Raises(ValueError, 'target', 'got values from -100 to 2')),
    ('target -1 besides ignore_index', cl(CE, Z, with_inf(Y.float(), 0, -1).long()), Raises(ValueError, 'target', 'from -1 to 2 (besides entries equal to ignore_index, -100)')),
    ('target float class indices', cl(CE, Z, Y.float()), Raises(ValueError, 'target', 'target must be class indices, an integer tensor of shape (6,) (target.long())')),
    ('target -100 ignored', cl(CE, Z, with_inf(Y.float(), 0, -100).long()), Holds(lambda r: r.ok and abs(r.value - float(CE(Z[1:], Y[1:]))) < 1e-6, 'value of the kept rows, as F.cross_entropy')),
    ('target 255 ignored, ignore_index=255', cl(lambda z, y: CE(z, y, ignore_index=255), Z, with_inf(Y.float(), 0, 255).long(), ignore_index=255), Holds(lambda r: r.ok and abs(r.value - float(CE(Z[1:], Y[1:]))) < 1e-6, 'a custom ignore_index')),
    # ---- check_loss: edge inputs with correct results ----
    ('pred float16', cl(CE, Z.half(), Y), Holds(lambda r: r.ok and abs(r.value - float(CE(Z.half(), Y))) < 1e-3, 'half logits: usable, value as F.cross_entropy')),
    ('pred float64', cl(CE, Z.double(), Y), Holds(lambda r: r.ok and abs(r.value - float(CE(Z.double(), Y))) < 1e-12, 'value as F.cross_entropy')),
    ('pred requires_grad non-leaf', cl(CE, needs_grad(Z) * 1.0, Y), Holds(lambda r: r.ok and abs(r.value - float(CE(Z, Y))) < 1e-6, 'value as F.cross_entropy')),
    ('pred non-contiguous', cl(CE, Z.t().contiguous().t(), Y), Holds(lambda r: r.ok and abs(r.value - float(CE(Z, Y))) < 1e-6, 'value as F.cross_entropy')),
    ('pred expanded', cl(F.mse_loss, P[:1].expand(8), T), Holds(lambda r: r.ok and abs(r.value - float(F.mse_loss(P[:1].expand(8), T))) < 1e-6, 'value as F.mse_loss')),
    ('target int32 classes', cl(CE, Z, Y.int()), Holds(lambda r: r.ok and abs(r.value - float(CE(Z, Y))) < 1e-6, 'int32 indices accepted')),
    ('target uint8 classes', cl(CE, Z, Y.to(torch.uint8)), Holds(lambda r: r.ok and abs(r.value - float(CE(Z, Y))) < 1e-6, 'uint8 indices accepted')),
    ('target -0.0 counted as a zero', cl(lambda p, t: (1 - p / t).abs().mean(), P, with_inf(T, 1, -0.0)),
     Holds(lambda r: not r['finite'].passed and '(the target holds 1 zero)' in r['finite'].reason, 'percentage loss on a zero target')),
    ('pred 1e308 float64 overflows MSE', cl(F.mse_loss, torch.full((4,), 1e308, dtype=torch.float64), torch.full((4,), -1e308, dtype=torch.float64)),
     Holds(lambda r: not r['finite'].passed and r.value == float(F.mse_loss(torch.full((4,), 1e308, dtype=torch.float64), torch.full((4,), -1e308, dtype=torch.float64))) == INF, 'inf, as F.mse_loss')),
    ('pred 1e-308 float64', cl(F.mse_loss, torch.full((4,), 1e-308, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)),
     Holds(lambda r: r['minimum at target'].passed and r.value == 0.0, 'MSE of subnormal differences underflows to 0')),
    ('one example, one class logit', cl(CE, Z[:1], Y[:1]), Holds(lambda r: r.ok and abs(r.value - float(CE(Z[:1], Y[:1]))) < 1e-6, 'a batch of one')),
    ('label smoothing', cl(lambda z, y: CE(z, y, label_smoothing=0.1), Z, Y), Holds(lambda r: r.ok and f'margin of {math.log((0.9 + 0.1 / 3) / (0.1 / 3)):.3g} logits' in r['minimum at target'].reason, 'closed-form optimum margin')),
    ('sum reduction', cl(lambda z, y: CE(z, y, reduction='sum'), Z, Y), Holds(lambda r: r.ok and r['batch-size consistent'].status == 'warn' and abs(r.value - float(CE(Z, Y, reduction='sum'))) < 1e-5, 'a warning, value as F.cross_entropy(sum)')),
    ('weighted mean', cl(lambda z, y: CE(z, y, weight=torch.tensor([1., 2., 5.])), Z, Y), Holds(lambda r: r.ok and r['batch-size consistent'].status == 'pass', 'a weighted mean passes')),
    ('inside no_grad', lambda: under_no_grad(CE, Z, Y), Holds(lambda r: r[0].ok and r[1] is False and torch.is_grad_enabled(), 'usable; grad mode restored')),
]


def test_table_is_large_enough():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES), 'case names are unique'


@pytest.mark.parametrize('name,call,expect', CASES, ids=[c[0] for c in CASES])
def test_bad_or_edge_input(name, call, expect):
    if isinstance(expect, Raises):
        with pytest.raises(expect.exc) as e: call()
        msg = str(e.value)
        assert type(e.value) is expect.exc, f'{type(e.value).__name__}: {msg}'
        assert msg.startswith(expect.arg) or f'{expect.arg} ' in msg or f'{expect.arg}:' in msg, f'{expect.arg!r} not named: {msg}'
        assert expect.text in msg, f'{expect.text!r} not in {msg!r}'
    elif isinstance(expect, Equals):
        got, want = call(), expect.oracle()
        got = torch.as_tensor(got).double() if not isinstance(got, torch.Tensor) else got.detach().double()
        want = torch.as_tensor(want).double() if not isinstance(want, torch.Tensor) else want.detach().double()
        torch.testing.assert_close(got, want, rtol=expect.tol, atol=expect.tol)
    else:
        result = call()
        assert expect.test(result), f'{expect.what}: {result!r}'


def test_numpy_pred_is_described_in_one_short_line():
    z = torch.randn(64, 10)
    with pytest.raises(TypeError) as e: check_loss(F.cross_entropy, z.numpy(), torch.randint(0, 10, (64,)))
    msg = str(e.value)
    assert msg == 'pred must be a floating-point torch.Tensor, got an array of shape (64, 10) and dtype float32 of type ndarray'
    with pytest.raises(TypeError, match=r"got \[0, 1, 2, .*\.\.\. of type list"): check_loss(F.mse_loss, list(range(100)), z)



def test_a_one_element_value_is_shown_by_its_value_and_a_wrong_dtype_by_name():
    "The shared describe: a one-element tensor by its repr (the value is the news), a wrong dtype named even then."
    with pytest.raises(TypeError, match=r"temperature must be a real number, got tensor\(0\.5000\) of type Tensor"):
        soft_accuracy(Z, Y, torch.tensor(0.5))
    with pytest.raises(TypeError, match=r"target must be an integer tensor of class indices, got a tensor of shape \(1,\) "
                                        r"and dtype torch\.float32 on cpu"):
        soft_accuracy(Z[:1], Y[:1].float())
    with pytest.raises(TypeError, match=r"loss_fn must return a real number, got a tensor of shape \(\) and dtype torch\.complex64"):
        check_loss(lambda p, t: F.mse_loss(p, t) * (1 + 1j), torch.randn(4), torch.randn(4))
    with pytest.raises(TypeError, match=r"got Sequential\( \(0\): Linear\(in_features=2, out_features=3, bias=True\) \) of type Sequential"):
        check_loss(F.mse_loss, torch.nn.Sequential(torch.nn.Linear(2, 3)), torch.randn(4))

@pytest.mark.parametrize('labels', ['binary', 'one-hot'])
def test_long_labels_for_a_loss_on_labels_suggest_float(labels):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, generator=g) if labels == 'binary' else torch.randn(16, 4, generator=g)
    y = torch.randint(0, 2, (16,), generator=g) if labels == 'binary' else F.one_hot(torch.arange(16) % 4, 4)
    with pytest.raises(ValueError, match=r'do not fit.*needs them as floats, target\.float\(\)'):
        check_loss(F.binary_cross_entropy_with_logits, z, y)
    assert check_loss(F.binary_cross_entropy_with_logits, z, y.float()).task == 'binary classification'


def test_probability_loss_given_logits_at_the_example_hints_sigmoid():
    g = torch.Generator().manual_seed(0)
    z, y = 2 * torch.randn(16, generator=g), (torch.rand(16, generator=g) > 0.5).float()
    with pytest.raises(ValueError, match=r'raised RuntimeError at the example: .*between 0 and 1.*'
                                         r'F\.binary_cross_entropy\(torch\.sigmoid\(z\), y\)'):
        check_loss(F.binary_cross_entropy, z, y)
    with pytest.raises(ValueError) as e: check_loss(lambda p, t: p.view(5, -1).mean(), z, y)  # another error: no hint
    assert 'sigmoid' not in str(e.value)
