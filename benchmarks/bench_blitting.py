"""What the live figures' overlap detection buys: a slider move (`Explorer.step` + `frame`) of each lesson explorer
with the moving layer `Explorer` picks (the artists `update` changes and the still artists drawn after them that
meet them) against a layer of every artist drawn after the moving ones, which is correct without any geometry
(matplotlib's blitting recipe with the caller's artists plus everything above them)."""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
from common import measure, row

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tests'))
import browser_driver as bd  # noqa: E402

TITLE = 'Live figures: the moving layer with overlap detection vs every artist above the moving ones'
REF = 'layer: every artist above the moving ones'


def everything_above():
    "An Explorer whose moving layer is every artist at or above the lowest moving zorder: no geometry at all."
    from lossnotes.lessons.plotting import Explorer, _titles
    class Above(Explorer):
        def _split(self):
            layers = {}
            for ax in dict.fromkeys(a.axes for a in self._fast.artists):
                moving = [a for a in self._fast.artists if a.axes is ax]
                low = min(a.get_zorder() for a in moving)
                skip = {ax.patch, ax.xaxis, ax.yaxis, *_titles(ax)}
                layers[ax] = sorted([a for a in ax.get_children() if any(a is m for m in moving)
                                     or (a not in skip and a.get_zorder() >= low)], key=lambda a: a.get_zorder())
            return layers
    return Above


def toy_parts():
    "A line that moves under a legend at its top values: the quick mode's explorer."
    from lossnotes.lessons.plotting import live, slider
    x = np.linspace(0, 1, 200)
    def draw(fig, y=0.1):
        ax = fig.subplots(); ax.set_ylim(0, 1)
        line, = ax.plot(x, 0 * x, label='moving'); ax.plot(x, 0.5 + 0 * x, label='still'); ax.legend(loc='upper right')
        def update(y):
            line.set_ydata(y + 0.02 * np.sin(20 * x))
            return f'y={y}'
        return live(update(y), update, [line])
    return draw, dict(y=slider(0.1, options=[0.1, 0.3, 0.95]))


def run(quick: bool) -> list[dict]:
    from lossnotes.lessons.plotting import Explorer
    Above = everything_above()
    cases = [('toy: a line under a legend', *toy_parts())] if quick else [(nb, *bd.module_of(nb).explorer_parts()) for nb in bd.TOPICS]
    rows = []
    for case, draw, controls in cases:
        exs = {'overlap detection': Explorer(draw, controls), REF: Above(draw, controls)}
        for ex in exs.values(): ex.render(); ex.prepare(); ex.frame()
        name = next(k for k in controls if k not in exs[REF]._fast.redraw_on)
        values = controls[name].values()
        for v in values:  # the same picture either way; every background stored before timing
            frames = []
            for ex in exs.values():
                ex.step(**{name: v}); frames.append(np.asarray(ex.frame())[..., :3].copy())
            assert np.array_equal(*frames), (case, name, v)
        def moves(ex):
            return lambda: [(ex.step(**{name: v}), ex.frame()) for v in values]
        times = {k: [] for k in exs}
        for _ in range(1 if quick else 11):  # the two alternate, so that a busy moment of the machine hits both
            for k, ex in exs.items(): times[k].append(measure(moves(ex), repeat=1, warmup=0)[0])
        stats = {k: (statistics.median(t), min(t), max(t)) for k, t in times.items()}
        per_move = {k: tuple(s / len(values) for s in st) for k, st in stats.items()}
        sizes = {k: sum(len(t) for t in ex._layers.values()) for k, ex in exs.items()}
        for k in (REF, 'overlap detection'):  # the reference first
            rows.append(row(case, f'{k}: step + frame per move ({name})', per_move[k],
                            None if k == REF else per_move[REF], None if k == REF else REF,
                            note=f'{sizes[k]} artists in the moving layer at the last value; {len(values)} values of {name}, '
                                 'backgrounds stored before timing, the two timed in turn; the frames of both are equal'))
    return rows
