"""Drive the course's live figures in headless Chromium (Debian's package, through Playwright's executable_path).

Shared by tests/test_browser.py and benchmarks/bench_sliders.py. Every server binds 127.0.0.1 on a free port
and is stopped by its PID (its whole process group), even when the caller fails."""
from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHROMIUM = os.environ.get('LOSSNOTES_CHROMIUM') or ('/usr/bin/chromium' if Path('/usr/bin/chromium').exists() else None)
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--no-first-run', '--disable-sync']
TOPICS = sorted(p.name for p in (ROOT / 'nbs').glob('0[1-9]_*.ipynb') if 'explorer_parts' in p.read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def copy_nbs(dest: Path) -> Path:
    "A copy of nbs/ to serve: servers may write into the notebooks they open."
    shutil.copytree(ROOT / 'nbs', dest, ignore=shutil.ignore_patterns('.ipynb_checkpoints'))
    return dest


@contextmanager
def server(cmd: list[str], port: int, cwd: Path, env: dict | None = None, ready_path: str = '/', timeout: float = 90,
           base_env: dict | None = None):
    "Start `cmd` in its own process group, wait until 127.0.0.1:`port` answers HTTP, stop it afterwards."
    log = open(cwd / f'server-{port}.log', 'w')
    proc = subprocess.Popen(cmd, cwd=cwd, env={**(os.environ if base_env is None else base_env), **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None: raise RuntimeError(f'server exited: {(cwd / f"server-{port}.log").read_text()[-2000:]}')
            try:
                urllib.request.urlopen(f'http://127.0.0.1:{port}{ready_path}', timeout=5)
                break
            except urllib.error.HTTPError: break  # it answers
            except OSError:
                if time.time() > deadline: raise TimeoutError(f'{cmd[0]} did not answer on port {port}')
                time.sleep(0.3)
        yield proc
    finally:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try: os.killpg(proc.pid, sig)
            except ProcessLookupError: break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired: pass
        log.close()


@contextmanager
def voila(nb: str, folder: Path):
    "Serve one notebook of `folder` with Voila; yields its URL."
    port = free_port()
    cmd = [str(BIN / 'voila'), nb, '--no-browser', f'--port={port}', '--Voila.ip=127.0.0.1']
    with server(cmd, port, folder, env={'MPLBACKEND': 'Agg'}, ready_path='/voila/static/'):
        yield f'http://127.0.0.1:{port}/'


_CHROMIUM = {}  # this process's one Chromium, launched by the first `browser()`: {'playwright': ..., 'browser': ...}


def _chromium():
    """This process's Chromium, launched on first use (a launch costs about a second of CPU), again if it has gone.
    Playwright's sync API leaves its asyncio loop set as the main thread's running loop while it is started: code that
    runs its own loop in this process (asyncio.run) must not run after a browser test, or must first call
    close_chromium()."""
    b = _CHROMIUM.get('browser')
    if b is None or not b.is_connected():
        from playwright.sync_api import sync_playwright
        if 'playwright' not in _CHROMIUM: _CHROMIUM['playwright'] = sync_playwright().start()
        b = _CHROMIUM['browser'] = _CHROMIUM['playwright'].chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    return b


def close_chromium():
    "Close this process's Chromium and Playwright's driver, if `browser()` started them (tests/conftest.py, at the end)."
    b, pw = _CHROMIUM.pop('browser', None), _CHROMIUM.pop('playwright', None)
    try:
        if b is not None: b.close()
    finally:
        if pw is not None: pw.stop()


@contextmanager
def browser():
    """A headless Chromium page (and its console errors) from Playwright's sync API, in a browser context of its own
    (no cookie, storage or cache shared with another page) of this process's one Chromium."""
    context = _chromium().new_context(viewport={'width': 1100, 'height': 900})
    try:
        page = context.new_page()
        page.errors = []
        page.on('console', lambda m: page.errors.append(m.text) if m.type == 'error' else None)
        page.on('pageerror', lambda e: page.errors.append(str(e)))
        yield page
    finally: context.close()


def module_of(nb: str):
    "The library module whose `explorer_parts` the notebook shows: one it imports it from, else its default_exp."
    cells = [''.join(c['source']) for c in json.loads((ROOT / 'nbs' / nb).read_text())['cells']]
    code = '\n'.join(cells)
    imported = re.search(r'from lossnotes\.([\w.]+) import [^\n]*\bexplorer_parts\b', code)
    name = imported.group(1) if imported else re.search(r'default_exp\s+(\S+)', cells[0]).group(1)
    return importlib.import_module('lossnotes.' + name)


def expected_readout(draw, values: dict) -> str:
    "What the explorer prints for `values`, computed by the library in this process."
    from lossnotes.lessons.plotting import new_figure
    return str(draw(new_figure(), **values) or '')


def step_through(draw, controls: dict, moves: list, **fixed) -> dict:
    """Render an Explorer (with `fixed` values set), make each move, check each readout against a full drawing; returns
    its counts, and how many different axes limits ('limits') and limits with sets of artists behind the moving layer
    ('layers') its frames had: each of those needs a background of its own, once."""
    from lossnotes.lessons.plotting import Explorer
    ex = Explorer(draw, controls)
    ex.values.update(fixed)
    ex.render(); ex.frame()
    seen = {layer_key(ex)}
    for move in moves:
        assert ex.step(**move) == expected_readout(draw, {**ex.values, **move}), move
        ex.frame()
        seen.add(layer_key(ex))
    return {**ex.counts, 'layers': len(seen), 'limits': len({k[1] for k in seen})}


def assert_in_place_with_still_limits(draw, controls: dict, moves: list) -> dict:
    "`step_through` the moves: every one updates in place, the limits never move, one background per layer."
    c = step_through(draw, controls, moves)
    assert (c['draw'], c['update'], c['limits']) == (1, len(moves), 1), c
    assert c['background'] == c['layers'] < len(moves), c
    return c


def layer_key(ex) -> tuple:
    """What an explorer's last frame drew behind its moving layer: the other artists (themselves, not ids) and the
    legends' entries; and the axes limits."""
    top = {id(a) for layer in ex._layers.values() for a in layer}
    legends = tuple(None if ax.get_legend() is None else tuple(t.get_text() for t in ax.get_legend().get_texts())
                    for ax in ex.fig.axes)  # a legend's entries set the layout, even when it is drawn in the layer
    return (tuple(tuple(a for a in ax.get_children() if id(a) not in top) for ax in ex.fig.axes) + (legends,),
            tuple((ax.get_xlim(), ax.get_ylim()) for ax in ex.fig.axes))


def next_value(control, value):
    "The value ArrowRight moves a slider to (ArrowLeft at the top end), and the key to press."
    if control.kind == 'select':
        i = control.options.index(value)
        return (control.options[i + 1], 'ArrowRight') if i + 1 < len(control.options) else (control.options[i - 1], 'ArrowLeft')
    is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (control.value, control.min, control.max))
    step = control.step if control.step is not None else (1 if is_int else (control.max - control.min) / 100)
    if value + step <= control.max: return (value + step, 'ArrowRight')
    return (value - step, 'ArrowLeft')


FIGURE = '.lossnotes-explorer .lossnotes-figure'  # Voila: the figure is an image widget in the panel
LAB_FIGURE = '.jp-Cell:has(.lossnotes-explorer) .jp-OutputArea-output img'  # Jupyter: the PNG output above it
HANDLE = '.lossnotes-explorer .noUi-handle'

# Records, in the page's clock (ms), every key pressed and every figure image that finished loading.
RECORDER = """sel => { if (window.__lossnotes) return; const r = window.__lossnotes = {keys: [], frames: []};
  document.addEventListener('keydown', e => r.keys.push(performance.now()), true);
  document.addEventListener('load', e => { const t = e.target;
    if (t.tagName === 'IMG' && t.matches(sel)) r.frames.push([performance.now(), t.src.length]); }, true); }"""


def figure_src(page, figure: str = FIGURE) -> str:
    return page.locator(figure).last.get_attribute('src')


def readout_text(page) -> str:
    return (page.locator('.lossnotes-readout').last.text_content() or '').strip()  # text even while scrolled out of view


def record(page, figure: str = FIGURE):
    "Start recording key presses and figure loads (see RECORDER)."
    page.evaluate(RECORDER, figure)


def recorded(page) -> dict:
    return page.evaluate('() => ({keys: [...window.__lossnotes.keys], frames: [...window.__lossnotes.frames]})')


def move_slider(page, index: int, key: str, figure: str = FIGURE, timeout_ms: float = 20000, idle_ms: float = 0) -> float:
    """Focus the index-th slider handle, press `key` (`idle_ms` after the last figure arrived: a reader's pause, in
    which page and kernel finish the last move), wait until a new figure has loaded; seconds from key to figure."""
    record(page, figure)
    if idle_ms: page.wait_for_timeout(idle_ms)
    n = len(recorded(page)['frames'])
    page.locator(HANDLE).nth(index).focus()
    page.keyboard.press(key)
    page.wait_for_function('n => window.__lossnotes.frames.length > n', arg=n, timeout=timeout_ms, polling=5)
    r = recorded(page)
    return (r['frames'][n][0] - r['keys'][-1]) / 1e3


def step_value(control, value, key: str):
    "The value `key` (ArrowRight or ArrowLeft) moves a slider to from `value`, or None at that end."
    sign = 1 if key == 'ArrowRight' else -1
    if control.kind == 'select':
        i = control.options.index(value) + sign
        return control.options[i] if 0 <= i < len(control.options) else None
    is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (control.value, control.min, control.max))
    step = control.step if control.step is not None else (1 if is_int else (control.max - control.min) / 100)
    new = value + sign * step if is_int else round(value + sign * step, 10)
    return new if control.min <= new <= control.max else None


def drag_plan(control, moves: int = 30) -> list:
    "(key, value) for each of `moves` key presses along a slider, turning back at either end, ending off the start."
    def plan(push: bool) -> list:
        value, key, out = control.value, 'ArrowRight', []
        while len(out) < moves:
            new = step_value(control, value, key)
            if new is None:  # at an end: turn back, after one press against it when `push` (as a hand does)
                if push: out.append((key, value))
                key = 'ArrowLeft' if key == 'ArrowRight' else 'ArrowRight'
                continue
            out.append((key, new))
            value = new
        return out[:moves]
    bounced = plan(push=False)  # a drag that ends where it started shows nothing new at its end
    return bounced if bounced[-1][1] != control.value else plan(push=True)


def drag(page, index: int, plan: list, expected: str, gap_s: float = 0.030, figure: str = FIGURE,
         quiet_ms: float = 400, timeout_ms: float = 30000) -> dict:
    "Press the plan's keys on the index-th slider `gap_s` apart; wait for the `expected` readout; frames and timings."
    record(page, figure)
    page.locator(HANDLE).nth(index).focus()
    n0, k0 = len(recorded(page)['frames']), len(recorded(page)['keys'])
    t0 = time.perf_counter()
    for i, (key, _) in enumerate(plan):
        time.sleep(max(0.0, t0 + i * gap_s - time.perf_counter()))
        page.keyboard.press(key)
    # done when the readout shows the final value and no figure has arrived for `quiet_ms` (a backlog would still be
    # arriving); the last frame can precede the last key when the kernel had already drawn the final value
    page.wait_for_function("""([e, quiet]) => { const r = document.querySelectorAll('.lossnotes-readout');
        const f = window.__lossnotes.frames, k = window.__lossnotes.keys, now = performance.now();
        return r.length && r[r.length - 1].innerText.trim() === e && now - k[k.length - 1] > quiet
               && (!f.length || now - f[f.length - 1][0] > quiet); }""",
                           arg=[expected.strip(), quiet_ms], timeout=timeout_ms, polling=10)
    r = recorded(page)
    keys, frames = r['keys'][k0:], [f for f in r['frames'][n0:] if f[0] >= r['keys'][k0]]
    return dict(frames=len(frames), keys=len(keys), settle_s=max(0.0, (frames[-1][0] - keys[-1]) / 1e3) if frames else 0.0)


def shown_image(page, figure: str = FIGURE):
    "The figure the page shows now, decoded: an (H, W, 3) uint8 array."
    import base64, io
    import numpy as np
    from PIL import Image
    b64 = page.evaluate("""async sel => { const imgs = document.querySelectorAll(sel);
        const blob = await (await fetch(imgs[imgs.length - 1].src)).blob();
        return await new Promise(ok => { const f = new FileReader(); f.onload = () => ok(f.result.split(',')[1]);
                                         f.readAsDataURL(blob); }); }""", figure)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert('RGB'))


def library_image(draw, controls: dict, values: dict, shape: tuple, dpi: int = 90):
    "The figure the library draws for `values` (a full drawing, no fast path), at the pixel size `shape`."
    import numpy as np
    from lossnotes.lessons.plotting import Explorer
    ex = Explorer(draw, controls, figsize=(shape[1] / dpi, shape[0] / dpi))
    ex.render(**values)
    return np.asarray(ex.frame())[..., :3].copy()


def differing(a, b, tol: int = 8) -> float:
    "Fraction of pixels of two same-sized images that differ by more than `tol` in some channel (1.0 if sizes differ)."
    import numpy as np
    if a.shape != b.shape: return 1.0
    return float((np.abs(a.astype(int) - b.astype(int)).max(-1) > tol).mean())


def open_explorer(page, url: str, timeout_ms: float = 180000):
    page.goto(url, timeout=timeout_ms)
    page.wait_for_selector(HANDLE, timeout=timeout_ms)
    page.wait_for_selector(FIGURE, timeout=timeout_ms)


@contextmanager
def jupyterlab(folder: Path, tmp: Path, token: str = 'lossnotes-browser-test'):
    "JupyterLab serving `folder` from this interpreter's environment (what scripts/course.sh starts); yields its URL."
    port = free_port()
    cmd = [str(BIN / 'jupyter'), 'lab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.root_dir={folder}',
           f'--port={port}', f'--IdentityProvider.token={token}'] + (['--allow-root'] if os.getuid() == 0 else [])
    env = {'JUPYTER_CONFIG_DIR': str(tmp / 'cfg'), 'JUPYTER_RUNTIME_DIR': str(tmp / 'rt')}
    env_unset = {k: v for k, v in os.environ.items() if k != 'MPLBACKEND'}
    with server(cmd, port, tmp, env=env, ready_path=f'/api/status?token={token}', timeout=120, base_env=env_unset):
        yield f'http://127.0.0.1:{port}', token


_PAGE_STATE = r"""() => {  // textContent, not innerText: JupyterLab skips rendering the cells out of view
    const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
    const cells = panel ? [...panel.querySelectorAll('.jp-CodeCell')] : [];
    const out = c => c.querySelector('.jp-Cell-outputWrapper');
    const editor = c => c.querySelector('.jp-InputArea-editor .cm-content');
    const runnable = cells.filter(c => !editor(c) || editor(c).textContent.trim());  // JupyterLab never runs an empty cell
    return {prompts: runnable.map(c => (c.querySelector('.jp-InputPrompt')?.textContent || '').trim()),
            outputs: runnable.map(c => out(c)?.innerText || out(c)?.textContent || ''),
            errors: runnable.filter(c => /^\[\d+\]:$/.test((c.querySelector('.jp-InputPrompt')?.textContent || '').trim())  // run here
                                      && /Traceback \(most recent call last\)/.test(out(c)?.textContent || '')).length,
            status: document.querySelector('#jp-main-statusbar')?.innerText || '',
            dialog: document.querySelector('.jp-Dialog')?.innerText || ''}; }"""

_RAN = re.compile(r'\[\d+\]:')  # the prompt of a cell run in this session: [12]:


def lab_run_all(page, url: str, token: str, nb: str, done: str | None = None, timeout_s: float = 480,
                log: Path | None = None, screenshot: Path | None = None) -> dict:
    """Open `nb` in JupyterLab as the one notebook of a reset workspace, Run All Cells, and wait until every code cell
    has run in this session, the kernel is idle and the JavaScript predicate `done` holds (default: the explorer's
    slider handle is shown); returns the page's state (each code cell's prompt and output text).

    Driven by what the page shows, not by timing. JupyterLab's kernel-selection dialog is accepted. Run All is clicked
    again (twice at most) only while no cell has run at all and the kernel is idle: a click that reached a notebook
    whose kernel was still starting. Any other dialog (a kernel that died), a traceback in an output, cells left unrun after
    others ran (an error stops Run All), or every cell run without `done` for 30 s raises an AssertionError at once;
    nothing done after `timeout_s` raises a TimeoutError. Each failure names the prompts, the outputs, the status bar,
    the dialog and the tail of the server's log `log` (the kernel's own errors go there), and saves `screenshot`."""
    from playwright.sync_api import Error as PlaywrightError
    explorer = done is None
    done = done or f"() => !!document.querySelector({json.dumps(HANDLE)})"
    def fail(why: str, kind=AssertionError):
        try:
            s = page.evaluate(_PAGE_STATE)
            ran = [i for i, p in enumerate(s['prompts']) if _RAN.fullmatch(p)]
            shown = [i for i, o in enumerate(s['outputs']) if 'Traceback (most recent call last)' in o] + ran[-1:]
            state = '\n'.join([f"status bar: {s['status']!r}", f"dialog: {s['dialog']!r}", f"tracebacks: {s['errors']}",
                               f"prompts: {' '.join(s['prompts'])}"]
                              + [f"output of code cell {i + 1}:\n{s['outputs'][i][-2000:]}" for i in sorted(set(shown))])
        except PlaywrightError as e: state = f'(unreadable: {e})'
        if screenshot is not None:
            try:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot))
            except PlaywrightError: pass
        said = log.read_text(errors='replace')[-4000:] if log is not None and log.exists() else '(no server log given)'
        raise kind(f'{nb}: {why}\n{state}\nserver log, last lines:\n{said}')
    try:
        page.goto(f'{url}/lab/tree/{nb}?reset&token={token}', timeout=120000)
        page.wait_for_selector('.jp-Notebook .jp-CodeCell', timeout=120000)
    except PlaywrightError as e: fail(f'the notebook did not open: {e}')
    start, runs, all_ran, stopped = time.time(), [], None, None
    while True:
        now = time.time()
        if now - start > timeout_s: fail(f'not done {timeout_s:.0f} s after opening ({len(runs)} Run All)', TimeoutError)
        try:
            s = page.evaluate(_PAGE_STATE)
            if s['dialog']:
                if 'Select Kernel' not in s['dialog']: fail('JupyterLab shows a dialog')
                page.locator('.jp-Dialog .jp-mod-accept').first.click(timeout=5000)  # which kernel to start: its default
                time.sleep(0.5)
                continue
            if s['errors']: fail('a cell raised an error')
            idle = 'Idle' in s['status']
            unrun = [p for p in s['prompts'] if not _RAN.fullmatch(p)]
            running = any('*' in p for p in unrun)
            if runs and idle and not unrun:
                if page.evaluate(done):
                    if explorer: page.locator('.lossnotes-explorer').first.scroll_into_view_if_needed()
                    return s
                all_ran = all_ran or now
                if now - all_ran > 30: fail('every cell ran, and it is not done')
            else: all_ran = None
            if runs and idle and unrun and not running and len(unrun) < len(s['prompts']):
                stopped = stopped or now  # some cells ran, the rest did not: give the page a moment to show an error
                if now - stopped > 5: fail('cells are left unrun after others ran (an error stops Run All)')
            else: stopped = None
            if idle and not running and len(unrun) == len(s['prompts']) and (not runs or now - runs[-1] > 20):
                if len(runs) == 3: fail('Run All, three times, ran no cell')
                page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
                page.locator('.lm-Menu-itemLabel', has_text='Run All Cells').first.click()
                runs.append(now)
        except PlaywrightError as e: fail(f'the page did not answer: {e}')
        time.sleep(0.5)


REFERENCE = '''import numpy as np
from lossnotes.lessons.plotting import explore, live, slider
x = np.linspace(0, 1, 200)

def draw_line(fig, a=1.0):
    "One line, drawn whole on every move."
    ax = fig.subplots()
    ax.plot(x, a * x)
    ax.set(xlabel='x', ylabel='a x', ylim=(0, 2))
    return f'a = {a:.2f}'

def draw_line_live(fig, a=1.0):
    "The same line on the fast path: a move updates it in place."
    ax = fig.subplots()
    line, = ax.plot(x, 0 * x)
    ax.set(xlabel='x', ylabel='a x', ylim=(0, 2))
    def update(a):
        line.set_ydata(a * x)
        return f'a = {a:.2f}'
    return live(update(a), update, [line])

controls = dict(a=slider(1.0, 0.0, 2.0, 0.01))
'''


def reference_parts(fast: bool) -> tuple:
    "(draw, controls) of the one-line reference figure, drawn whole (`fast=False`) or on the fast path."
    ns = {}
    exec(REFERENCE, ns)
    return ns['draw_line_live' if fast else 'draw_line'], ns['controls']


def reference_notebook(folder: Path, fast: bool) -> str:
    "Write a notebook showing the one-line reference figure into `folder`; returns its file name."
    import nbformat
    name = f"reference_{'fast' if fast else 'full'}.ipynb"
    call = f"explore({'draw_line_live' if fast else 'draw_line'}, **controls);"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(REFERENCE), nbformat.v4.new_code_cell(call)],
                                  metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}})
    nbformat.write(nb, folder / name)
    return name
