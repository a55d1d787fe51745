"""`lossnotes.ema.ema` against pandas' `ewm(adjust=True)` and `scipy.signal.lfilter` (plus its debias) on 1e3, 1e5
and 1e7 float64 values; and the streaming `EMA.update` per training step against `epoch_loss += loss.item()`, per
call and as a share of one training step of a 784-50-10 MLP at batch 64."""
from __future__ import annotations

import itertools
import math
import os

import numpy as np
import torch

from common import measure, mlp_step, row
from lossnotes.ema import EMA, ema

TITLE = 'EMA: vectorised ema() vs pandas ewm and scipy lfilter; streaming EMA.update vs loss.item() per step'
THREADS = int(os.environ.get('LOSSNOTES_BENCH_THREADS', '1'))  # the runner's setting
BETA = 0.98
BS = 64


def _lfilter_debiased(x: np.ndarray, beta: float) -> np.ndarray:
    "scipy's IIR filter for the zero-started EMA, then the debias divide on the prefix where it is not 1.0."
    from scipy.signal import lfilter
    y = lfilter([1 - beta], [1, -beta], x)
    n = min(len(y), math.ceil(60 / -math.log2(beta)))
    y[:n] /= -np.expm1(np.arange(1, n + 1) * math.log(beta))
    return y


def _series(n: int, quick: bool) -> list[dict]:
    import pandas as pd
    from scipy.signal import lfilter
    x = np.abs(np.random.default_rng(0).normal(2.0, 1.0, n))
    t = torch.from_numpy(x)  # shares memory: no copy is timed
    ours = ema(t, BETA).numpy()
    oracle = pd.Series(x).ewm(alpha=1 - BETA, adjust=True).mean().to_numpy()
    err = float(np.abs(ours - oracle).max())
    assert err <= 1e-12, f'ema differs from pandas by {err:.2e} at n={n}'
    assert float(np.abs(_lfilter_debiased(x, BETA) - oracle).max()) <= 1e-9
    repeat, number = (3, 1) if quick else ((7, 3) if n <= 1e5 else (7, 1))
    number = number if n > 1e4 else (1 if quick else 200)
    case = f'n = {n:.0e} float64, beta {BETA}'
    pandas = measure(lambda: pd.Series(x).ewm(alpha=1 - BETA, adjust=True).mean(), repeat, number)
    lf = measure(lambda: lfilter([1 - BETA], [1, -BETA], x), repeat, number)
    lfd = measure(lambda: _lfilter_debiased(x, BETA), repeat, number)
    mine = measure(lambda: ema(t, BETA), repeat, number)
    copy = measure(lambda: t.clone(), repeat, number)
    per = lambda s: f'{s[0] / n * 1e9:.1f} ns per value'
    big, small = n >= 1e7, n <= 1e3
    return [
        row(case, 'pandas ewm(adjust=True).mean()', pandas, note=per(pandas)),
        row(case, 'scipy lfilter (no debias)', lf, pandas, 'pandas', note=per(lf)),
        row(case, 'scipy lfilter + debias', lfd, pandas, 'pandas', note=per(lfd)),
        row(case, 'lossnotes ema()', mine, pandas, 'pandas', target='<= 2x pandas' if small else '',
            met=(mine[0] <= 2 * pandas[0]) if small else None, note=f'{per(mine)}; max |ema - pandas| = {err:.1e}'),
        row(case, 'lossnotes ema()', mine, lf, 'scipy lfilter (no debias)', target='<= 1.0x lfilter' if big else '',
            met=(mine[0] <= lf[0]) if big else None,
            note=per(mine) + ('' if not big or mine[0] <= lf[0] else f'; allocating and writing the output alone '
                              f'(a plain copy) takes {per(copy)}: memory traffic, not arithmetic, sets the pace')),
        row(case, 'plain copy (tensor.clone)', copy, mine, 'lossnotes ema()', note=per(copy)),
    ]


def _streaming(quick: bool) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    losses = list((2.3 + 0.1 * torch.randn(1000, generator=g)).unbind())  # float32 0-d tensors, as a loop sees them
    e, streamed = EMA(BETA), []
    for l in losses:
        e.update(l)  # returns None; compute() reads the average
        streamed.append(e.compute())
    streamed = torch.stack(streamed)
    torch.testing.assert_close(streamed.double(), ema(torch.stack(losses).double(), BETA), rtol=1e-5, atol=0)
    epoch_loss = 0.0
    for l in losses: epoch_loss += l.item()
    assert abs(epoch_loss - float(torch.stack(losses).double().sum())) < 1e-3
    repeat, number = (3, 50) if quick else (9, 2000)
    next_loss = itertools.cycle(losses).__next__

    def with_item():
        nonlocal epoch_loss
        epoch_loss += next_loss().item()

    e = EMA(BETA)
    item = measure(with_item, repeat, number)
    upd = measure(lambda: e.update(next_loss()), repeat, number)
    e2 = EMA(BETA)
    upd_float = measure(lambda: e2.update(2.3), repeat, number)
    step = measure(mlp_step(BS), repeat, max(1, number // 20))
    case = 'per training step'
    pct = lambda s: f'{100 * s[0] / step[0]:.1f}% of a training step'
    return [
        row(case, 'epoch_loss += loss.item()', item, note=pct(item) + '; on a GPU .item() also waits for the device'),
        row(case, 'EMA.update(0-d float32 tensor)', upd, item, 'epoch_loss += loss.item()',
            note=pct(upd) + '; no .item(): stays on the device'),
        row(case, 'EMA.update(python float)', upd_float, item, 'epoch_loss += loss.item()', note=pct(upd_float)),
        row(case, 'training step, 784-50-10 MLP, batch 64, SGD', step, note='forward, loss, backward, step'),
        row(case, 'EMA.update(0-d float32 tensor)', upd, step, 'training step, 784-50-10 MLP, batch 64, SGD', note=pct(upd)),
    ]


def run(quick: bool) -> list[dict]:
    torch.set_num_threads(THREADS)
    rows = []
    for n in ((1_000, 100_000) if quick else (1_000, 100_000, 10_000_000)):
        rows += _series(n, quick)
    rows += _streaming(quick)
    note = f'torch.set_num_threads({THREADS}) in this process; pandas and scipy are single-threaded'
    for r in rows: r['note'] = f"{r['note']}; {note}" if r['note'] else note
    return rows
