"""Live figures in Voila and in JupyterLab, per lesson explorer: keypress to new figure, and a drag (30 key presses 30 ms apart):
how many figures it shows and how long after the last key the final one arrives. Beside each explorer, a one-line
reference figure drawn the same way (the whole figure, or the fast path of `live`) in the same run, and the kernel's
own time per move (`Explorer.step` + PNG) measured in this process."""
from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

from common import measure, row

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tests'))
import browser_driver as bd  # noqa: E402

TITLE = 'Live figures: keypress and drag in Voila and in JupyterLab'
KEY_TARGET, FRAMES_TARGET, SETTLE_TARGET = 0.050, 15, 0.100
IDLE_MS = 250  # each key press comes this long after the last figure: a press, not a drag (the drags measure those)


def is_fast(draw, controls) -> bool:
    from lossnotes.lessons.plotting import Readout, new_figure
    return isinstance(draw(new_figure(), **{k: c.value for k, c in controls.items()}), Readout)


def kernel_per_move(draw, controls, name: str, repeat: int):
    "Median, min, max seconds of what the widget callback does for one move of control `name` (step + PNG)."
    from lossnotes.lessons.plotting import Explorer
    ex = Explorer(draw, controls)
    ex.render(); ex.prepare(); ex.png()  # as `show` does
    flip = iter([bd.next_value(controls[name], controls[name].value)[0], controls[name].value] * (repeat + 10))
    return measure(lambda: (ex.step(**{name: next(flip)}), ex.png(compress_level=1)), repeat=repeat, warmup=2)


def on_page(page, draw, controls, moves: int, drags: int, figure: str) -> dict:
    "Keypress latencies, then drags, on the first slider of the explorer `page` shows; `figure` selects its image."
    first = next(k for k, c in controls.items() if c.kind in ('slider', 'select'))
    key = bd.next_value(controls[first], controls[first].value)[1]
    back = 'ArrowLeft' if key == 'ArrowRight' else 'ArrowRight'
    values = {k: c.value for k, c in controls.items()}
    lat = [bd.move_slider(page, 0, key if i % 2 == 0 else back, figure=figure, idle_ms=IDLE_MS) for i in range(moves)]
    if moves % 2: bd.move_slider(page, 0, back, figure=figure)  # back at the default before the drags
    out = []
    for _ in range(drags):  # each drag starts where the last one ended
        plan = bd.drag_plan(dataclasses.replace(controls[first], value=values[first]), 30)
        values[first] = plan[-1][1]
        out.append(bd.drag(page, 0, plan, bd.expected_readout(draw, values), figure=figure))
    return dict(first=first, latencies=lat, drags=out)


def in_voila(nb: str, folder: Path, draw, controls, moves: int, drags: int) -> dict:
    "`on_page` for the notebook served by Voila: the figure is an image widget."
    with bd.voila(nb, folder) as url, bd.browser() as page:
        bd.open_explorer(page, url)
        return on_page(page, draw, controls, moves, drags, bd.FIGURE)


def in_lab(nb: str, folder: Path, draw, controls, moves: int, drags: int) -> dict:
    "`on_page` in JupyterLab after Run All: the figure is the notebook's PNG output, updated in place."
    with tempfile.TemporaryDirectory() as tmp, bd.jupyterlab(folder, Path(tmp)) as (url, token), bd.browser() as page:
        bd.lab_run_all(page, url, token, nb)
        return on_page(page, draw, controls, moves, drags, bd.LAB_FIGURE)


def run(quick: bool) -> list[dict]:
    if bd.CHROMIUM is None: raise RuntimeError('Debian chromium is needed: apt-get install chromium')
    moves, drags, repeat = (2, 1, 3) if quick else (12, 4, 11)
    rows, refs = [], {}
    with tempfile.TemporaryDirectory() as d:
        folder = bd.copy_nbs(Path(d) / 'nbs')
        cases = [('reference_full', *bd.reference_parts(False), bd.reference_notebook(folder, False)),
                 ('reference_fast', *bd.reference_parts(True), bd.reference_notebook(folder, True))]
        cases += [(nb, *bd.module_of(nb).explorer_parts(), nb) for nb in bd.TOPICS]
        runs = [(c, where) for where in ('Voila', 'JupyterLab') for c in cases]
        for (case, draw, controls, nb), where in runs:
            fast, ref = is_fast(draw, controls), case.startswith('reference')
            if where == 'JupyterLab' and not fast: continue  # the whole-figure reference: in Voila only
            way = 'fast path (live)' if fast else 'whole figure'
            m = (in_voila if where == 'Voila' else in_lab)(nb, folder, draw, controls, moves, drags)
            kernel = kernel_per_move(draw, controls, m['first'], repeat)
            lat = m['latencies']
            key_stats = (statistics.median(lat), min(lat), max(lat))
            settle = [r['settle_s'] for r in m['drags']]
            frames = [r['frames'] for r in m['drags']]
            drag_stats = (statistics.median(settle), min(settle), max(settle))
            label = f'{where}: ' + (f'one line, {way}' if ref else nb)
            if ref: refs[fast, where] = (key_stats, drag_stats)
            ref_key, ref_drag = (None, None) if ref else refs.get((fast, where), (None, None))
            ref_name = None if ref else f'{where}: one line, {way}'
            rows.append(row(label, f"keypress -> new figure ({m['first']})", key_stats, ref_key, ref_name,
                            target=f'median at most {KEY_TARGET * 1e3:.0f} ms', met=key_stats[0] <= KEY_TARGET,
                            note=f'{way}; {moves} key presses, each {IDLE_MS} ms after the last figure; kernel per '
                                 f'move (step + PNG, at the default figure size) median {kernel[0] * 1e3:.0f} ms'))
            ok = statistics.median(frames) >= FRAMES_TARGET and drag_stats[0] <= SETTLE_TARGET
            rows.append(row(label, f"drag of 30 moves 30 ms apart: last move -> final figure ({m['first']})",
                            drag_stats, ref_drag, ref_name,
                            target=f'at least {FRAMES_TARGET} figures, final within {SETTLE_TARGET * 1e3:.0f} ms',
                            met=ok, note=f'{way}; figures shown per drag: {frames}'))
            if quick: assert all(f >= 1 for f in frames) and all(l > 0 for l in lat)
    return rows
