"""RunningBatchNorm on bad and edge input, table-driven: every call either raises a clear ValueError/TypeError that
names the argument and the value (the message is asserted), or gives a result checked against an oracle
(nn.BatchNorm1d/2d/3d, the course's re-typed layer in course_batchnorm.py, float64, or a closed form).
Plus a ragged last batch through torch.compile(fullgraph=True), compared with eager."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from course_batchnorm import CourseRunningBatchNorm
from lossnotes import RunningBatchNorm
from lossnotes.batchnorm import effective_momentum

torch.set_num_threads(1)


def _x(*shape, dtype=torch.float32, seed=0, loc=1.0, scale=2.0):
    "A reproducible batch (N, C, ...) with mean `loc` and std `scale`."
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale + loc).to(dtype)


def _first_step(x, **kw):
    "Our layer's first training step: it normalises with the batch's own statistics."
    return RunningBatchNorm(x.shape[1], **kw)(x)


def _bn_train(cls, x, eps=1e-5):
    "nn.BatchNorm{1,2,3}d in training mode: the oracle of a first step."
    return cls(x.shape[1], eps=eps).to(x.dtype)(x)


def _close(got, want, rtol=1e-5, atol=1e-5):
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol, equal_nan=True)


def _trained(steps=30, c=3, dtype=torch.float32):
    "A layer after `steps` batches of 4, and the batches."
    m = RunningBatchNorm(c, dtype=dtype)
    for t in range(steps): m(_x(4, c, 3, 3, dtype=dtype, seed=t))
    return m


def _wide_state(name, index, value, c=1000):
    "A fresh layer's state_dict over `c` channels with one entry of buffer `name` set to `value`."
    s = dict(RunningBatchNorm(c).state_dict())
    s[name] = s[name].clone(); s[name][index] = value
    return s


def _state(**changes):
    "A trained layer's state_dict with some entries replaced (None deletes the key)."
    s = dict(_trained().state_dict())
    for k, v in changes.items():
        if v is None: s.pop(k)
        else: s[k] = v
    return s


# ---------------------------------------------------------------- calls that must raise, with their message

RAISES = [
    # the constructor: num_features
    ('num_features-str', lambda: RunningBatchNorm('4'), TypeError, "num_features must be an integer, got '4'"),
    ('num_features-float', lambda: RunningBatchNorm(4.0), TypeError, 'num_features must be an integer, got 4.0'),
    ('num_features-bool', lambda: RunningBatchNorm(True), TypeError, 'num_features must be an integer, got True'),
    ('num_features-None', lambda: RunningBatchNorm(None), TypeError, 'num_features must be an integer, got None'),
    ('num_features-tensor', lambda: RunningBatchNorm(torch.tensor(4)), TypeError, 'num_features must be an integer'),
    ('num_features-np-float', lambda: RunningBatchNorm(np.float64(4.0)), TypeError, 'num_features must be an integer'),
    ('num_features-0', lambda: RunningBatchNorm(0), ValueError, r'num_features must be in [1, inf), got 0'),
    ('num_features-negative', lambda: RunningBatchNorm(-3), ValueError, r'num_features must be in [1, inf), got -3'),
    # momentum (torch's name), and both names at once
    ('momentum-str', lambda: RunningBatchNorm(3, momentum='0.1'), TypeError, "momentum must be a real number, got '0.1'"),
    ('momentum-0', lambda: RunningBatchNorm(3, momentum=0), ValueError, 'momentum must be in (0, 1], got 0'),
    ('momentum-above-1', lambda: RunningBatchNorm(3, momentum=1.5), ValueError, 'momentum must be in (0, 1], got 1.5'),
    ('momentum-nan', lambda: RunningBatchNorm(3, momentum=float('nan')), ValueError, 'momentum must not be NaN, got nan'),
    ('momentum-and-mom', lambda: RunningBatchNorm(3, momentum=0.2, mom=0.3), ValueError,
     'give momentum or its other name mom, not both: got momentum=0.2, mom=0.3'),
    ('momentum-None-and-mom', lambda: RunningBatchNorm(3, momentum=None, mom=0.3), ValueError,
     'give momentum or its other name mom, not both'),
    ('momentum-0.1-and-mom', lambda: RunningBatchNorm(3, momentum=0.1, mom=0.5), ValueError,
     'give momentum or its other name mom, not both: got momentum=0.1, mom=0.5'),
    ('momentum-0.1-positional-and-mom', lambda: RunningBatchNorm(3, 1e-5, 0.1, mom=0.5), ValueError,
     'give momentum or its other name mom, not both'),
    ('track_running_stats-False', lambda: RunningBatchNorm(3, 1e-5, 0.1, True, False), ValueError,
     'track_running_stats must be True, got False'),
    ('track_running_stats-str', lambda: RunningBatchNorm(3, track_running_stats='yes'), TypeError,
     "track_running_stats must be a bool (True or False), got 'yes'"),
    ('bias-str', lambda: RunningBatchNorm(3, bias='no'), TypeError, "bias must be a bool (True or False), got 'no'"),
    ('bias-positional', lambda: RunningBatchNorm(3, 1e-5, 0.1, True, True, 'cpu', None, False), TypeError,
     'takes from 2 to 8 positional arguments but 9 were given'),  # bias is keyword-only, as in nn.BatchNorm2d
    ('affine-str', lambda: RunningBatchNorm(3, affine='yes'), TypeError, "affine must be a bool (True or False), got 'yes'"),
    # convert
    ('convert-not-module', lambda: RunningBatchNorm.convert('model'), TypeError,
     "module must be an nn.Module, got 'model' of type str"),
    ('convert-long-list', lambda: RunningBatchNorm.convert([nn.BatchNorm2d(3)] * 1000), TypeError,
     'module must be an nn.Module, got [BatchNorm2d(3, eps=1e-05'),
    ('convert-no-stats', lambda: RunningBatchNorm.convert(nn.Sequential(nn.BatchNorm2d(3, track_running_stats=False))),
     ValueError, 'was built with track_running_stats=False'),
    # mom
    ('mom-str', lambda: RunningBatchNorm(3, mom='0.1'), TypeError, "mom must be a real number, got '0.1'"),
    ('mom-None', lambda: RunningBatchNorm(3, mom=None), TypeError, 'mom must be a real number, got None'),
    ('mom-np-bool', lambda: RunningBatchNorm(3, mom=np.bool_(True)), TypeError, 'mom must be a real number'),
    ('mom-tensor', lambda: RunningBatchNorm(3, mom=torch.tensor(0.1)), TypeError, 'mom must be a real number'),
    ('mom-0', lambda: RunningBatchNorm(3, mom=0), ValueError, 'mom must be in (0, 1], got 0'),
    ('mom-negative', lambda: RunningBatchNorm(3, mom=-0.1), ValueError, 'mom must be in (0, 1], got -0.1'),
    ('mom-above-1', lambda: RunningBatchNorm(3, mom=1.0001), ValueError, 'mom must be in (0, 1], got 1.0001'),
    ('mom-nan', lambda: RunningBatchNorm(3, mom=float('nan')), ValueError, 'mom must not be NaN, got nan'),
    ('mom-inf', lambda: RunningBatchNorm(3, mom=math.inf), ValueError, 'mom must be finite, got inf'),
    # eps
    ('eps-0', lambda: RunningBatchNorm(3, eps=0.0), ValueError, 'eps must be in (0, inf), got 0.0'),
    ('eps-negative', lambda: RunningBatchNorm(3, eps=-1e-5), ValueError, 'eps must be in (0, inf), got -1e-05'),
    ('eps-inf', lambda: RunningBatchNorm(4, eps=math.inf), ValueError, 'eps must be finite, got inf'),
    ('eps-nan', lambda: RunningBatchNorm(4, eps=math.nan), ValueError, 'eps must not be NaN, got nan'),
    ('eps-str', lambda: RunningBatchNorm(4, eps='1e-5'), TypeError, "eps must be a real number, got '1e-5'"),
    ('eps-complex', lambda: RunningBatchNorm(4, eps=1e-5 + 0j), TypeError, 'eps must be a real number'),
    # dtype
    ('dtype-int', lambda: RunningBatchNorm(3, dtype=torch.int64), TypeError,
     'dtype must be a floating-point torch.dtype, got torch.int64'),
    ('dtype-str', lambda: RunningBatchNorm(3, dtype='float32'), TypeError,
     "dtype must be a floating-point torch.dtype, got 'float32'"),
    ('dtype-numpy', lambda: RunningBatchNorm(3, dtype=np.float32), TypeError,
     "dtype must be a floating-point torch.dtype, got <class 'numpy.float32'> of type type"),
    ('dtype-complex', lambda: RunningBatchNorm(3, dtype=torch.complex64), TypeError,
     'dtype must be a floating-point torch.dtype, got torch.complex64'),
    # forward: what x is
    ('x-list', lambda: RunningBatchNorm(3)([[1.0, 2.0, 3.0]]), TypeError, 'x must be a torch.Tensor, got [[1.0'),
    ('x-numpy', lambda: RunningBatchNorm(3)(np.ones((2, 3), dtype=np.float32)), TypeError,
     'x must be a torch.Tensor, got an array of shape (2, 3) and dtype float32'),
    ('x-np-scalar', lambda: RunningBatchNorm(3)(np.float32(1.0)), TypeError, 'x must be a torch.Tensor'),
    ('x-0d', lambda: RunningBatchNorm(3)(torch.tensor(1.0)), ValueError,
     'x must have shape (N, C, ...) with C = 3, got shape ()'),
    ('x-1d', lambda: RunningBatchNorm(3)(torch.randn(3)), ValueError,
     'x must have shape (N, C, ...) with C = 3, got shape (3,)'),
    ('x-channels', lambda: RunningBatchNorm(3)(torch.randn(4, 5, 2, 2)), ValueError,
     'x must have 3 channels in dim 1, got shape (4, 5, 2, 2)'),
    ('x-channels-last-axis', lambda: RunningBatchNorm(3)(torch.randn(4, 2, 2, 3)), ValueError,
     'x must have 3 channels in dim 1, got shape (4, 2, 2, 3)'),
    ('x-int', lambda: RunningBatchNorm(3)(torch.ones(4, 3, dtype=torch.int64)), TypeError,
     'x must have a floating-point dtype, got torch.int64'),
    ('x-uint8', lambda: RunningBatchNorm(3)(torch.ones(4, 3, dtype=torch.uint8)), TypeError,
     'x must have a floating-point dtype, got torch.uint8'),
    ('x-bool', lambda: RunningBatchNorm(3)(torch.ones(4, 3, dtype=torch.bool)), TypeError,
     'x must have a floating-point dtype, got torch.bool'),
    ('x-complex', lambda: RunningBatchNorm(3)(torch.ones(4, 3, dtype=torch.complex64)), TypeError,
     'x must be real, got a complex tensor of dtype torch.complex64'),
    ('x-float64-train', lambda: RunningBatchNorm(3)(_x(4, 3, dtype=torch.float64)), TypeError,
     "x has dtype torch.float64 but the layer's statistics are torch.float32"),
    ('x-float64-eval', lambda: RunningBatchNorm(3).eval()(_x(4, 3, dtype=torch.float64)), TypeError,
     "x has dtype torch.float64 but the layer's statistics are torch.float32"),
    ('x-float32-into-float64-train', lambda: RunningBatchNorm(3, dtype=torch.float64)(_x(4, 3)), TypeError,
     "x has dtype torch.float32 but the layer's statistics are torch.float64"),
    ('x-float32-into-float64-eval', lambda: RunningBatchNorm(3, dtype=torch.float64).eval()(_x(4, 3)), TypeError,
     "x has dtype torch.float32 but the layer's statistics are torch.float64"),
    ('x-float16-into-float64', lambda: RunningBatchNorm(3, dtype=torch.float64)(_x(4, 3, dtype=torch.float16)),
     TypeError, "x has dtype torch.float16 but the layer's statistics are torch.float64"),
    ('x-float32-into-half', lambda: RunningBatchNorm(3, dtype=torch.float16)(_x(4, 3)), TypeError,
     "x has dtype torch.float32 but the layer's statistics are torch.float16"),
    ('x-meta-into-cpu', lambda: RunningBatchNorm(3)(torch.randn(4, 3, device='meta')), ValueError,
     'x is on device meta but the layer is on cpu'),
    ('x-cpu-into-meta', lambda: RunningBatchNorm(3, device='meta')(torch.randn(4, 3)), ValueError,
     'x is on device cpu but the layer is on meta'),
    ('x-empty-batch-train', lambda: RunningBatchNorm(3)(torch.randn(0, 3, 2, 2)), ValueError,
     'x must hold at least one value per channel in training mode, got shape (0, 3, 2, 2)'),
    ('x-empty-spatial-train', lambda: RunningBatchNorm(3)(torch.randn(4, 3, 0)), ValueError,
     'x must hold at least one value per channel in training mode, got shape (4, 3, 0)'),
    # load_state_dict
    ('state-missing-key', lambda: RunningBatchNorm(3).load_state_dict(_state(running_var=None)), ValueError,
     "state_dict is missing ['running_var']"),
    ('state-extra-key', lambda: RunningBatchNorm(3).load_state_dict(_state(sums=torch.zeros(3))), ValueError,
     "state_dict has unexpected keys ['sums']"),
    ('state-float-not-tensor', lambda: RunningBatchNorm(3).load_state_dict(_state(count=3.0)), TypeError,
     "state_dict['count'] must be a torch.Tensor, got 3.0 of type float"),
    ('state-list', lambda: RunningBatchNorm(3).load_state_dict(_state(running_mean=[0., 0., 0.])), TypeError,
     "state_dict['running_mean'] must be a torch.Tensor, got [0.0, 0.0, 0.0] of type list"),
    ('state-complex', lambda: RunningBatchNorm(3).load_state_dict(_state(running_mean=torch.zeros(3, dtype=torch.complex64))),
     TypeError, "state_dict['running_mean'] must be a real number tensor, got dtype torch.complex64"),
    ('state-negative-var', lambda: RunningBatchNorm(3).load_state_dict(_state(running_var=torch.tensor([1., -1., 1.]))),
     ValueError, "state_dict['running_var'] must be >= 0, got [1.0, -1.0, 1.0]"),
    ('state-nan-mean', lambda: RunningBatchNorm(3).load_state_dict(_state(running_mean=torch.tensor([0., math.nan, 0.]))),
     ValueError, "state_dict['running_mean'] must be finite, got [0.0, nan, 0.0]"),
    ('state-inf-count', lambda: RunningBatchNorm(3).load_state_dict(_state(count=torch.tensor(math.inf))), ValueError,
     "state_dict['count'] must be finite, got inf"),
    ('state-negative-counter', lambda: RunningBatchNorm(3).load_state_dict(_state(num_batches_tracked=torch.tensor(-1))),
     ValueError, "state_dict['num_batches_tracked'] must be >= 0, got -1"),
    ('state-fractional-counter', lambda: RunningBatchNorm(3).load_state_dict(_state(num_samples_tracked=torch.tensor(2.5))),
     ValueError, "state_dict['num_samples_tracked'] must hold a whole number, got 2.5"),
    ('state-wrong-shape', lambda: RunningBatchNorm(3).load_state_dict(_state(running_mean=torch.zeros(4))), ValueError,
     "state_dict['running_mean'] must have shape (3,), got shape (4,)"),
    ('state-not-mapping', lambda: RunningBatchNorm(3).load_state_dict([('weight', torch.ones(3))]), TypeError,
     "state_dict must be a mapping, got [('weight', tensor([1., 1., 1.]))] of type list"),
    ('state-long-list', lambda: RunningBatchNorm(3).load_state_dict(_state(running_mean=[0.0] * 10**5)), TypeError,
     "state_dict['running_mean'] must be a torch.Tensor, got [0.0, 0.0, 0.0"),
    ('state-wide-negative-var', lambda: RunningBatchNorm(1000).load_state_dict(_wide_state('running_var', 700, -1.0)),
     ValueError, "state_dict['running_var'] must be >= 0, got -1.0 at index 700 of a tensor of shape (1000,)"),
    ('state-wide-nan-mean', lambda: RunningBatchNorm(1000).load_state_dict(_wide_state('running_mean', 5, math.nan)),
     ValueError, "state_dict['running_mean'] must be finite, got nan at index 5 of a tensor of shape (1000,)"),
    ('state-wide-inf-var', lambda: RunningBatchNorm(1000).load_state_dict(_wide_state('running_var', 999, math.inf)),
     ValueError, "state_dict['running_var'] must be finite, got inf at index 999 of a tensor of shape (1000,)"),
    ('state-strict-str', lambda: RunningBatchNorm(3).load_state_dict(_state(), strict='yes'), TypeError,
     "strict must be a bool (True or False), got 'yes'"),
    ('state-nested-bad-value', lambda: nn.Sequential(RunningBatchNorm(3)).load_state_dict(
        {'0.' + k: v for k, v in _state(running_var=torch.tensor([1., math.nan, 1.])).items()}),
     ValueError, "state_dict['0.running_var'] must be finite, got [1.0, nan, 1.0]"),
]


@pytest.mark.parametrize('name,call,exc,message', RAISES, ids=[r[0] for r in RAISES])
def test_bad_call_raises_naming_the_argument(name, call, exc, message):
    with pytest.raises(exc) as info:
        call()
    assert message in str(info.value), str(info.value)
    assert len(str(info.value)) < 400, str(info.value)  # a long list or a wide tensor is cut or described, not printed


def test_float16_layer_refuses_a_count_it_cannot_hold():
    "A float16 layer's count tops out at 65504 items per channel; beyond, it used to turn inf and the statistics 0."
    m = RunningBatchNorm(3).half()
    with pytest.raises(ValueError, match=r"x has 65536 items per channel \(shape \(64, 3, 32, 32\)\), more than the "
                                         r"layer's torch.float16 count can hold \(65504\)"):
        m(_x(64, 3, 32, 32, dtype=torch.float16))
    assert m.num_batches_tracked.item() == 0 and torch.isfinite(m.count)  # nothing was merged
    x = _x(64, 3, 32, 31, dtype=torch.float16)  # 63488 items: fits, and matches the float32 layer
    _close(m(x).float(), RunningBatchNorm(3)(x.float()), rtol=1e-2, atol=1e-2)
    big = _x(64, 3, 32, 32, dtype=torch.bfloat16)  # bfloat16 has float32's range
    _close(RunningBatchNorm(3).bfloat16()(big).float(), nn.BatchNorm2d(3)(big.float()), rtol=2e-2, atol=2e-2)


def test_failed_float64_call_leaves_the_layer_float32_and_usable():
    "The first mismatched call raises; the buffers keep their dtype, so the next float32 call works."
    m = RunningBatchNorm(3)
    m(_x(4, 3))
    with pytest.raises(TypeError, match='float64'):
        m(_x(4, 3, dtype=torch.float64, seed=1))
    assert {b.dtype for n, b in m.named_buffers() if not n.startswith('num_')} == {torch.float32}
    assert m.num_batches_tracked.item() == 1
    m.eval()
    assert m(_x(2, 3, seed=2)).dtype == torch.float32


# ---------------------------------------------------------------- edge calls with a correct result, by oracle

def _np_scalars():
    m = RunningBatchNorm(np.int64(3), mom=np.float32(0.5), eps=np.float64(1e-3))
    assert type(m.num_features) is int and type(m.mom) is float and type(m.eps) is float
    assert repr(m) == 'RunningBatchNorm(3, eps=0.001, momentum=0.5, affine=True)'
    ref = RunningBatchNorm(3, mom=0.5, eps=1e-3)
    for t in range(3): _close(m(_x(4, 3, 2, seed=t)), ref(_x(4, 3, 2, seed=t)), 0, 0)


def _mom_one():
    "mom = 1: mom1 = 1 at every batch size, so the running statistics are the last batch's (closed form)."
    m = RunningBatchNorm(3, mom=1.0)
    for t in range(3): x = _x(5, 3, 4, seed=t); m(x)
    _close(m.running_mean, x.mean((0, 2)))
    _close(m.running_var, x.var((0, 2), correction=0))


def _tiny_eps():
    x = _x(6, 3, 4, 4)
    _close(_first_step(x, eps=1e-300), _bn_train(nn.BatchNorm2d, x, eps=1e-300))


def _dtype_float64():
    "A float64 layer against the course's layer in float64 over 30 steps."
    ours, course = RunningBatchNorm(3, dtype=torch.float64), CourseRunningBatchNorm(3).double()
    assert ours.running_mean.dtype == ours.weight.dtype == torch.float64
    for t in range(30):
        x = _x(4, 3, 3, 3, dtype=torch.float64, seed=t)
        _close(ours(x), course(x), 1e-9, 1e-9)


def _meta_layer():
    "On the meta device: shapes and dtypes only, like nn.BatchNorm2d on meta."
    m, bn = RunningBatchNorm(3, device='meta'), nn.BatchNorm2d(3, device='meta')
    x = torch.randn(4, 3, 5, 5, device='meta')
    y, want = m(x), bn(x)
    assert (y.device.type, y.shape, y.dtype) == (want.device.type, want.shape, want.dtype)
    assert m.running_mean.device.type == 'meta' and m.num_batches_tracked.device.type == 'meta'


def _oracle_2d():
    x = _x(8, 3)
    _close(_first_step(x), _bn_train(nn.BatchNorm1d, x))


def _oracle_3d():
    x = _x(4, 3, 7)
    _close(_first_step(x), _bn_train(nn.BatchNorm1d, x))


def _oracle_4d():
    x = _x(4, 3, 5, 5)
    _close(_first_step(x), _bn_train(nn.BatchNorm2d, x))


def _oracle_5d():
    x = _x(2, 3, 3, 4, 2)
    _close(_first_step(x), _bn_train(nn.BatchNorm3d, x))


def _half(dtype, tol):
    "float16/bfloat16 into a float32 layer (autocast's case): output in the input's dtype, statistics float32."
    def run():
        x = _x(8, 3, 4, 4).to(dtype)
        m, ref = RunningBatchNorm(3), RunningBatchNorm(3)
        y = m(x)
        assert y.dtype == dtype and m.running_mean.dtype == torch.float32
        _close(y.float(), ref(x.float()), tol, tol)
        _close(m.running_var, ref.running_var, tol, tol)
    return run


def _same_as_contiguous(make):
    "A strided input (`make(x)`) gives the contiguous input's output and statistics, step after step."
    def run():
        m, ref = RunningBatchNorm(3), RunningBatchNorm(3)
        for t in range(3):
            x = _x(4, 3, 5, 6, seed=t)
            xs = make(x)
            assert torch.equal(xs, x)
            _close(m(xs), ref(x), 1e-6, 1e-6)
        _close(m.running_var, ref.running_var, 1e-6, 1e-6)
        m.eval(); ref.eval()
        _close(m(make(x)), ref(x), 1e-6, 1e-6)
    return run


def _transposed(x): return x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, not contiguous
def _channels_last(x): return x.contiguous(memory_format=torch.channels_last)
def _sliced(x): return torch.stack([x, x], -1)[..., 0]  # a view with stride 2 in the last dim


def _expanded():
    "An expanded (stride-0) batch: every sample the same, so the batch variance is the spatial one (BatchNorm2d)."
    x = _x(1, 3, 4, 4).expand(5, 3, 4, 4)
    assert x.stride(0) == 0
    _close(_first_step(x), _bn_train(nn.BatchNorm2d, x.contiguous()))


def _nan_channel(bad):
    "A NaN or inf in channel 1: that channel's output NaN, its statistics not finite, the others untouched (BatchNorm2d)."
    def run():
        x = _x(4, 3, 3, 3)
        x[2, 1, 0, 0] = bad
        m, bn = RunningBatchNorm(3), nn.BatchNorm2d(3)
        y, want = m(x), bn(x)
        assert torch.isnan(y[:, 1]).all() and torch.isnan(want[:, 1]).all()
        _close(y[:, [0, 2]], want[:, [0, 2]])
        assert not torch.isfinite(m.running_mean[1]) and not torch.isfinite(bn.running_mean[1])
        assert torch.isnan(m.running_var[1]) and torch.isnan(bn.running_var[1])
        assert torch.isfinite(m.running_mean[[0, 2]]).all()
        m.reset_running_stats()
        _close(m(_x(4, 3, 3, 3)), _bn_train(nn.BatchNorm2d, _x(4, 3, 3, 3)))
    return run


def _empty_batch_eval():
    m, bn = _trained(), nn.BatchNorm2d(3).eval()
    m.eval()
    y = m(torch.randn(0, 3, 3, 3))
    assert y.shape == bn(torch.randn(0, 3, 3, 3)).shape == (0, 3, 3, 3)


def _batch_size_1_first_step():
    "One sample, no spatial dims: x is the mean, the variance 0 is clamped to 0.01; nn.BatchNorm1d refuses it."
    x = _x(1, 3)
    m = RunningBatchNorm(3)
    _close(m(x), torch.zeros(1, 3))
    _close(m.running_mean, x[0])
    # variance 0, up to the rounding of recovering it from 1/sqrt(var + eps): eps * 2**-23 ~ 1e-12
    assert m.running_var.abs().max() < 2e-12 and m.num_samples_tracked.item() == 1
    with pytest.raises(ValueError, match='Expected more than 1 value per channel'):
        nn.BatchNorm1d(3)(x)


def _batch_size_1_weights():
    "Batch size 1 for 25 steps: the running mean and variance are numpy's weighted ones with mom1 = mom (closed form)."
    m = RunningBatchNorm(2, dtype=torch.float64)
    xs = [_x(1, 2, 3, dtype=torch.float64, seed=t) for t in range(25)]
    for x in xs: m(x)
    mom1 = effective_momentum(0.1, 1)
    w = np.array([mom1 * (1 - mom1) ** (len(xs) - 1 - i) for i in range(len(xs))])
    for c in range(2):
        v = np.stack([x[0, c].numpy() for x in xs])  # (steps, 3)
        ww = np.repeat(w, v.shape[1])
        mu = np.average(v.ravel(), weights=ww)
        assert m.running_mean[c].item() == pytest.approx(mu, rel=1e-10)
        assert m.running_var[c].item() == pytest.approx(np.average((v.ravel() - mu) ** 2, weights=ww), rel=1e-9)


def _constant_channel():
    "A constant channel: variance 0 (to ~1e-12, never negative), outputs 0 once the clamp is off (the mean is the value)."
    m = RunningBatchNorm(2)
    for t in range(6): y = m(torch.stack([torch.full((4, 3), 7.0), _x(4, 3, seed=t)], 1))
    assert 0 <= m.running_var[0].item() < 2e-12 and m.num_samples_tracked.item() == 24
    # x - mean is 0 up to the float32 rounding of the running mean near 7 (ulp 2**-21), divided by sqrt(eps)
    _close(y[:, 0], torch.zeros(4, 3), 0, 2 ** -21 / math.sqrt(1e-5))


def _large_mean_float32():
    "|mean| = 1e4 x std in float32: the running variance within 1% of float64's; the course's formula is not."
    m32, m64, course = RunningBatchNorm(3), RunningBatchNorm(3, dtype=torch.float64), CourseRunningBatchNorm(3)
    for t in range(30):
        x = _x(16, 3, 4, 4, dtype=torch.float64, seed=t, loc=1e4, scale=1.0)
        m32(x.float()); m64(x); course(x.float())
    assert ((m32.running_var.double() - m64.running_var).abs() / m64.running_var).max() < 0.01
    course_var = (course.sqrs / course.count - (course.sums / course.count) ** 2).flatten().double()
    assert ((course_var - m64.running_var).abs() / m64.running_var).max() > 0.5


def _gradients_match_course():
    "requires_grad input in float64: gradients equal autograd through the course's layer."
    ours, course = RunningBatchNorm(3, dtype=torch.float64), CourseRunningBatchNorm(3).double()
    for t in range(5):
        x = _x(4, 3, 3, 3, dtype=torch.float64, seed=t).requires_grad_()
        ga, = torch.autograd.grad(ours(x).pow(3).sum(), x)
        gb, = torch.autograd.grad(course(x).pow(3).sum(), x)
        _close(ga, gb, 1e-8, 1e-8)


def _state_float64_into_float32():
    m64 = _trained(dtype=torch.float64)
    m = RunningBatchNorm(3)
    m.load_state_dict(m64.state_dict())
    assert m.running_var.dtype == torch.float32
    _close(m.running_var.double(), m64.running_var, 1e-6, 1e-7)
    assert m.num_samples_tracked.item() == m64.num_samples_tracked.item() == 120


def _state_round_trip():
    "A fresh layer loaded with a trained layer's state gives the same outputs in eval and training."
    m, fresh = _trained(), RunningBatchNorm(3)
    assert fresh.load_state_dict(m.state_dict()) is not None  # torch's NamedTuple of missing/unexpected keys
    for mode in (False, True):
        m.train(mode); fresh.train(mode)
        x = _x(5, 3, 3, 3, seed=99)
        assert torch.equal(m(x), fresh(x))


def _state_not_strict():
    "strict=False: the missing key is reported by torch, the rest is loaded."
    m = RunningBatchNorm(3)
    result = m.load_state_dict(_state(count=None), strict=False)
    assert result.missing_keys == ['count'] and m.num_batches_tracked.item() == 30


def _state_nested_missing_key():
    "Inside a container torch reports a missing key itself, naming it with its prefix (torch's RuntimeError)."
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "0.count"'):
        nn.Sequential(RunningBatchNorm(3)).load_state_dict({'0.' + k: v for k, v in _state(count=None).items()})


def _state_meta():
    "A state dict on the meta device loads into a meta layer: no values to check, no error."
    m = RunningBatchNorm(3, device='meta')
    m.load_state_dict(RunningBatchNorm(3, device='meta').state_dict())
    assert m.running_mean.device.type == 'meta'


def _state_bad_then_good():
    "A rejected state dict changes nothing: the layer still gives its old outputs."
    m = _trained()
    m.eval()
    x = _x(3, 3, 3, 3, seed=7)
    before = m(x)
    with pytest.raises(ValueError):
        m.load_state_dict(dict(m.state_dict()) | {'running_var': -m.running_var - 1})
    assert torch.equal(m(x), before)


ORACLE = [
    ('np-scalars', _np_scalars), ('mom-1', _mom_one), ('eps-tiny', _tiny_eps), ('dtype-float64', _dtype_float64),
    ('device-meta', _meta_layer), ('x-2d', _oracle_2d), ('x-3d', _oracle_3d), ('x-4d', _oracle_4d),
    ('x-5d', _oracle_5d), ('x-float16', _half(torch.float16, 2e-3)), ('x-bfloat16', _half(torch.bfloat16, 2e-2)),
    ('x-non-contiguous', _same_as_contiguous(_transposed)),
    ('x-channels-last', _same_as_contiguous(_channels_last)), ('x-strided', _same_as_contiguous(_sliced)),
    ('x-expanded', _expanded), ('x-nan', _nan_channel(math.nan)), ('x-inf', _nan_channel(math.inf)),
    ('x-empty-eval', _empty_batch_eval), ('batch-size-1', _batch_size_1_first_step),
    ('batch-size-1-weights', _batch_size_1_weights), ('constant-channel', _constant_channel),
    ('mean-1e4-float32', _large_mean_float32), ('requires-grad', _gradients_match_course),
    ('state-float64', _state_float64_into_float32), ('state-round-trip', _state_round_trip),
    ('state-not-strict', _state_not_strict), ('state-nested-missing', _state_nested_missing_key), ('state-meta', _state_meta), ('state-rejected', _state_bad_then_good),
]


@pytest.mark.parametrize('name,check', ORACLE, ids=[o[0] for o in ORACLE])
def test_edge_call_matches_oracle(name, check):
    check()


def test_at_least_fifty_cases():
    assert len(RAISES) + len(ORACLE) >= 50


# ---------------------------------------------------------------- torch.compile: a ragged last batch

@pytest.mark.parametrize('backend', ['aot_eager', pytest.param('inductor', marks=pytest.mark.slow)])
def test_ragged_last_batch_compiles_in_one_graph_and_equals_eager(backend):
    """Batches of 8, 8, 8, then 5: fullgraph=True (an error on any graph break), dynamic shapes, same as eager.
    aot_eager traces what inductor traces (dynamo's graph, the autograd Function's backward, the buffer updates)
    at a fraction of the cost, so it runs in the fast loop; inductor's generated code runs with the slow tests."""
    torch._dynamo.reset()
    try:
        eager, twin = RunningBatchNorm(3), RunningBatchNorm(3)
        twin.load_state_dict(eager.state_dict())
        compiled = torch.compile(twin, fullgraph=True, backend=backend)
        for t, bs in enumerate((8, 8, 8, 5)):
            x = _x(bs, 3, 4, 4, seed=t).requires_grad_()
            ye, yc = eager(x), compiled(x)
            ge, = torch.autograd.grad(ye.pow(3).sum(), x)
            gc, = torch.autograd.grad(yc.pow(3).sum(), x)
            torch.testing.assert_close(yc, ye, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(gc, ge, rtol=1e-4, atol=1e-4 * ge.abs().max().item())
        for k, v in eager.state_dict().items():
            torch.testing.assert_close(twin.state_dict()[k], v, rtol=1e-5, atol=1e-6, msg=k)
        assert twin.num_samples_tracked.item() == 29
        eager.eval(); twin.eval()
        x = _x(3, 3, 4, 4, seed=9)
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-5, atol=1e-5)
    finally:
        torch._dynamo.reset()


@pytest.mark.slow
def test_explicitly_dynamic_compile_has_no_graph_break():
    "dynamic=True from the first call: one graph for every batch size, batch size 1 included."
    torch._dynamo.reset()
    try:
        eager, twin = RunningBatchNorm(3), RunningBatchNorm(3)
        compiled = torch.compile(twin, fullgraph=True, dynamic=True)
        for t, bs in enumerate((8, 5, 3, 1)):
            x = _x(bs, 3, 4, seed=t)
            torch.testing.assert_close(compiled(x), eager(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(twin.running_var, eager.running_var, rtol=1e-5, atol=1e-6)
    finally:
        torch._dynamo.reset()


def test_batchnorm2d_refuses_mixed_dtypes_in_eval():
    "The oracle for refusing a float32 batch in a float64 layer: torch's own layer fails in evaluation (CPU)."
    bn = nn.BatchNorm2d(3).double().eval()
    with pytest.raises(RuntimeError, match='mixed dtype'):
        bn(_x(4, 3, 2, 2))


def test_float16_momentum_none_refuses_an_accumulated_count():
    "momentum=None adds the counts up: a float16 layer refuses the batch that would take the total past 65504."
    m = RunningBatchNorm(3, momentum=None).half()
    for k in range(3): m(_x(16, 3, 32, 32, dtype=torch.float16))
    assert m.count.item() == 3 * 16384
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(ValueError, match=r"count would reach 65536 items per channel with x of shape \(16, 3, 32, 32\), "
                                         r"more than the layer's torch.float16 count can hold \(65504\)"):
        m(_x(16, 3, 32, 32, dtype=torch.float16))
    for k, v in m.state_dict().items(): assert torch.equal(v, before[k]), k  # nothing was merged
    m(_x(16, 3, 32, 31, dtype=torch.float16))  # 49152 + 15872 = 65024: fits
    assert m.count.item() == 65024 and torch.isfinite(m.running_var).all()
    f32 = RunningBatchNorm(3, momentum=None)  # float32: no such limit
    for k in range(5): f32(_x(16, 3, 32, 32))
    assert f32.count.item() == 5 * 16384


def test_batchnorm2d_refuses_mixed_dtypes_in_training_and_eval():
    "The oracle: on the CPU torch's layers refuse float32 into float64 and float64 into float32, in both modes."
    for cls, shape in ((nn.BatchNorm2d, (4, 3, 2, 2)), (nn.BatchNorm1d, (4, 3))):
        for layer_dtype, x_dtype in ((torch.float64, torch.float32), (torch.float32, torch.float64)):
            for training in (True, False):
                bn = cls(3).to(layer_dtype).train(training)
                with pytest.raises(RuntimeError, match='mixed dtype'):
                    bn(_x(*shape, dtype=x_dtype))
