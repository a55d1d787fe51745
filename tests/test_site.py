"""The static site (`bash scripts/site.sh`): learner-facing pages that work from file:// with no network, math as
MathML, and every lesson's explorer moving with no kernel, frame for frame the kernel's drawing."""
import html
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import browser_driver as bd
from conftest import ROOT

sys.path.insert(0, str(ROOT / 'scripts'))
import make_site as ms  # noqa: E402
from lossnotes.course.build import BEGIN, END, learner_cells  # noqa: E402
from lossnotes.lessons.plotting import choice, slider, toggle  # noqa: E402

FIGURE = '.lossnotes-explorer .lossnotes-figure'


# ---------------------------------------------------------------- the builder's parts (fast)

def test_markdown_math_becomes_mathml_and_notebook_links_become_pages():
    out = ms.markdown_html(r'The mean $\bar x = \frac{s}{n}$, then $$\sum_{i=1}^n w_i x_i$$ and [ema](reference/ema.ipynb#top).')
    assert out.count('<math') == 2 and '$' not in out, out
    assert '<mfrac>' in out and 'display="block"' in out and 'alttext="\\frac{s}{n}"' not in out  # alttext: the whole formula
    assert 'alttext="\\bar x = \\frac{s}{n}"' in out
    assert 'href="reference/ema.html#top"' in out
    assert 'href="https://x.org/a.ipynb"' in ms.markdown_html('[a](https://x.org/a.ipynb)')  # other sites untouched


def test_latex_that_cannot_be_converted_is_reported_not_hidden():
    ms.MATH_ERRORS.clear()
    out = ms.latex_mathml(r'\frac{1}{', False)
    assert 'class="latex"' in out and len(ms.MATH_ERRORS) == 1, (out, ms.MATH_ERRORS)
    ms.MATH_ERRORS.clear()


def test_control_stops_are_the_widget_positions():
    assert ms.control_stops(slider(0.5, 0.0, 1.0, 0.25)) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert ms.control_stops(slider(3, 1, 5)) == [1, 2, 3, 4, 5]  # an int slider steps by 1, as IntSlider does
    stops = ms.control_stops(slider(0.3, 0.0, 2.0))  # FloatSlider's default step: a hundredth of the range
    assert len(stops) == 101 and stops[15] == 0.3 and stops[-1] == 2.0
    assert ms.control_stops(slider(4, options=[1, 4, 16])) == [1, 4, 16]
    assert ms.control_stops(choice('b', ['a', 'b'])) == ['a', 'b']
    assert ms.control_stops(toggle(True)) == [False, True]


def test_the_frame_rule_is_the_full_grid_up_to_max_grid_then_one_control_at_a_time():
    small = dict(a=slider(2, options=[1, 2, 3]), b=toggle(False), c=choice('x', ['x', 'y']))
    assert ms.frame_rule(small) == 'grid' and len(ms.frame_settings(small, 'grid')) == 3 * 2 * 2
    big = dict(a=slider(0.5, 0.0, 1.0, 0.01), b=slider(4, options=[1, 2, 4, 8]), c=toggle(False))
    assert 101 * 4 * 2 > ms.MAX_GRID and ms.frame_rule(big) == 'one'
    settings = ms.frame_settings(big, 'one')
    base = (50, 2, 0)
    assert len(settings) == len(set(settings)) == 1 + 100 + 3 + 1 and settings[0] == base
    assert all(sum(i != j for i, j in zip(s, base)) <= 1 for s in settings)  # the others at their defaults


def small_explorer():
    "A two-panel explorer with a slider, a toggle and a choice, drawn whole (no fast path)."
    import numpy as np
    x = np.linspace(0, 1, 50)
    def draw(fig, a=1.0, square=False, shift='none'):
        ax1, ax2 = fig.subplots(1, 2)
        y = a * x ** (2 if square else 1) + {'none': 0.0, 'up': 0.5}[shift]
        ax1.plot(x, y, color='#ff7f0e', label='curve')
        ax1.plot(x, x, color='#000000', linestyle='--', label='identity')
        ax1.set(xlabel='x', ylabel='y', ylim=(0, 3), title='the curve')
        ax1.legend()
        ax2.bar([0, 1], [a, y[-1]])
        ax2.set(xlabel='which', ylabel='value')
        return f'a = {a:.2f}, end = {y[-1]:.3f}'
    return draw, dict(a=slider(1.0, 0.0, 2.0, 1.0, description='slope a'), square=toggle(False),
                      shift=choice('none', ['none', 'up']))


def test_render_frames_stores_the_kernels_drawing_for_every_setting(tmp_path):
    "Each setting's frame file is, pixel for pixel, the full drawing there; its readout, alt text and key are the library's."
    import numpy as np
    from PIL import Image
    draw, controls = small_explorer()
    data = ms.render_frames(draw, controls, (6.0, 2.5), tmp_path / 'p_files', 'f0')
    stops = [ms.control_stops(c) for c in controls.values()]
    assert data['rule'] == 'grid' and len(data['frames']) == 3 * 2 * 2 == data['grid']
    assert len(data['files']) < len(data['frames'])  # a=0 draws the same figure for either `square`: stored once
    for key, (f, r, alt, legend) in data['frames'].items():
        values = {k: s[int(i)] for (k, s), i in zip(zip(controls, stops), key.split(','))}
        shown = np.asarray(Image.open(tmp_path / data['files'][f]).convert('RGB'))
        ref = bd.library_image(draw, controls, values, shown.shape)
        assert shown.shape == (225, 540, 3) and int(np.abs(ref.astype(int) - shown).max()) == 0, values
        assert data['texts'][r] == bd.expected_readout(draw, values)
        assert data['texts'][r] in data['texts'][alt] and 'slope a = ' in data['texts'][alt]
        assert '"the curve", y against x' in data['texts'][alt] and 'value against which' in data['texts'][alt]
        assert data['texts'][legend] == 'curve: orange solid line; identity: black dashed line'


def test_every_explorer_is_found_from_explorer_parts_and_the_notebooks_explore_call():
    "The lessons that show an explorer are found generically; each resolves to a module with explorer_parts."
    found = {}
    for nb, kind in ms.site_notebooks(ROOT / 'nbs'):
        cells = json.loads(nb.read_text())['cells']
        if ms.explorer_cell(cells) is None: continue
        mod = ms.explorer_module(cells)
        draw, controls = mod.explorer_parts()
        found[nb.name] = controls
    assert {t for t in bd.TOPICS} <= set(found), (bd.TOPICS, sorted(found))


# ---------------------------------------------------------------- the built site (slow)

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    """The site built by the command the README names, into a fresh folder, from a copy of nbs/ that the tests then
    read (the notebooks the pages came from); returns (site folder, build seconds, the command's output, nbs copy)."""
    tmp = tmp_path_factory.mktemp('site')
    nbs, dest = bd.copy_nbs(tmp / 'nbs'), tmp / 'site'
    t0 = time.perf_counter()
    r = subprocess.run(['bash', str(ROOT / 'scripts' / 'site.sh'), str(dest), '--src', str(nbs)], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return dest, time.perf_counter() - t0, r.stdout, nbs


def lesson_pages(nbs: Path = ROOT / 'nbs'):
    return [p for p, kind in ms.site_notebooks(nbs) if kind == 'lesson']


def explorer_pages():
    return [p.stem for p in lesson_pages() if ms.explorer_cell(json.loads(p.read_text())['cells']) is not None]


def page_code(text: str) -> list[str]:
    "The code cells' sources as a reader sees them on a page."
    blocks = re.findall(r'<section class="cell code"><div class="highlight"><pre>(.*?)</pre>', text, re.S)
    return [html.unescape(re.sub(r'<[^>]+>', '', b)).strip('\n') for b in blocks]


@pytest.mark.xdist_group('site')  # one worker builds the site once
@pytest.mark.slow
def test_a_page_per_notebook_and_an_index_that_links_each(site):
    dest, seconds, _, nbs = site
    index = (dest / 'index.html').read_text()
    for nb, kind in ms.site_notebooks(nbs):
        rel = nb.relative_to(nbs).with_suffix('.html').as_posix()
        assert (dest / rel).exists() and f'href="{rel}"' in index, rel
    for page in dest.rglob('*.html'):  # every link between pages and every frame lands on a file of the site
        for href in re.findall(r'(?:href|src)="(?![a-z]+:|#)([^"#]+)', page.read_text()):
            assert (page.parent / href).exists(), (page.name, href)


@pytest.mark.xdist_group('site')  # one worker builds the site once
@pytest.mark.slow
@pytest.mark.parametrize('nb', [p.name for p in lesson_pages()])
def test_a_lesson_page_shows_the_learners_code_and_no_solution(site, nb):
    "The page's code is the learner's copy's code, cell for cell (learner_cells: no hidden cell, solutions stubbed)."
    dest, _, _, nbs = site
    cells = json.loads((nbs / nb).read_text())['cells']
    text = (dest / nb).with_suffix('.html').read_text()
    want = [c['source'] for c in learner_cells(cells) if c['cell_type'] == 'code']
    assert page_code(text) == want
    plain = html.unescape(re.sub(r'<[^>]+>', '', text))  # what a reader can read, code included
    stubs = {l.strip() for c in learner_cells(cells) for l in c['source'].split('\n')}
    checked = 0
    for c in cells:  # no line of a solution region reaches the page, but for what the stub keeps (a signature)
        src = [l.strip() for l in ''.join(c['source']).split('\n')]
        if BEGIN in src:
            for line in src[src.index(BEGIN) + 1:src.index(END)]:
                if len(line) > 12 and line not in stubs and not line.startswith('#'):
                    assert line not in plain, line
                    checked += 1
    assert checked or not any(BEGIN in ''.join(c['source']) for c in cells)
    assert 'lossnotes-feedback' not in text  # the instructor's checker outputs (from the solutions) stay out


@pytest.mark.xdist_group('site')  # one worker builds the site once
@pytest.mark.slow
def test_saved_outputs_of_visible_cells_are_kept(site):
    "Each saved figure of a visible cell before the exercises is on its page (the explorer's is replaced by the live one)."
    dest, _, _, nbs = site
    for nb in lesson_pages(nbs):
        cells = json.loads(nb.read_text())['cells']
        shown = {c['id'] for c in learner_cells(cells)}
        found = ms.explorer_cell(cells)
        skip = cells[found[0]]['id'] if found else None
        want = 0
        for c in cells:
            if c['cell_type'] != 'code': continue
            if any(l.strip() == BEGIN for l in ''.join(c['source']).split('\n')): break
            if c['id'] in shown and c['id'] != skip:
                want += sum('image/png' in o.get('data', {}) for o in c.get('outputs', []))
        text = (dest / nb.name).with_suffix('.html').read_text()
        assert text.count('<img class="output"') == want, nb.name


@pytest.mark.xdist_group('site')  # one worker builds the site once
@pytest.mark.slow
def test_page_sizes_stay_light(site):
    "A page and its frames stay under 4 MB (a phone on a slow link); sizes and build time are in BENCHMARKS.md."
    dest, seconds, out, nbs = site
    for page in dest.rglob('*.html'):
        assert ms.page_bytes(page) < 4e6, (page.name, ms.page_bytes(page))


def refuse_network(page) -> list:
    "Route every request that is not to a file of the page to abort; returns the list of refused addresses."
    refused = []
    def handle(route):
        url = route.request.url
        if url.startswith(('file://', 'data:')): return route.continue_()
        refused.append(url)
        return route.abort()
    page.route('**/*', handle)
    return refused


@pytest.mark.xdist_group('site')  # one worker builds the site once
@pytest.mark.slow
@pytest.mark.skipif(bd.CHROMIUM is None, reason='Debian chromium is missing: apt-get install chromium')
def test_every_page_renders_offline_with_its_math_and_images(site):
    "With the network refused: no request leaves the page's files, every image loads and has alt text, math has a size."
    dest, _, _, nbs = site
    with bd.browser() as page:
        refused = refuse_network(page)
        for p in sorted(dest.rglob('*.html')):
            page.goto(p.as_uri())
            page.wait_for_load_state('load')
            imgs = page.evaluate("() => Array.from(document.images).map(i => [i.complete && i.naturalWidth > 0, i.alt])")
            assert all(ok for ok, _ in imgs), p.name
            assert all(alt.strip() for _, alt in imgs), (p.name, [a for _, a in imgs if not a.strip()])
            boxes = page.evaluate("() => Array.from(document.querySelectorAll('math')).map(m => m.getBoundingClientRect().width)")
            assert all(w > 0 for w in boxes), p.name  # Chromium lays the MathML out: no script, no font from a CDN
            assert len(boxes) == p.read_text().count('<math '), p.name
            assert not page.errors, (p.name, page.errors)
        assert refused == [], refused


def page_values(page, controls: dict) -> dict:
    "The values the page's controls show now (read from the DOM), as the library's values."
    idx = page.evaluate("""() => { const d = JSON.parse(document.querySelector('.lossnotes-data').textContent);
        return d.controls.map((c, i) => { const els = document.querySelectorAll(`[data-control="${i}"]`);
          if (els[0].type === 'range') return +els[0].value;
          if (els[0].type === 'checkbox') return c.labels.indexOf(els[0].checked ? 'on' : 'off');
          return +Array.from(els).find(e => e.checked).value; }); }""")
    return {k: ms.control_stops(c)[i] for (k, c), i in zip(controls.items(), idx)}


def shown_frame(page, dest: Path):
    "The frame the page shows now, decoded from the file its image loads: an (H, W, 3) uint8 array."
    import numpy as np
    from PIL import Image
    src = page.locator(FIGURE).get_attribute('src')
    assert page.evaluate("sel => document.querySelector(sel).complete", FIGURE)
    return np.asarray(Image.open(dest / src).convert('RGB'))


def numbers(text: str) -> list[str]:
    return re.findall(r'[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?', text)


@pytest.mark.xdist_group('site')  # one worker builds the site once
@pytest.mark.slow
@pytest.mark.skipif(bd.CHROMIUM is None, reason='Debian chromium is missing: apt-get install chromium')
@pytest.mark.parametrize('stem', explorer_pages())
def test_every_control_moved_by_keyboard_changes_the_figure_offline(site, stem):
    """Every slider (arrow keys), toggle (space) and choice (arrow keys) of the page's explorer, with the network
    refused: the figure changes, the readout is the library's for the values the controls show, the alt text carries
    the readout's numbers, each slider is named by its label; the shown frame equals the kernel's drawing there."""
    import numpy as np
    dest, _, _, nbs = site
    cells = json.loads((nbs / f'{stem}.ipynb').read_text())['cells']
    draw, controls = ms.explorer_module(cells).explorer_parts()
    figsize = ms.explorer_cell(cells)[1]
    data_rule = ms.frame_rule(controls)
    with bd.browser() as page:
        refused = refuse_network(page)
        page.goto((dest / f'{stem}.html').as_uri())
        page.locator('.lossnotes-explorer').scroll_into_view_if_needed()
        caption = page.locator('.lossnotes-explorer figcaption').inner_text()
        assert ('Every combination' in caption) if data_rule == 'grid' else ('One control at a time' in caption)
        bd.record(page, FIGURE)

        def check_shown(values: dict, exact_pixels: bool):
            readout = bd.expected_readout(draw, values).strip()
            assert page.locator('.lossnotes-readout').inner_text().strip() == readout, values
            alt = page.locator(FIGURE).get_attribute('alt')
            assert all(n in alt for n in numbers(readout)), (alt, readout)
            if exact_pixels:  # as the sweep tests compare frames: every channel of every pixel, atol 0
                shown = shown_frame(page, dest)
                ref = bd.library_image(draw, controls, values, shown.shape)
                assert ref.shape == shown.shape == (round(figsize[1] * 90), round(figsize[0] * 90), 3)
                assert int(np.abs(ref.astype(int) - shown).max()) == 0, values
            fig_legends = legend_texts(draw, values)
            key = page.locator('.lossnotes-key').inner_text()
            assert all(t in key for t in fig_legends), (key, fig_legends)  # the legend as text, colour named in words

        check_shown(page_values(page, controls), exact_pixels=True)
        for i, (name, c) in enumerate(controls.items()):
            before = page.locator(FIGURE).get_attribute('src')
            el = page.locator(f'[data-control="{i}"]')
            if c.kind in ('slider', 'select'):
                label = c.description or name
                assert page.get_by_role('slider', name=label, exact=True).count() == 1, label  # named by its label
                at = int(el.input_value())
                key = 'ArrowRight' if at < len(ms.control_stops(c)) - 1 else 'ArrowLeft'
                el.focus(); page.keyboard.press(key)
            elif c.kind == 'toggle':
                assert page.get_by_role('checkbox', name=c.description or name, exact=True).count() == 1
                el.focus(); page.keyboard.press('Space')
            else:
                assert page.get_by_role('group', name=c.description or name, exact=True).count() == 1
                page.locator(f'[data-control="{i}"]:checked').focus(); page.keyboard.press('ArrowRight')
            page.wait_for_function('([sel, b]) => document.querySelector(sel).getAttribute("src") !== b',
                                   arg=[FIGURE, before], timeout=5000)
            page.wait_for_function('sel => document.querySelector(sel).complete', arg=FIGURE, timeout=5000)
            values = page_values(page, controls)
            assert values[name] != c.value, (name, values)  # every control starts at its default, the others too
            if data_rule == 'one': assert all(values[k] == controls[k].value for k in controls if k != name), values
            check_shown(values, exact_pixels=True)
        assert refused == [] and not page.errors, (refused, page.errors)


def legend_texts(draw, values: dict) -> list[str]:
    "The legend entries of the library's figure for `values`."
    from lossnotes.lessons.plotting import new_figure
    fig = new_figure()
    draw(fig, **values)
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    return [t.get_text() for lg in legends if lg is not None for t in lg.get_texts() if t.get_text()]
