__all__ = ['SEEDED', 'lr_schedule', 'LRFinderResult', 'lr_range_test', 'plot_lr_curves', 'synthetic_lr_curve', 'minimum_shift', 'steepest_lr', 'smooth', 'draw_smoothing', 'explorer_parts']

# %% ../nbs/01_ema.ipynb #3ec38b7e
import math  # no `from __future__` here: nbdev appends this module's cells after its `__all__` line
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable

import torch

from .core import check_number, progress as _progress
from .ema import ema, ema_seeded, ema_lag, zero_lag, zero_lag_beta, _check_beta
from .plotting import style, get_ax, mark_point, slider, choice

# %% ../nbs/01_ema.ipynb #a05944ff
def lr_schedule(start_lr: float = 1e-7, # first learning rate
                end_lr: float = 10.0, # last learning rate
                num_it: int = 100, # number of steps
               ) -> torch.Tensor:
    "Exponential schedule: `num_it` learning rates from `start_lr` to `end_lr`, equally spaced in log lr (float64)."
    check_number('start_lr', start_lr, 0, low_open=True)
    check_number('end_lr', end_lr, 0, low_open=True)
    check_number('num_it', num_it, 2, integer=True)
    if start_lr >= end_lr: raise ValueError(f"start_lr must be below end_lr={end_lr!r}, got start_lr={start_lr!r}")
    i = torch.arange(num_it, dtype=torch.float64)
    return start_lr * (end_lr / start_lr) ** (i / (num_it - 1))

def _finite_prefix(y: torch.Tensor) -> int:
    "Length of the leading run of finite values (a range test stops at the first non-finite one)."
    bad = (~torch.isfinite(y)).nonzero()
    return int(bad[0]) if len(bad) else len(y)

def _valley_index(y: torch.Tensor) -> int:
    "fastai's `valley` rule: about halfway along the longest decreasing run of the curve."
    n = len(y)
    lds = torch.ones(n, dtype=torch.long)  # longest decreasing subsequence ending at i
    for i in range(1, n):  # O(n^2) like fastai's, vectorised over j; n is a few hundred at most
        higher = y[:i] > y[i]
        if higher.any(): lds[i] = lds[:i][higher].max() + 1
    end = int(lds.argmax())  # first index reaching the longest run
    start = end - int(lds[end])
    sections = (end - start) / 3
    # fastai's start is one before the run, so a run from step 0 gives index -1, which Python reads as the
    # largest lr; the first lr is meant
    return max(0, start + int(sections) + int(sections / 2))

# %% ../nbs/01_ema.ipynb #14397114
@dataclass
class LRFinderResult:
    "A range test's record: learning rates, raw losses, their debiased EMA, and suggestions from any curve."
    lrs: torch.Tensor # (n,) learning rate of each step
    losses: torch.Tensor # (n,) raw loss of each step; the last may be non-finite (the test stopped there)
    smoothed: torch.Tensor # (n,) debiased EMA of `losses` with `beta`
    beta: float = 0.98 # the smoothing used during the test

    def curve(self, kind: str = 'smoothed', # 'raw', 'smoothed' or 'zero_lag'
              beta: float | None = None, # EMA beta (None: the test's); 'zero_lag' leaves as much noise as it
             ) -> torch.Tensor:
        "The raw, smoothed (debiased EMA) or zero-lag (forward-backward EMA of log loss, as much noise left) curve."
        if kind not in ('raw', 'smoothed', 'zero_lag'):
            raise ValueError(f"kind must be 'raw', 'smoothed' or 'zero_lag', got {kind!r}")
        beta = self.beta if beta is None else _check_beta(beta)
        if kind == 'zero_lag': beta = zero_lag_beta(beta)
        if kind == 'raw': return self.losses
        if kind == 'smoothed' and beta == self.beta: return self.smoothed
        n = _finite_prefix(self.losses)
        out = torch.full_like(self.losses, float('nan'))
        if kind == 'smoothed': out[:n] = ema(self.losses[:n], beta)
        # in log space: a diverging loss grows exponentially and its noise is roughly proportional to it
        else: out[:n] = zero_lag(self.losses[:n].clamp_min(1e-30).log(), beta).exp()
        return out

    def _pick(self, kind, beta, skip_start, skip_end) -> tuple:
        y = self.curve(kind, beta)
        check_number('skip_start', skip_start, 0, integer=True)
        check_number('skip_end', skip_end, 0, integer=True)
        lrs, y = self.lrs[skip_start:len(y) - skip_end], y[skip_start:len(y) - skip_end]
        n = _finite_prefix(y)
        if n < 2: raise ValueError(f"need at least 2 finite points after skipping, got {n}")
        return lrs[:n], y[:n]

    def argmin_lr(self, kind: str = 'smoothed', beta: float | None = None, skip_start: int = 0, skip_end: int = 0) -> float:
        "The learning rate at the curve's minimum."
        lrs, y = self._pick(kind, beta, skip_start, skip_end)
        return float(lrs[y.argmin()])

    def suggest(self, method: str = 'valley', # 'minimum' (lr at the minimum / 10), 'steep' or 'valley'
                kind: str = 'smoothed', # curve: 'raw', 'smoothed' or 'zero_lag'
                beta: float | None = None, # smoothing of the curve (None: the test's)
                skip_start: int = 0, skip_end: int = 0, # points left out at either end
               ) -> float:
        "A learning rate by fastai's rules: a tenth of the minimum, the steepest descent against log lr, or the valley."
        lrs, y = self._pick(kind, beta, skip_start, skip_end)
        if method == 'minimum': return float(lrs[y.argmin()]) / 10
        if method == 'steep': return float(lrs[torch.gradient(y, spacing=(lrs.log10(),))[0].argmin()])
        if method == 'valley': return float(lrs[_valley_index(y)])
        raise ValueError(f"method must be 'minimum', 'steep' or 'valley', got {method!r}")

    def plot(self, ax=None, # axes, or None for a new figure
             kinds: tuple = ('raw', 'smoothed', 'zero_lag'), # curves to draw, minima marked
            ):
        "Loss against learning rate (log axis) with each curve's minimum marked; returns the axes."
        return plot_lr_curves(self.lrs, {k: self.curve(k) for k in kinds}, ax=ax)

# %% ../nbs/01_ema.ipynb #a9f4d9b2
def lr_range_test(model: torch.nn.Module, # trained in place during the test, restored afterwards
                  loss_fn: Callable, # loss_fn(model(xb), yb) -> 0-d tensor
                  batches: Iterable, # (xb, yb) pairs; iterated again from the start if shorter than num_it
                  opt_func: Callable = torch.optim.Adam, # opt_func(params, lr=...) -> optimizer
                  start_lr: float = 1e-7, # first learning rate
                  end_lr: float = 10.0, # last learning rate
                  num_it: int = 100, # steps
                  beta: float = 0.98, # decay of the debiased EMA used by the stop rule
                  stop_div: bool = True, # stop once the smoothed loss exceeds 4x its best
                  progress: bool = True, # show a progress bar
                 ) -> LRFinderResult:
    "Train with an exponentially growing learning rate, record the losses, and give the model back unchanged."
    lrs, beta = lr_schedule(start_lr, end_lr, num_it), _check_beta(beta)
    params = {k: p.detach().clone() for k, p in model.named_parameters()}
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
    grads = {k: None if p.grad is None else p.grad.detach().clone() for k, p in model.named_parameters()}
    modes = [(m, m.training) for m in model.modules()]
    opt = opt_func(model.parameters(), lr=float(lrs[0]))
    losses, smoothed, best, avg = [], [], math.inf, 0.0
    try:
        model.train()
        it = iter(batches)
        for i in _progress(range(num_it), total=num_it, enabled=progress, desc='lr range test'):
            try: xb, yb = next(it)
            except StopIteration:  # cycle: start the batches again
                it = iter(batches)
                try: xb, yb = next(it)
                except StopIteration: raise ValueError("batches must yield at least one (xb, yb) pair, got none") from None
            for g in opt.param_groups: g['lr'] = float(lrs[i])
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            raw = loss.item()  # a host sync per step: the stop rule needs the number now
            avg = beta * avg + (1 - beta) * raw
            s = avg / -math.expm1((i + 1) * math.log(beta)) if beta > 0 else raw  # debiased, as `ema`
            losses.append(raw)
            smoothed.append(s)
            if not math.isfinite(s): break
            best = min(best, s)
            if stop_div and s > 4 * best: break
    finally:
        with torch.no_grad():
            for k, p in model.named_parameters(): p.copy_(params[k])
            for k, b in model.named_buffers(): b.copy_(buffers[k])
        for k, p in model.named_parameters(): p.grad = grads[k]
        for m, mode in modes: m.training = mode
    n = len(losses)
    return LRFinderResult(lrs[:n].clone(), torch.tensor(losses, dtype=torch.float64),
                          torch.tensor(smoothed, dtype=torch.float64), beta)

# %% ../nbs/01_ema.ipynb #28215006
def plot_lr_curves(lrs, # (n,) learning rates
                   curves: dict, # kind ('raw', 'smoothed'/'debiased', 'ema', 'zero_lag', 'truth') -> (n,) losses
                   ax=None, # axes, or None for a new figure
                   mark_minima: bool = True, # dot at each curve's minimum
                  ):
    "Loss curves against learning rate on a log axis, in the course's colours; returns the axes."
    ax = get_ax(ax)
    kind_of = {'smoothed': 'debiased'}
    labels = {'raw': 'raw', 'smoothed': 'smoothed (debiased EMA)', 'debiased': 'debiased EMA', 'ema': 'EMA',
              'zero_lag': 'zero-lag', 'truth': 'noise-free'}
    lrs = lrs.detach().cpu().double() if isinstance(lrs, torch.Tensor) else torch.as_tensor(lrs, dtype=torch.float64)
    top = None
    for name, y in curves.items():
        kind = kind_of.get(name, name)
        y = torch.as_tensor(y, dtype=torch.float64)
        ax.plot(lrs.numpy(), y.numpy(), label=labels.get(name, name), **style(kind))
        n = _finite_prefix(y)
        if n == 0: continue
        if name == 'raw': top = float(y[:max(1, n // 10)].max()) * 1.6  # keep the divergence from flattening the plot
        if mark_minima and name != 'truth':
            i = int(y[:n].argmin())
            mark_point(ax, float(lrs[i]), float(y[i]), kind)
    ax.set_xscale('log')
    ax.set(xlabel='learning rate', ylabel='loss')
    if top is not None: ax.set_ylim(0, top)
    ax.legend(fontsize=8)
    return ax

# %% ../nbs/01_ema.ipynb #da05880b
def synthetic_lr_curve(num_it: int = 100, # steps of the range test
                       start_lr: float = 1e-7, end_lr: float = 10.0, # schedule ends
                       noise: float = 0.12, # relative noise (standard deviation of log loss)
                       seed: int = 0, # seed of the noise
                      ) -> tuple:
    "A range test with a known answer: `(lrs, noise_free, raw)` float64 tensors; the noise-free minimum is near lr 0.17."
    lrs = lr_schedule(start_lr, end_lr, num_it)
    check_number('noise', noise, 0)
    u = lrs.log10()
    noise_free = 0.25 + 2.05 * torch.sigmoid(-(u + 2.6) / 0.45) + 0.02 * torch.exp((u + 0.7) / 0.22)
    g = torch.Generator().manual_seed(seed)
    return lrs, noise_free, noise_free * torch.exp(noise * torch.randn(num_it, generator=g, dtype=torch.float64))

def minimum_shift(lrs, # (n,) learning rates
                  curve: torch.Tensor, # (n,) curve whose minimum is measured
                  reference: torch.Tensor, # (n,) curve it is compared with
                 ) -> float:
    "Decades from `reference`'s minimum to `curve`'s (positive: `curve`'s minimum is at a larger lr)."
    lrs = torch.as_tensor(lrs, dtype=torch.float64)
    a, b = curve[:_finite_prefix(curve)], reference[:_finite_prefix(reference)]
    return math.log10(float(lrs[a.argmin()])) - math.log10(float(lrs[b.argmin()]))

def steepest_lr(lrs, # (n,) learning rates
                curve: torch.Tensor, # (n,) losses
               ) -> float:
    "Learning rate where `curve` falls fastest against log10(lr) (central differences)."
    lrs = torch.as_tensor(lrs, dtype=torch.float64)
    n = _finite_prefix(curve)
    return float(lrs[torch.gradient(curve[:n], spacing=(lrs[:n].log10(),))[0].argmin()])

# %% ../nbs/01_ema.ipynb #5c764def
_INITS = ('zero + debias', 'zero', 'first value')
SEEDED = '#9467bd'  # purple: EMA seeded with the first value (this notebook's extra concept)

def smooth(values, # 1-D losses
           beta: float = 0.98, # decay
           init: str = 'zero + debias', # 'zero + debias', 'zero' or 'first value'
          ) -> torch.Tensor:
    "The EMA of `values` started one of three ways: zero and debiased, zero, or seeded with the first value."
    if init == 'zero + debias': return ema(values, beta)
    if init == 'zero': return ema(values, beta, debias=False)
    if init == 'first value': return ema_seeded(values, beta)
    raise ValueError(f"init must be one of {list(_INITS)}, got {init!r}")

@lru_cache(maxsize=16)
def _explorer_curve(num_it: int) -> tuple: return synthetic_lr_curve(num_it=num_it, seed=0)

def draw_smoothing(fig, # a matplotlib Figure to draw into
                   beta: float = 0.98, # decay of the EMA; the zero-lag curve leaves as much noise
                   num_it: int = 100, # steps of the synthetic range test (1e-7 to 10)
                   init: str = 'zero + debias', # how the EMA starts
                  ) -> str:
    "Raw, smoothed and zero-lag LR-finder curves with their minima; returns the readout (shift in decades, lag)."
    lrs, noise_free, raw = _explorer_curve(int(num_it))
    sm, zl = smooth(raw, beta, init), zero_lag(raw.log(), zero_lag_beta(beta)).exp()  # as much noise left as the EMA
    ax = fig.subplots()
    kind = {'zero + debias': 'debiased', 'zero': 'ema', 'first value': 'debiased'}[init]
    sm_style = style(kind, **({'color': SEEDED} if init == 'first value' else {}))
    x = lrs.numpy()
    ax.plot(x, noise_free.numpy(), label='noise-free', **style('truth'))
    ax.plot(x, raw.numpy(), label='raw', **style('raw'))
    ax.plot(x, sm.numpy(), label=f'EMA, {init}', **sm_style)
    ax.plot(x, zl.numpy(), label='zero-lag', **style('zero_lag'))
    for y, c in ((raw, style('raw')['color']), (sm, sm_style['color']), (zl, style('zero_lag')['color'])):
        i = int(y.argmin())
        ax.plot([x[i]], [float(y[i])], marker='o', markersize=7, color=c, markeredgecolor='white', zorder=5)
    shift, zl_shift = minimum_shift(lrs, sm, raw), minimum_shift(lrs, zl, raw)
    i_raw = int(raw.argmin())
    lag = ema_lag(beta, i_raw + 1)
    dec = lag * math.log10(float(lrs[-1] / lrs[0])) / (len(lrs) - 1)
    ax.text(0.02, 0.06, f'EMA minimum moved {shift:+.2f} decades\nzero-lag minimum moved {zl_shift:+.2f} decades',
            transform=ax.transAxes, fontsize=9)
    ax.set_xscale('log')
    ax.set(xlabel='learning rate', ylabel='loss', ylim=(0, 1.6 * float(raw[: max(1, len(raw) // 10)].max())),
           title=f'beta {beta}, {num_it} steps over 8 decades')
    ax.legend(fontsize=8, loc='upper right')
    return f'shift: {shift:+.2f} decades\nzero-lag shift: {zl_shift:+.2f} decades\nlag: {lag:.1f} steps\nlag: {dec:.2f} decades'

def explorer_parts() -> tuple:
    "The notebook's main live figure as `(draw, controls)`, for `explore(draw, **controls)`."
    controls = dict(beta=slider(0.98, options=[0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999]),
                    num_it=slider(100, options=[50, 100, 200, 500, 1000]),
                    init=choice('zero + debias', list(_INITS)))
    return draw_smoothing, controls