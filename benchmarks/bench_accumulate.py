"""Per-step cost of accumulating an epoch loss: LossMeter.update vs torchmetrics' MeanMetric.update vs
`epoch_loss += loss.item() * bs`, per call and as a share of one training step of a 784-50-10 MLP at batch 64.

It also measures what LossMeter's queue of batch means buys: the kernel work of adding each batch mean to the
float64 state at once, against queueing it in a list and folding 64 at a time with one stack and sum (both re-typed
here), with and without skip_nonfinite, as shares of the same training step."""
from __future__ import annotations

import itertools
import os

import torch

from common import measure, mlp_step, row
from lossnotes.accumulate import LossMeter

TITLE = 'Epoch-loss accumulation: LossMeter.update vs MeanMetric.update vs .item(), per training step'
THREADS = int(os.environ.get('LOSSNOTES_BENCH_THREADS', '1'))  # the runner's setting
BS = 64


def _losses(n: int) -> list[torch.Tensor]:
    "n batch-mean losses near 2.3 (a 10-class cross-entropy early in training), float32 0-d tensors."
    g = torch.Generator().manual_seed(0)
    return list((2.3 + 0.1 * torch.randn(n, generator=g)).unbind())


def _exactness(n: int) -> dict:
    "Relative error of a float32 MeanMetric and of LossMeter against a float64 oracle after n updates."
    from torchmetrics import MeanMetric
    losses = _losses(n)
    mm, lm = MeanMetric(), LossMeter()
    for l in losses:
        mm.update(l, weight=BS)
        lm.update(l, n=BS)
    exact = torch.stack(losses).double().mean().item()
    return dict(meanmetric=abs(mm.compute().item() / exact - 1), lossmeter=abs(lm.compute().item() / exact - 1))


FOLD = 64  # batch means folded at a time by the queued variants


def _cores(cycling):
    "The kernel work per batch mean of the two designs, unweighted and with skip_nonfinite, as callables."
    s, w, k = (torch.zeros((), dtype=torch.float64) for _ in range(3))
    pending = []

    def direct(): s.add_(cycling(), alpha=BS)  # the weight, BS, is known on the host

    def direct_skip():
        v = cycling()
        ok = v.isfinite()
        s.add_(torch.where(ok, v, 0.), alpha=BS); w.add_(ok, alpha=BS); k.add_(~ok, alpha=BS)

    def queued():
        pending.append(cycling())
        if len(pending) >= FOLD:
            s.add_(torch.stack(pending).to(torch.float64).sum(), alpha=BS); pending.clear()

    def queued_skip():
        pending.append(cycling())
        if len(pending) >= FOLD:
            v = torch.stack(pending).to(torch.float64); ok = v.isfinite()
            s.add_(torch.where(ok, v, 0.).sum(), alpha=BS); w.add_(ok.sum(), alpha=BS); k.add_((~ok).sum(), alpha=BS)
            pending.clear()
    return dict(direct=direct, direct_skip=direct_skip, queued=queued, queued_skip=queued_skip)


def run(quick: bool) -> list[dict]:
    from torchmetrics import MeanMetric
    torch.set_num_threads(THREADS)
    number, repeat = (50, 3) if quick else (2000, 9)
    losses = _losses(number)
    it = itertools.cycle(losses)

    def cycling(): return next(it)

    lm, mm, buf = LossMeter(), MeanMetric(), torch.zeros((), dtype=torch.float64)
    lm_skip = LossMeter(skip_nonfinite=True)
    acc = [0.0]

    def lossmeter(): lm.update(cycling(), n=BS)
    def lossmeter_skip(): lm_skip.update(cycling(), n=BS)
    def meanmetric(): mm.update(cycling(), weight=BS)
    def item(): acc[0] += cycling().item() * BS
    def add_floor(): buf.add_(cycling(), alpha=BS)

    g = torch.Generator().manual_seed(1)
    tok = torch.rand(BS, 32, generator=g) * 4  # (batch, tokens) per-token losses of a padded batch
    mask = torch.arange(32) < torch.randint(1, 33, (BS, 1), generator=g)  # (batch, tokens): False on padding
    lm_w, mm_w = LossMeter(), MeanMetric()

    def lossmeter_mask(): lm_w.update(tok, weight=mask)
    def meanmetric_mask(): mm_w.update(tok, weight=mask.float())

    if quick:  # the implementations agree on the same losses
        for f in (lossmeter, lossmeter_skip, meanmetric, item):
            it = itertools.cycle(losses)  # start each at the first loss
            for _ in range(number): f()
        exact = torch.stack(losses).double().mean().item()
        assert abs(lm.compute().item() - exact) <= 1e-15 * exact
        assert abs(lm_skip.compute().item() - exact) <= 1e-15 * exact
        assert abs(acc[0] / (BS * number) - exact) <= 1e-12 * exact
        assert abs(mm.compute().item() - exact) <= 1e-5 * exact
        ex = _exactness(200)
        assert ex['lossmeter'] <= 1e-15

    t_mm = measure(meanmetric, repeat=repeat, number=number)
    t_lm = measure(lossmeter, repeat=repeat, number=number)
    t_item = measure(item, repeat=repeat, number=number)
    t_add = measure(add_floor, repeat=repeat, number=number)
    t_mm_w = measure(meanmetric_mask, repeat=repeat, number=number)
    t_lm_w = measure(lossmeter_mask, repeat=repeat, number=number)
    if quick:  # both give the per-token mean over the real tokens
        exact = tok.double()[mask].mean().item()
        assert abs(lm_w.compute().item() - exact) <= 1e-15 * exact
        assert abs(mm_w.compute().item() - exact) <= 1e-5 * exact
    t_lm_skip = measure(lossmeter_skip, repeat=repeat, number=number)
    cores = {name: measure(f, repeat=repeat, number=FOLD * max(1, number // FOLD))
             for name, f in _cores(cycling).items()}
    step = mlp_step(BS)
    t_step = measure(step, repeat=repeat, number=max(10, number // 20))

    ex = _exactness(200 if quick else 10_000)
    note = f'CPU, torch.set_num_threads({THREADS}); per call, batch size {BS}'
    us = lambda t: f'{t[0] * 1e6:.2f} us'
    rows = [
        row('update per call', 'MeanMetric.update(loss, weight=bs)', t_mm,
            note=f'{note}; {us(t_mm)}; float32 state: rel. error {ex["meanmetric"]:.1e} after '
                 f'{200 if quick else 10_000} updates'),
        row('update per call', 'LossMeter.update(loss, n=bs)', t_lm, t_mm, 'MeanMetric.update(loss, weight=bs)',
            target='<= 0.1x MeanMetric.update, exact in float64',
            met=(t_lm[0] <= 0.1 * t_mm[0]) and ex['lossmeter'] <= 1e-15,
            note=f'{note}; {us(t_lm)}, {t_lm[0] / t_add[0]:.2f}x one add_; float64 state: rel. error '
                 f'{ex["lossmeter"]:.1e}'),
        row('update per call', 'epoch_loss += loss.item() * bs', t_item, t_mm, 'MeanMetric.update(loss, weight=bs)',
            note=f'{note}; {us(t_item)}; on a GPU each call is a device-to-host synchronisation'),
        row('update per call', 'float64 buffer add_(loss, alpha=bs) (floor of a per-call kernel)', t_add, t_mm,
            'MeanMetric.update(loss, weight=bs)', note=f'{note}; {us(t_add)}'),
        row('update per call, padding mask', 'MeanMetric.update(losses, weight=mask)', t_mm_w,
            note=f'{note}; {us(t_mm_w)}; (64, 32) token losses, float32 state'),
        row('update per call, padding mask', 'LossMeter.update(losses, weight=mask)', t_lm_w, t_mm_w,
            'MeanMetric.update(losses, weight=mask)', target='<= 1x MeanMetric.update(losses, weight=mask)',
            met=t_lm_w[0] <= t_mm_w[0], note=f'{note}; {us(t_lm_w)}; (64, 32) token losses, float64 state'),
        row('share of a training step', 'MLP 784-50-10 SGD step, batch 64', t_step,
            note=f'{note}; {us(t_step)} per step'),
    ]
    for name, t in (('LossMeter.update(loss, n=bs)', t_lm), ('LossMeter(skip_nonfinite=True).update(loss, n=bs)', t_lm_skip),
                    ('MeanMetric.update(loss, weight=bs)', t_mm), ('epoch_loss += loss.item() * bs', t_item)):
        rows.append(row('share of a training step', name, t, t_step, 'MLP 784-50-10 SGD step, batch 64',
                        note=f'{note}; {100 * t[0] / t_step[0]:.2f}% of a step'))
    pct = lambda t: f'{100 * t[0] / t_step[0]:.2f}% of a step'
    for what, d, q, ops in (('', 'direct', 'queued', 'one add_'),
                            (', skip_nonfinite', 'direct_skip', 'queued_skip', 'isfinite, where, ~ and three add_')):
        case = 'queue or add at once, per batch mean' + what
        bought = (cores[d][0] - cores[q][0]) / t_step[0]
        rows.append(row(case, f'add at once ({ops})', cores[d], t_step, 'MLP 784-50-10 SGD step, batch 64',
                        note=f'{note}; {us(cores[d])}; {pct(cores[d])}'))
        rows.append(row(case, f'queue, fold {FOLD} at a time (stack, sum)', cores[q], cores[d], f'add at once ({ops})',
                        note=f'{note}; {us(cores[q])}; {pct(cores[q])}; the queue buys {100 * bought:.2f}% of a step'))
    return rows


if __name__ == '__main__':
    import sys
    for r in run(quick='--quick' in sys.argv):
        ratio = '' if r['ratio'] is None else f"{r['ratio']:.3f}x {r['ref']}"
        print(f"{r['case']:26s} {r['impl']:66s} {r['median_s'] * 1e6:9.2f} us  {ratio:45s} {r['met']}  {r['note']}")
