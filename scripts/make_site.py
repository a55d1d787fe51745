"""Build the learner-facing static site: one page per lesson and per reference notebook, and an index.

Usage: python scripts/make_site.py [DEST] [--src NBS] [--only STEM ...]
  (default DEST: site/, NBS: the repository's nbs/; `bash scripts/site.sh [DEST]` runs it)

The pages work opened from file:// with no network and no kernel:
- a lesson shows what a learner's copy shows (lossnotes.course.build.learner_cells: no hidden cells, no solutions),
  with the saved outputs of its visible cells taken from the instructor's notebook (none in the exercises, whose
  outputs come from the solutions);
- math is MathML, converted from the LaTeX at build time (latex2mathml); styles and scripts are inline;
- a lesson's main explorer, the one its notebook shows with `explore(...)` from its module's `explorer_parts()`,
  keeps its controls: every frame a reader can reach is drawn here by the same `Explorer` the kernel uses and stored
  as a lossless WebP next to the page; a move swaps the frame, the readout and the alternative text. The frames are
  the full grid of the controls when it has at most MAX_GRID frames; otherwise one control moves at a time, the
  others at their teaching defaults (the page says which).
Nothing here knows a lesson: the explorer comes from `explorer_parts()` and the notebook's own `explore(` call."""
from __future__ import annotations

import ast
import hashlib
import html
import importlib
import io
import itertools
import json
import math
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_GRID = 150  # frames of a full grid (about 20 KB each): beyond, one control at a time
WEBP = dict(format='webp', lossless=True, quality=100, method=1)  # lossless: the page's pixels are the kernel's


# ---------------------------------------------------------------- which notebooks, which explorer

def site_notebooks(src: Path) -> list[tuple[Path, str]]:
    "(notebook, kind) for every page: the lessons (found as the course finds them), then the reference notebooks."
    from lossnotes.course.build import lesson_notebooks
    return ([(p, 'lesson') for p in lesson_notebooks(src)] +
            [(p, 'reference') for p in sorted((src / 'reference').glob('*.ipynb'))])


def _source(cell: dict) -> str:
    return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']


def _explore_call(source: str):
    "The `explore(...)` call in a code cell's source (an ast.Call), or None."
    try: tree = ast.parse(source)
    except SyntaxError: return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', getattr(node.func, 'attr', None)) == 'explore':
            return node
    return None


def explorer_cell(cells: list[dict]):
    """(index, figsize) of the code cell that shows the notebook's main explorer: the first `explore(` call in or after
    the first cell that calls `explorer_parts()`; None when the notebook shows none."""
    first = next((i for i, c in enumerate(cells) if c['cell_type'] == 'code' and 'explorer_parts()' in _source(c)), None)
    if first is None: return None
    from lossnotes.lessons.plotting import explore
    import inspect
    for i, c in enumerate(cells[first:], first):
        call = _explore_call(_source(c)) if c['cell_type'] == 'code' else None
        if call is None: continue
        figsize = inspect.signature(explore).parameters['figsize'].default
        for kw in call.keywords:
            if kw.arg == 'figsize': figsize = tuple(ast.literal_eval(kw.value))  # a literal, as the lessons write it
        return i, figsize
    return None


def explorer_module(cells: list[dict]):
    "The module whose `explorer_parts` the notebook shows: the one it imports it from, else its `default_exp`."
    code = '\n'.join(_source(c) for c in cells if c['cell_type'] == 'code')
    m = re.search(r'from lossnotes\.([\w.]+) import [^\n]*\bexplorer_parts\b', code)
    name = m.group(1) if m else (re.search(r'#\|\s*default_exp\s+(\S+)', code) or [None, None])[1]
    if name is None: return None
    mod = importlib.import_module('lossnotes.' + name)
    return mod if callable(getattr(mod, 'explorer_parts', None)) else None


# ---------------------------------------------------------------- the explorer's frames

def control_stops(c) -> list:
    "Every value a reader can set `c` to on the page: its options, both toggle states, or each step of a slider."
    if c.kind in ('select', 'choice'): return list(c.options)
    if c.kind == 'toggle': return [False, True]
    is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (c.value, c.min, c.max))
    step = c.step if c.step is not None else (1 if is_int else (c.max - c.min) / 100)  # ipywidgets' default step
    n = int(math.floor((c.max - c.min) / step + 1e-9)) + 1
    stops = [c.min + i * step if is_int else round(c.min + i * step, 10) for i in range(n)]
    if not any(s == c.value for s in stops): stops = sorted(stops + [c.value])  # the teaching default is a stop
    return stops


def default_index(c, stops: list) -> int:
    return next(i for i, s in enumerate(stops) if s == c.value)


def value_label(v) -> str:
    if isinstance(v, bool): return 'on' if v else 'off'
    if isinstance(v, float): return f'{v:.10g}'
    return str(v)


def frame_rule(controls: dict) -> str:
    "'grid' when the full grid of the controls has at most MAX_GRID frames, else 'one' (one control at a time)."
    return 'grid' if math.prod(len(control_stops(c)) for c in controls.values()) <= MAX_GRID else 'one'


def frame_settings(controls: dict, rule: str) -> list[tuple[int, ...]]:
    "Stop indices of every frame a reader can reach under `rule`, in an order that moves the last control fastest."
    stops = [control_stops(c) for c in controls.values()]
    base = tuple(default_index(c, s) for c, s in zip(controls.values(), stops))
    if rule == 'grid': return list(itertools.product(*[range(len(s)) for s in stops]))
    out = [base]
    for i, s in enumerate(stops):
        out += [base[:i] + (j,) + base[i + 1:] for j in range(len(s)) if j != base[i]]
    return out


def _colour_word(color) -> str:
    "A word for a matplotlib colour: the course's own name for it, else the nearest CSS colour name."
    from matplotlib import colors as mc
    from lossnotes.lessons.plotting import COLOR_WORDS
    hexa = mc.to_hex(color).lower()
    if hexa in COLOR_WORDS: return COLOR_WORDS[hexa].split()[0]
    rgb = mc.to_rgb(color)
    names = ['black', 'grey', 'white', 'red', 'orange', 'gold', 'green', 'blue', 'purple', 'brown', 'pink', 'cyan',
             'olive', 'navy', 'teal']
    return min(names, key=lambda n: sum((a - b) ** 2 for a, b in zip(mc.to_rgb(n if n != 'grey' else 'gray'), rgb)))


_DASHES = {'-': 'solid', '--': 'dashed', ':': 'dotted', '-.': 'dash-dot'}


def _handle_words(h) -> str:
    "How a legend handle looks, in words: colour, line style, marker."
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    try:
        if isinstance(h, Line2D):
            ls = _DASHES.get(h.get_linestyle())
            marker = h.get_marker() not in (None, 'None', '', ' ', 'none')
            kind = ' '.join(w for w in [ls and f'{ls} line', marker and 'markers'] if w) or 'line'
            return f'{_colour_word(h.get_color())} {kind.replace(" markers", " with markers")}'
        if isinstance(h, Patch): return f'{_colour_word(h.get_facecolor())} area'
        return f'{_colour_word(h.get_edgecolor()[0] if len(h.get_edgecolor()) else h.get_facecolor()[0])} marks'
    except Exception:
        return 'mark'


def figure_words(fig) -> tuple[str, list[str]]:
    "What the figure shows, in words (its panels, axes and legend entries), and its legend as text entries."
    panels, key = [], []
    legends = [(ax, ax.get_legend()) for ax in fig.axes] + [(None, lg) for lg in fig.legends]
    for ax, lg in legends:
        if lg is None: continue
        for h, t in zip(lg.legend_handles, lg.get_texts()):
            if t.get_text(): key.append(f'{t.get_text()}: {_handle_words(h)}')
    for n, ax in enumerate(fig.axes, 1):
        if not ax.get_visible() or not ax.axison: continue
        bits = [f'"{ax.get_title()}"' if ax.get_title() else f'panel {n}']
        if ax.get_ylabel() or ax.get_xlabel(): bits.append(f'{ax.get_ylabel() or "y"} against {ax.get_xlabel() or "x"}')
        panels.append(', '.join(bits))
    what = f'Figure with {len(panels)} panel{"s" * (len(panels) != 1)}: ' + '; '.join(panels) + '.' if panels else 'Figure.'
    return what, key


def render_frames(draw, controls: dict, figsize: tuple, folder: Path, prefix: str) -> dict:
    """Draw every reachable frame with the kernel's `Explorer` (its fast path, which the sweep tests hold equal to a
    full drawing), write each distinct image once as lossless WebP into `folder`; returns the page's explorer data."""
    import numpy as np
    from PIL import Image
    from lossnotes.lessons.plotting import Explorer
    rule = frame_rule(controls)
    names, stops = list(controls), [control_stops(c) for c in controls.values()]
    ex = Explorer(draw, controls, figsize)
    ex.render()
    folder.mkdir(parents=True, exist_ok=True)
    files, by_hash, frames, texts = [], {}, {}, {}
    def text_id(s: str) -> int: return texts.setdefault(s, len(texts))
    shape = None
    for idx in frame_settings(controls, rule):
        values = {k: stops[i][j] for i, (k, j) in enumerate(zip(names, idx))}
        readout = ex.step(**values)
        rgb = np.ascontiguousarray(np.asarray(ex.frame())[..., :3])
        shape = rgb.shape
        h = hashlib.sha1(rgb.tobytes()).hexdigest()
        if h not in by_hash:
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, **WEBP)
            name = f'{prefix}-{len(files):03d}.webp'
            (folder / name).write_bytes(buf.getvalue())
            by_hash[h] = len(files); files.append(f'{folder.name}/{name}')
        what, key = figure_words(ex.fig)
        setting = ', '.join(f'{controls[k].description or k} = {value_label(v)}' for k, v in values.items())
        alt = f'{what} Setting: {setting}.' + (f' Readout: {" ".join(readout.split())}' if readout.strip() else '')
        frames[','.join(map(str, idx))] = [by_hash[h], text_id(readout), text_id(alt), text_id('; '.join(key))]
    return dict(rule=rule, files=files, texts=list(texts), frames=frames, width=shape[1], height=shape[0],
                controls=[dict(name=k, label=c.description or k, kind=c.kind, labels=[value_label(v) for v in s],
                               default=default_index(c, s)) for (k, c), s in zip(controls.items(), stops)],
                grid=math.prod(len(s) for s in stops))


# ---------------------------------------------------------------- markdown, math, code, outputs

def latex_mathml(tex: str, display: bool) -> str:
    "MathML for a LaTeX formula (converted here, so the page needs no script to show it)."
    from latex2mathml.converter import convert
    tex = tex.strip()
    try: out = convert(tex, display='block' if display else 'inline')
    except Exception as e:  # shown as LaTeX source and reported: the build fails on it (see `build_site`)
        MATH_ERRORS.append(f'{tex!r}: {e}')
        return f'<code class="latex">{html.escape(tex)}</code>'
    alt = html.escape(tex, quote=True)
    return out.replace('<math ', f'<math alttext="{alt}" ', 1)


MATH_ERRORS: list[str] = []


def _markdown():
    import mistune
    from mistune.plugins.math import math as math_plugin
    md = mistune.create_markdown(escape=False, plugins=['table', 'strikethrough', 'url', 'footnotes'])
    math_plugin(md)
    md.renderer.register('block_math', lambda r, text: latex_mathml(text, True) + '\n')
    md.renderer.register('inline_math', lambda r, text: latex_mathml(text, False))
    return md


_MD = None


def markdown_html(text: str) -> str:
    "HTML of a markdown cell: math as MathML, links between notebooks pointing at their pages."
    global _MD
    if _MD is None: _MD = _markdown()
    out = _MD(text)
    return re.sub(r'href="(?![a-z]+:|#)([^"#]*?)\.ipynb(#[^"]*)?"', lambda m: f'href="{m[1]}.html{m[2] or ""}"', out)


def code_html(source: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer
    return highlight(source, PythonLexer(), HtmlFormatter(cssclass='highlight'))


_ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')


def _text(x) -> str: return ''.join(x) if isinstance(x, list) else x


def output_html(o: dict, alt: str) -> str:
    "One saved output as HTML: images embedded, HTML without scripts, text as preformatted text."
    kind = o.get('output_type')
    if kind == 'stream': return f'<pre class="output stream">{html.escape(_ANSI.sub("", _text(o["text"])))}</pre>'
    if kind == 'error':
        return f'<pre class="output error">{html.escape(_ANSI.sub("", chr(10).join(o.get("traceback", []))))}</pre>'
    data = o.get('data', {})
    if 'image/png' in data:
        return (f'<img class="output" alt="{html.escape(alt, quote=True)}" '
                f'src="data:image/png;base64,{_text(data["image/png"]).strip()}">')
    if 'image/svg+xml' in data: return f'<div class="output">{_text(data["image/svg+xml"])}</div>'
    if 'text/html' in data:
        body = re.sub(r'<script\b.*?</script>', '', _text(data['text/html']), flags=re.S | re.I)
        return f'<div class="output html">{body}</div>'
    if 'text/markdown' in data: return f'<div class="output">{markdown_html(_text(data["text/markdown"]))}</div>'
    if 'text/plain' in data: return f'<pre class="output">{html.escape(_ANSI.sub("", _text(data["text/plain"])))}</pre>'
    return ''


# ---------------------------------------------------------------- the explorer on the page

def explorer_html(data: dict, n: int) -> str:
    "The controls, figure, readout and text legend of one explorer, with its frames' data inline."
    rule = ('Every combination of the controls is drawn.' if data['rule'] == 'grid' else
            'One control at a time: moving a control puts the others back at their teaching defaults '
            f'(all {data["grid"]} combinations would be too heavy a page).')
    first = data['frames'][','.join(str(c['default']) for c in data['controls'])]
    ctrls = []
    for i, c in enumerate(data['controls']):
        cid, d = f'x{n}-c{i}', c['default']
        if c['kind'] == 'toggle':
            on = c['labels'][d] == 'on'
            ctrls.append(f'<div class="control"><input type="checkbox" id="{cid}" data-control="{i}"{" checked" * on}>'
                         f'<label for="{cid}">{html.escape(c["label"])}</label></div>')
        elif c['kind'] == 'choice':
            radios = ''.join(f'<label><input type="radio" name="{cid}" value="{j}" data-control="{i}"{" checked" * (j == d)}>'
                             f'{html.escape(v)}</label>' for j, v in enumerate(c['labels']))
            ctrls.append(f'<fieldset class="control"><legend>{html.escape(c["label"])}</legend>{radios}</fieldset>')
        else:
            ctrls.append(f'<div class="control"><label for="{cid}">{html.escape(c["label"])}</label>'
                         f'<input type="range" id="{cid}" data-control="{i}" min="0" max="{len(c["labels"]) - 1}" '
                         f'step="1" value="{d}" aria-valuetext="{html.escape(c["labels"][d], quote=True)}">'
                         f'<output for="{cid}">{html.escape(c["labels"][d])}</output></div>')
    t = data['texts']
    payload = json.dumps(data, separators=(',', ':')).replace('</', '<\\/')
    return (f'<figure class="lossnotes-explorer" id="explorer-{n}">'
            f'<div class="controls">{"".join(ctrls)}</div>'
            f'<img class="lossnotes-figure" src="{data["files"][first[0]]}" width="{data["width"]}" '
            f'height="{data["height"]}" alt="{html.escape(t[first[2]], quote=True)}">'
            f'<pre class="lossnotes-readout" aria-live="polite">{html.escape(t[first[1]])}</pre>'
            f'<p class="lossnotes-key">{("Key: " + html.escape(t[first[3]])) if t[first[3]] else ""}</p>'
            f'<figcaption>Live figure, no kernel needed: {rule}</figcaption>'
            f'<script type="application/json" class="lossnotes-data">{payload}</script></figure>')


EXPLORER_JS = r"""
for (const root of document.querySelectorAll('.lossnotes-explorer')) {
  const d = JSON.parse(root.querySelector('.lossnotes-data').textContent);
  const out = root.querySelector('.lossnotes-readout'), key = root.querySelector('.lossnotes-key');
  let img = root.querySelector('.lossnotes-figure');
  const state = d.controls.map(c => c.default);
  // every frame an <img> of its own, fetched and decoded up front: a move swaps the element, no load to wait for
  const frames = d.files.map(f => { if (img.getAttribute('src') === f) return img;
    const im = img.cloneNode(); im.src = f; im.decode().catch(() => {}); return im; });
  function sync() {
    d.controls.forEach((c, i) => {
      for (const el of root.querySelectorAll(`[data-control="${i}"]`)) {
        if (el.type === 'range') { el.value = state[i]; el.setAttribute('aria-valuetext', c.labels[state[i]]);
                                   el.nextElementSibling.textContent = c.labels[state[i]]; }
        else if (el.type === 'checkbox') el.checked = c.labels[state[i]] === 'on';
        else el.checked = +el.value === state[i];
      }
    });
    const f = d.frames[state.join(',')], next = frames[f[0]];
    next.alt = d.texts[f[2]];
    if (next !== img) { img.replaceWith(next); img = next; }
    out.textContent = d.texts[f[1]]; key.textContent = d.texts[f[3]] ? 'Key: ' + d.texts[f[3]] : '';
  }
  function set(i, j) {
    if (d.rule === 'one') d.controls.forEach((c, k) => { if (k !== i) state[k] = c.default; });
    state[i] = j; sync();
  }
  for (const el of root.querySelectorAll('[data-control]')) {
    const i = +el.dataset.control, c = d.controls[i];
    if (el.type === 'range') el.addEventListener('input', () => set(i, +el.value));
    else if (el.type === 'checkbox') el.addEventListener('change', () => set(i, c.labels.indexOf(el.checked ? 'on' : 'off')));
    else el.addEventListener('change', () => { if (el.checked) set(i, +el.value); });
  }
}
"""

CSS = """
body { font: 16px/1.55 system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 52rem; margin: 0 auto;
       padding: 1rem; color: #1b1b1b; background: #fff; }
nav { font-size: .9rem; margin-bottom: 1rem; } footer { margin-top: 2rem; border-top: 1px solid #ddd; padding-top: .5rem; } a { color: #0b57d0; }
pre, code { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: .88rem; }
pre { overflow-x: auto; padding: .5rem .7rem; background: #f6f8fa; border-radius: 4px; }
.cell.code .highlight pre { border-left: 3px solid #c8d1dc; }
pre.output { background: #fff; border-left: 3px solid #eee; }
img { max-width: 100%; height: auto; }
table { border-collapse: collapse; } th, td { border: 1px solid #ddd; padding: .2rem .5rem; }
math[display="block"] { margin: .6rem 0; overflow-x: auto; }
.lossnotes-explorer { border: 1px solid #c8d1dc; border-radius: 6px; padding: .7rem; margin: 1rem 0; }
.lossnotes-explorer .control { display: flex; gap: .6rem; align-items: center; flex-wrap: wrap; margin: .3rem 0; }
.lossnotes-explorer fieldset.control { border: none; padding: 0; }
.lossnotes-explorer input[type=range] { width: min(100%, 18rem); }
.lossnotes-explorer output { font-variant-numeric: tabular-nums; min-width: 4rem; }
.lossnotes-key, figcaption { font-size: .88rem; color: #444; }
"""


def page(title: str, body: str, home: str, scripts: bool, footer: str = '') -> str:
    from pygments.formatters import HtmlFormatter
    css = CSS + HtmlFormatter().get_style_defs('.highlight')
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{html.escape(title)}</title><style>{css}</style></head><body>'
            f'<nav><a href="{home}">lossnotes: all lessons and references</a></nav><main>{body}</main>{footer}'
            + (f'<script>{EXPLORER_JS}</script>' if scripts else '') + '</body></html>\n')


# ---------------------------------------------------------------- notebooks to pages

def notebook_page(path: Path, kind: str, out: Path, home: str, footer: str = '') -> dict:
    "Write the page of one notebook (and its explorer's frames); returns what it wrote."
    from lossnotes.course.build import BEGIN, learner_cells, title_and_subtitle
    nb = json.loads(path.read_text(encoding='utf-8'))
    shown = learner_cells(nb['cells'])
    by_id = {c.get('id'): c for c in nb['cells']}
    title, subtitle = title_and_subtitle(nb)
    found = explorer_cell(nb['cells'])
    explorer_id = nb['cells'][found[0]].get('id') if found else None
    exercises = next((c.get('id') for c in nb['cells'] if c['cell_type'] == 'code'
                      and any(l.strip() == BEGIN for l in _source(c).split('\n'))), None)
    parts, heading, n_explorers, after_exercises, frames = [], '', 0, False, None
    shown_ids = {c.get('id') for c in shown}
    for c in nb['cells']:
        if c.get('id') == exercises: after_exercises = True
        if c.get('id') == explorer_id and explorer_id not in shown_ids:  # a hidden cell shows the explorer
            frames = _explorer(path, nb, found, out, parts, n_explorers); n_explorers += 1
        if c.get('id') not in shown_ids: continue
        lc = next(x for x in shown if x.get('id') == c.get('id'))
        src = _source(lc)
        if c['cell_type'] == 'markdown':
            h = re.search(r'^#+\s+(.+)$', src, re.M)
            if h: heading = h[1].strip()
            parts.append(f'<section class="cell markdown">{markdown_html(src)}</section>')
            continue
        parts.append(f'<section class="cell code">{code_html(src)}')
        if c.get('id') == explorer_id:
            frames = _explorer(path, nb, found, out, parts, n_explorers); n_explorers += 1
        else:
            original = '\n'.join(l for l in _source(c).split('\n') if not re.match(r'^\s*#\s?\|', l)).strip('\n')
            if not after_exercises and original == src:  # outputs of a stubbed cell came from the solution
                alt = f'Figure drawn by the code above' + (f', in the section "{heading}"' if heading else '') + '.'
                parts += [output_html(o, alt) for o in c.get('outputs', [])]
        parts.append('</section>')
    out.parent.mkdir(parents=True, exist_ok=True)
    text = page(title or path.stem, ''.join(parts), home, n_explorers > 0, footer)
    out.write_text(text, encoding='utf-8')
    return dict(notebook=path, page=out, kind=kind, title=title, subtitle=subtitle, explorers=n_explorers,
                frames=frames)


def _explorer(path: Path, nb: dict, found: tuple, out: Path, parts: list, n: int) -> dict:
    mod = explorer_module(nb['cells'])
    if mod is None: raise ValueError(f'{path.name} calls explore( on explorer_parts() but no module of it defines explorer_parts')
    draw, controls = mod.explorer_parts()
    data = render_frames(draw, controls, found[1], out.parent / f'{out.stem}_files', f'f{n}')
    parts.append(explorer_html(data, n))
    return dict(rule=data['rule'], count=len(data['frames']), files=len(data['files']), grid=data['grid'],
                figsize=found[1])


def _inline_markdown(text: str) -> str:
    "A line of markdown as inline HTML (no paragraph around it)."
    return re.sub(r'^<p>(.*)</p>\s*$', r'\1', markdown_html(text).strip(), flags=re.S)


def _lesson_footer(lessons: list[Path], i: int) -> str:
    "Links to the lessons before and after the i-th, in the course's order."
    def link(p: Path, word: str) -> str:
        from lossnotes.course.build import title_and_subtitle
        title = title_and_subtitle(json.loads(p.read_text(encoding='utf-8')))[0] or p.stem
        return f'<a rel="{word[:4].lower()}" href="{p.stem}.html">{word}: {html.escape(title)}</a>'
    links = ([link(lessons[i - 1], 'Previous')] if i > 0 else []) + ([link(lessons[i + 1], 'Next')] if i + 1 < len(lessons) else [])
    return f'<footer><nav>{" · ".join(links)}</nav></footer>' if links else ''


def index_page(pages: list[dict], dest: Path) -> Path:
    def row(p):
        href = p['page'].relative_to(dest).as_posix()
        sub = f': {_inline_markdown(p["subtitle"])}' if p['subtitle'] else ''
        live = ' (live figure)' if p['explorers'] else ''
        return f'<li><a href="{href}">{html.escape(p["title"] or p["notebook"].stem)}</a>{sub}{live}</li>'
    body = ('<h1>lossnotes</h1><p>Questions real learners asked about the loss numbers they saw while training in '
            'PyTorch, each answered by an experiment, a little math and a tool you can keep. These pages need no '
            'Python: each lesson\'s live figure moves in the page. To run the code and do the exercises, get the '
            'course: <code>pip install "lossnotes[course]"</code>, then <code>lossnotes course my-course --open</code>.</p>'
            '<h2>Lessons</h2><ul>' + ''.join(row(p) for p in pages if p['kind'] == 'lesson') + '</ul>'
            '<h2>Reference</h2><ul>' + ''.join(row(p) for p in pages if p['kind'] == 'reference') + '</ul>')
    out = dest / 'index.html'
    out.write_text(page('lossnotes', body, 'index.html', False), encoding='utf-8')
    return out


def page_bytes(p: Path) -> int:
    "Bytes a reader loads for the page at `p`: the HTML and the frames in its `_files` folder."
    folder = p.parent / f'{p.stem}_files'
    return p.stat().st_size + (sum(f.stat().st_size for f in folder.iterdir()) if folder.exists() else 0)


def build_site(dest: Path | str, src: Path | str = ROOT / 'nbs', only: list[str] | None = None) -> dict:
    "Write the site into `dest` (replacing what was there); returns the pages, their sizes and build seconds."
    import matplotlib
    matplotlib.use('Agg')
    dest, src = Path(dest), Path(src)
    if dest.exists(): shutil.rmtree(dest)
    dest.mkdir(parents=True)
    MATH_ERRORS.clear()
    t0, pages = time.perf_counter(), []
    notebooks = site_notebooks(src)
    lessons = [p for p, kind in notebooks if kind == 'lesson']
    for path, kind in notebooks:
        if only is not None and path.stem not in only: continue
        rel = path.relative_to(src).with_suffix('.html')
        home = '../' * (len(rel.parts) - 1) + 'index.html'
        footer = _lesson_footer(lessons, lessons.index(path)) if kind == 'lesson' else ''
        t = time.perf_counter()
        p = notebook_page(path, kind, dest / rel, home, footer)
        p.update(seconds=time.perf_counter() - t, bytes=page_bytes(p['page']))
        pages.append(p)
    index = index_page(pages, dest)
    if MATH_ERRORS: raise ValueError('LaTeX that latex2mathml cannot convert:\n' + '\n'.join(MATH_ERRORS))
    return dict(dest=dest, index=index, pages=pages, seconds=time.perf_counter() - t0)


def main(argv: list[str]) -> int:
    only, src = None, ROOT / 'nbs'
    if '--only' in argv:
        i = argv.index('--only'); only, argv = argv[i + 1:], argv[:i]
    if '--src' in argv:
        i = argv.index('--src'); src, argv = Path(argv[i + 1]), argv[:i] + argv[i + 2:]
    dest = Path(argv[0]) if argv else ROOT / 'site'
    r = build_site(dest, src, only=only)
    for p in r['pages']:
        fr = p['frames']
        extra = f", {fr['files']} frames ({fr['rule']} rule, {fr['count']} settings)" if fr else ''
        print(f"{p['page'].relative_to(r['dest'])}: {p['bytes'] / 1e6:.2f} MB{extra}, {p['seconds']:.1f} s")
    print(f"wrote {len(r['pages'])} pages and {r['index'].name} to {r['dest']} in {r['seconds']:.0f} s "
          f"(open {r['index'].as_uri()})")
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
