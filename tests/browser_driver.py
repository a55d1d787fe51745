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
def server(cmd: list[str], port: int, cwd: Path, env: dict | None = None, ready_path: str = '/', timeout: float = 90):
    "Start `cmd` in its own process group, wait until 127.0.0.1:`port` answers HTTP, stop it afterwards."
    log = open(cwd / f'server-{port}.log', 'w')
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
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


@contextmanager
def browser():
    "A headless Chromium page (and its console errors) from Playwright's sync API."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = b.new_page(viewport={'width': 1100, 'height': 900})
            page.errors = []
            page.on('console', lambda m: page.errors.append(m.text) if m.type == 'error' else None)
            page.on('pageerror', lambda e: page.errors.append(str(e)))
            yield page
        finally: b.close()


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


def next_value(control, value):
    "The value ArrowRight moves a slider to (ArrowLeft at the top end), and the key to press."
    if control.kind == 'select':
        i = control.options.index(value)
        return (control.options[i + 1], 'ArrowRight') if i + 1 < len(control.options) else (control.options[i - 1], 'ArrowLeft')
    is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (control.value, control.min, control.max))
    step = control.step if control.step is not None else (1 if is_int else (control.max - control.min) / 100)
    if value + step <= control.max: return (value + step, 'ArrowRight')
    return (value - step, 'ArrowLeft')


def figure_src(page) -> str:
    return page.locator('.lossnotes-explorer .lossnotes-figure').first.get_attribute('src')


def readout_text(page) -> str:
    return page.locator('.lossnotes-explorer .lossnotes-readout').first.inner_text().strip()


def move_slider(page, index: int, key: str, timeout_ms: float = 20000) -> float:
    "Focus the index-th slider handle of the explorer, press `key`, wait for a new figure; returns seconds taken."
    before = figure_src(page)
    page.locator('.lossnotes-explorer .noUi-handle').nth(index).focus()
    t0 = time.perf_counter()
    page.keyboard.press(key)
    page.wait_for_function("s => { const e = document.querySelector('.lossnotes-explorer .lossnotes-figure');"
                           " return e && e.src !== s; }", arg=before, timeout=timeout_ms, polling=5)
    return time.perf_counter() - t0


def open_explorer(page, url: str, timeout_ms: float = 180000):
    page.goto(url, timeout=timeout_ms)
    page.wait_for_selector('.lossnotes-explorer .noUi-handle', timeout=timeout_ms)
    page.wait_for_selector('.lossnotes-explorer .lossnotes-figure', timeout=timeout_ms)
