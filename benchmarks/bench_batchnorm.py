"""Forward + backward of RunningBatchNorm against nn.BatchNorm2d (and the course's layer), eager and compiled,
at three activation shapes, with the graph-break count of `torch._dynamo.explain`, and a ragged epoch (batches of
8, 8, 8, then 5) compiled with fullgraph=True."""
from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from common import measure, row

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tests'))
from course_batchnorm import CourseRunningBatchNorm  # noqa: E402  the course's layer, re-typed
from lossnotes.batchnorm import RunningBatchNorm

TITLE = 'RunningBatchNorm vs nn.BatchNorm2d: forward + backward, eager and torch.compile'
THREADS = int(os.environ.get('LOSSNOTES_BENCH_THREADS', '1'))  # the runner's setting
SHAPES = [(64, 32, 28, 28), (8, 64, 14, 14), (2, 32, 28, 28)]
QUICK_SHAPES = [(4, 3, 5, 5)]
MISSED_NOTE = ("the torch kernels the layer runs, timed alone, take less than nn.BatchNorm2d's whole step (the "
               "kernels-alone row); the rest is a fixed cost per step, not per value: the Python autograd.Function "
               "and about 20 operations on (C,) tensors and 0-d buffers, which weigh most at the smallest activations")


def _step(module, x, g):
    "One forward + backward: gradients of the input and of the parameters."
    params = list(module.parameters())
    def f():
        return torch.autograd.grad(module(x), [x, *params], g)
    return f


def _kernels_only(x, g):
    "The full-size work of one RunningBatchNorm training step (forward and backward) with its (C,) inputs made up front."
    c = x.shape[1]
    w, mean, var, k1, k0, a = (torch.rand(c) + 0.5 for _ in range(6))
    bwd = torch.ops.aten.native_batch_norm_backward.default
    xd = x.detach()
    def f():
        torch.batch_norm_update_stats(xd, None, None, 0.0)
        torch.native_batch_norm(xd, w, None, mean, var, False, 0.0, 1e-5)
        bwd(g, xd, w, mean, var, None, None, False, 1e-5, [False, True, True])
        torch.native_batch_norm(xd, k1, k0, mean, var, False, 0.0, 1e-5)[0].addcmul_(g, a.view(1, -1, 1, 1))
    return f


def _cpu_time(f, number: int) -> float:
    """CPU seconds of this thread per call: with one torch thread the forward and the backward run on it, and the time
    it spends descheduled on a shared machine is not counted."""
    t0 = time.thread_time()
    for _ in range(number): f()
    return (time.thread_time() - t0) / number


def _interleaved(fns: dict, rounds: int, number: int, warmup: int) -> dict:
    "Time each fn once per round, in turn, so that a slow spell of a shared machine hits all of them alike."
    times = {k: [] for k in fns}
    for k, f in fns.items(): measure(f, 1, 1, warmup)
    for _ in range(rounds):
        for k, f in fns.items(): times[k].append(_cpu_time(f, number))
    return {k: (statistics.median(v), min(v), max(v)) for k, v in times.items()}


def _backend(quick: bool) -> str:
    "The compiler backend: inductor, or aot_eager in quick mode."
    # the quick mode checks that the benchmark runs and agrees: aot_eager has dynamo's graphs, breaks and recompiles
    # without inductor's code generation, whose results tests/test_batchnorm.py and test_bad_input_batchnorm.py test
    return 'aot_eager' if quick else 'inductor'


def run(quick: bool) -> list[dict]:
    torch.set_num_threads(THREADS)
    note_threads = f'torch.set_num_threads({THREADS})'
    rows = []
    shapes = QUICK_SHAPES if quick else SHAPES
    rounds, number, warmup = (3, 1, 1) if quick else (31, 5, 3)
    for shape in shapes:
        case = 'x'.join(map(str, shape))
        c = shape[1]
        gen = torch.Generator().manual_seed(0)
        x = (torch.randn(shape, generator=gen) * 2 + 1).requires_grad_()
        g = torch.randn(shape, generator=gen)
        bn, rbn, course = nn.BatchNorm2d(c), RunningBatchNorm(c), CourseRunningBatchNorm(c)
        t = _interleaved({'bn': _step(bn, x, g), 'ours': _step(rbn, x, g), 'course': _step(course, x, g),
                          'kernels': _kernels_only(x, g)}, rounds, number, warmup)
        ref, eager = t['bn'], t['ours']
        rows.append(row(case, 'nn.BatchNorm2d (eager)', ref, note=f'{note_threads}; eager rows timed in turn; CPU time of the calling thread (time.thread_time)'))
        ratio = eager[0] / ref[0]  # every shape, the small batches the layer exists for included
        rows.append(row(case, 'RunningBatchNorm (eager)', eager, ref, 'nn.BatchNorm2d (eager)', target='<= 1.5x',
                        met=ratio <= 1.5, note='' if ratio <= 1.5 else MISSED_NOTE))
        rows.append(row(case, "RunningBatchNorm's torch kernels alone", t['kernels'], ref, 'nn.BatchNorm2d (eager)',
                        note='batch_norm_update_stats, the eval-mode kernel, native_batch_norm_backward (sums), the '
                             'eval-mode kernel again and addcmul_: what the layer cannot avoid, without its Python '
                             'autograd.Function, the (C,) operations and the buffer updates'))
        rows.append(row(case, 'course RunningBatchNorm (eager)', t['course'], ref, 'nn.BatchNorm2d (eager)'))
        torch._dynamo.reset()
        bn_c = torch.compile(nn.BatchNorm2d(c), dynamic=False, backend=_backend(quick))
        ours_twin = RunningBatchNorm(c)
        ours_twin.load_state_dict(rbn.state_dict())
        rbn_c = torch.compile(ours_twin, dynamic=False, backend=_backend(quick))
        if quick:  # compiled and eager agree, step after step
            a, b = RunningBatchNorm(c), RunningBatchNorm(c)
            b_c = torch.compile(b, dynamic=False, backend=_backend(quick))
            for _ in range(5):
                ga, gb = _step(a, x, g)(), _step(b_c, x, g)()
                for u, v in zip(ga, gb): torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(a.running_var, b.running_var, rtol=1e-5, atol=1e-6)
        tc = _interleaved({'bn': _step(bn_c, x, g), 'ours': _step(rbn_c, x, g)}, rounds, number, warmup)
        rows.append(row(case, 'nn.BatchNorm2d (compiled)', tc['bn'], ref, 'nn.BatchNorm2d (eager)'))
        compiled = tc['ours']
        rows.append(row(case, 'RunningBatchNorm (compiled)', compiled, eager, 'RunningBatchNorm (eager)',
                        target='< 1x', met=compiled[0] < eager[0]))
        torch._dynamo.reset()
    xe = torch.randn(shapes[0], requires_grad=True)
    breaks = {}
    log = logging.getLogger('torch._dynamo')
    level, log.level = log.level, logging.ERROR  # dynamo logs each of the course layer's graph breaks
    for name, m in (('RunningBatchNorm', RunningBatchNorm(shapes[0][1])),
                    ('course RunningBatchNorm', CourseRunningBatchNorm(shapes[0][1]))):
        e = torch._dynamo.explain(m)(xe)
        breaks[name] = e.graph_break_count
    log.setLevel(level)
    torch._dynamo.reset()
    if quick: assert breaks['RunningBatchNorm'] == 0
    rows.append(row('graph breaks', 'RunningBatchNorm', (0.0, 0.0, 0.0), target='0 breaks',
                    met=breaks['RunningBatchNorm'] == 0,
                    note=f"torch._dynamo.explain: {breaks['RunningBatchNorm']} breaks; course layer: "
                         f"{breaks['course RunningBatchNorm']} (bool(self.batch < 20), self.step < 100)"))
    rows += _ragged(quick)
    return rows


def _ragged(quick: bool) -> list[dict]:
    "A ragged epoch (batches of 8, 8, 8, then 5) forward + backward, compiled with fullgraph=True against eager."
    c = 3 if quick else 32
    gen = torch.Generator().manual_seed(1)
    xs = [(torch.randn(bs, c, 14, 14, generator=gen) * 2 + 1).requires_grad_() for bs in (8, 8, 8, 5)]
    torch._dynamo.reset()
    eager, twin = RunningBatchNorm(c), RunningBatchNorm(c)
    compiled = torch.compile(twin, fullgraph=True, backend=_backend(quick))  # any graph break raises here
    def epoch(m):
        def f():
            for x in xs: torch.autograd.grad(m(x).square().sum(), x)
        return f
    for x in xs:  # the first compiled epoch: one static graph, then one with a dynamic batch size
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-5, atol=1e-5)
    rounds, number, warmup = (3, 1, 1) if quick else (9, 3, 2)
    t = _interleaved({'eager': epoch(eager), 'compiled': epoch(compiled)}, rounds, number, warmup)
    torch._dynamo.reset()
    return [row('ragged 8,8,8,5', 'RunningBatchNorm (eager)', t['eager'], note=f'{c} channels, 14x14; one epoch'),
            row('ragged 8,8,8,5', 'RunningBatchNorm (compiled, fullgraph)', t['compiled'], t['eager'],
                'RunningBatchNorm (eager)', target='compiles', met=True,
                note='the short last batch recompiles once with a dynamic batch size, without a graph break')]
