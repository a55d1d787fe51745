"""The static site (`bash scripts/site.sh`): how long the build takes, how heavy each page is with its frames, and
in headless Chromium, from file:// with the network refused, how long after a key press on a slider the new frame
is painted."""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'scripts'))
sys.path.insert(0, str(ROOT / 'tests'))
import make_site as ms  # noqa: E402
import browser_driver as bd  # noqa: E402

TITLE = 'Static site: build time, page sizes, and key press to painted frame in Chromium'
PAGE_TARGET = 4e6  # bytes of a page and its frames: a few MB, light enough for a phone
BUILD_TARGET = 180  # seconds for the whole site

FIGURE = '.lossnotes-explorer .lossnotes-figure'


# For each key press: the animation frames (requestAnimationFrame callbacks) until the one that paints the new frame,
# that is, the first whose DOM holds a different, fully decoded figure image; and the milliseconds to it.
RECORDER = """sel => { if (window.__site) return; const r = window.__site = [];
  document.addEventListener('keydown', () => { const t0 = performance.now();
    const src0 = document.querySelector(sel).getAttribute('src'); let n = 0;
    const tick = () => { n += 1; const im = document.querySelector(sel);
      if (im.getAttribute('src') !== src0 && im.complete) r.push([performance.now() - t0, n]);
      else if (n < 600) requestAnimationFrame(tick); else r.push([NaN, n]); };
    requestAnimationFrame(tick); }, true); }"""


def key_to_frame(url: str, presses: int) -> list[tuple[float, int]]:
    "(seconds, animation frames) from each key press on the first slider of the page's explorer to the frame painting the new figure."
    with bd.browser() as page:
        refused = []
        page.route('**/*', lambda r: r.continue_() if r.request.url.startswith(('file://', 'data:'))
                   else (refused.append(r.request.url), r.abort()))
        page.goto(url)
        page.wait_for_load_state('load')
        page.evaluate(RECORDER, FIGURE)
        el = page.locator('.lossnotes-explorer input[type=range]').first
        el.focus()
        top, up = int(el.get_attribute('max')), True
        for i in range(presses):
            page.wait_for_timeout(120)  # a reader's pause: every press is a new move
            at = int(el.input_value())
            up = (up or at == 0) and at < top
            page.keyboard.press('ArrowRight' if up else 'ArrowLeft')
            page.wait_for_function('n => window.__site.length > n', arg=i, timeout=15000, polling=5)
        out = page.evaluate('() => window.__site')
        assert not refused, refused
    return [(ms / 1e3, n) for ms, n in out]


def run(quick: bool) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        stems = [p.stem for p, kind in ms.site_notebooks(ROOT / 'nbs')
                 if kind == 'lesson' and ms.explorer_cell(json.loads(p.read_text())['cells'])]
        only = stems[:1] if quick else None
        t0 = time.perf_counter()
        r = ms.build_site(Path(d) / 'site', only=only)
        secs = time.perf_counter() - t0
        total = sum(p['bytes'] for p in r['pages'])
        rows.append(row('build', 'whole site' if not quick else f'one page ({stems[0]})', (secs, secs, secs),
                        target=f'under {BUILD_TARGET} s', met=secs < BUILD_TARGET if not quick else None,
                        note=f"{len(r['pages'])} pages and an index, {total / 1e6:.1f} MB in all; one process, Agg"))
        for p in r['pages']:
            fr, size = p['frames'], p['bytes']
            html_kb = p['page'].stat().st_size / 1e3
            frames = (f"; {fr['files']} frames ({(size - html_kb * 1e3) / 1e3:.0f} KB, lossless WebP) for {fr['count']} "
                      f"settings, {'full grid' if fr['rule'] == 'grid' else 'one control at a time'} "
                      f"(full grid {fr['grid']})") if fr else ''
            rows.append(row('page and its frames', p['page'].relative_to(r['dest']).as_posix(),
                            (p['seconds'],) * 3, target=f'page <= {PAGE_TARGET / 1e6:.0f} MB', met=size <= PAGE_TARGET,
                            note=f'{size / 1e6:.2f} MB: HTML {html_kb:.0f} KB{frames}; time is its build time'))
        if bd.CHROMIUM is None: return rows
        for p in r['pages']:
            if not p['frames'] or (quick and p is not r['pages'][0]): continue
            moves = key_to_frame(p['page'].as_uri(), 6 if quick else 40)
            ts, frames = [t for t, _ in moves], [n for _, n in moves]
            rows.append(row('key press to painted frame (Chromium, file://)', p['page'].name,
                            (statistics.median(ts), min(ts), max(ts)), target='the next animation frame',
                            met=None if quick else max(frames) == 1,
                            note=f'{len(ts)} presses on the first slider, 120 ms apart; the new figure is in the '
                                 f'animation frame after the key: {frames.count(1)} of {len(frames)} presses, at most '
                                 f'{max(frames)} frame(s) later; time: keydown to that frame\'s start'))
    return rows
