"""Timing helpers shared by the benchmarks. Each benchmarks/bench_<topic>.py defines

    TITLE = 'one line'
    def run(quick: bool) -> list[dict]

and every row it returns has: case, impl, median_s, min_s, max_s, ref (the impl it is compared with, measured in
the same run, or None), ratio (median / the reference's median, or None), target (text, or ''), met (True, False or
None when the row has no target) and note (''). `quick=True` uses tiny sizes and few repetitions: it proves the
benchmark runs and that the implementations agree (assert that), never a timing."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def measure(fn: Callable[[], object], repeat: int = 7, number: int = 1, warmup: int = 2) -> tuple[float, float, float]:
    "Median, min and max seconds per call of `fn` over `repeat` timings of `number` calls, after `warmup` calls."
    for _ in range(warmup): fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number): fn()
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times), min(times), max(times)


def row(case: str, impl: str, stats: tuple[float, float, float], ref_stats: tuple | None = None,
        ref: str | None = None, target: str = '', met: bool | None = None, note: str = '') -> dict:
    "One result row; the ratio is this median over the reference's median."
    med, lo, hi = stats
    ratio = med / ref_stats[0] if ref_stats else None
    return dict(case=case, impl=impl, median_s=med, min_s=lo, max_s=hi, ref=ref, ratio=ratio, target=target,
                met=met, note=note)


def mlp_step(batch_size: int = 64) -> Callable[[], object]:
    "One SGD step of a 784-50-10 MLP on a random batch (forward, loss, backward, step), as a callable that returns the loss."
    import torch
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 50), torch.nn.ReLU(), torch.nn.Linear(50, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch_size, 784), torch.randint(0, 10, (batch_size,))

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return step
