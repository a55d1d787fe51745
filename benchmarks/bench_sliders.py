"""Slider-to-new-figure latency of every topic's live figure in Voila (keypress to changed image, headless
Chromium), beside the kernel-side redraw time (draw + PNG) measured in this process."""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import measure, row

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tests'))
import browser_driver as bd  # noqa: E402

TITLE = 'Live figures: slider latency in Voila'


def run(quick: bool) -> list[dict]:
    if bd.CHROMIUM is None: raise RuntimeError('Debian chromium is needed: apt-get install chromium')
    from lossnotes.lessons.plotting import Explorer
    moves = 2 if quick else 12
    rows = []
    for nb in bd.TOPICS:
        draw, controls = bd.module_of(nb).explorer_parts()
        ex = Explorer(draw, controls)
        first = next(k for k, c in controls.items() if c.kind in ('slider', 'select'))
        there, key = bd.next_value(controls[first], controls[first].value)
        back = 'ArrowLeft' if key == 'ArrowRight' else 'ArrowRight'
        flip = iter([there, controls[first].value] * 100)
        kernel = measure(lambda: (ex.render(**{first: next(flip)}), ex.png()), repeat=3 if quick else 11, warmup=1)
        with tempfile.TemporaryDirectory() as d, bd.voila(nb, bd.copy_nbs(Path(d) / 'nbs')) as url, bd.browser() as page:
            bd.open_explorer(page, url)
            lat = [bd.move_slider(page, 0, key if i % 2 == 0 else back) for i in range(moves)]
        stats = (statistics.median(lat), min(lat), max(lat))
        rows.append(row(nb, f'keypress -> new figure ({first})', stats, kernel, 'kernel redraw (draw + PNG)',
                        target='median at most 150 ms', met=stats[0] <= 0.150,
                        note=f'{moves} moves; kernel redraw median {kernel[0] * 1e3:.0f} ms'
                        + ('' if stats[0] <= 0.150 else '; the redraw in the kernel (matplotlib draw + PNG) is itself '
                           f"{'over' if kernel[0] > 0.150 else 'most of'} the budget on this CPU")))
    return rows
