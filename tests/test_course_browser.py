"""The README's course command in a real browser: on a fresh copy of the repository, `bash scripts/course.sh` builds
the learner workspace course/ (no solution region in it), serves it, and the URL it prints opens the learner's home
page; `--solutions` serves the instructor's notebooks instead. Needs Debian's chromium (`apt-get install chromium`).

course.sh sources scripts/_env.sh, which builds .venv when it is missing or stale. The copy's .venv is a link to the
virtual environment running these tests, used only when that environment's install stamp matches the copy (so
_env.sh installs nothing); otherwise the test is skipped. Servers bind 127.0.0.1 and are stopped by their PID."""
import hashlib
import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import browser_driver as bd
from conftest import PY, ROOT
from lossnotes.course.build import BEGIN, HOME, lesson_notebooks, title_and_subtitle

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bd.CHROMIUM is None, reason='Debian chromium is missing: apt-get install chromium')]
ARTIFACTS = ROOT / 'artifacts' / 'browser'


def _fresh_copy(dest: Path) -> Path:
    "The repository's files (tracked, and new ones git does not ignore), as a fresh clone of this working tree has them."
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split('\n')
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    venv = Path(PY).parent.parent
    want = hashlib.sha256(b''.join((dest / n).read_bytes() for n in ('constraints.txt', 'settings.ini', 'setup.py'))).hexdigest()
    stamp = venv / '.lossnotes-installed'
    if not stamp.exists() or stamp.read_text().strip() != want:
        pytest.skip(f'{venv} is not installed from these settings: scripts/_env.sh would reinstall it')
    (dest / '.venv').symlink_to(venv)
    return dest


def _printed_url(log: Path, port: int, timeout: float = 30) -> re.Match:
    deadline = time.time() + timeout
    while True:
        m = re.search(rf'http://127\.0\.0\.1:{port}/lab/tree/(\S+?)\?token=(\w+)', log.read_text())
        if m or time.time() > deadline: return m
        time.sleep(0.3)


def test_course_sh_serves_the_learner_course_and_lands_on_its_home_page(tmp_path):
    repo = _fresh_copy(tmp_path / 'repo')
    port = bd.free_port()
    env = {'JUPYTER_CONFIG_DIR': str(tmp_path / 'cfg'), 'JUPYTER_RUNTIME_DIR': str(tmp_path / 'rt'), 'PYTHONPATH': str(repo)}
    with bd.server(['bash', str(repo / 'scripts' / 'course.sh'), f'--port={port}'], port, tmp_path, env=env,
                   ready_path='/api/status', timeout=180):
        url = _printed_url(tmp_path / f'server-{port}.log', port)
        assert url and url.group(1) == HOME, (tmp_path / f'server-{port}.log').read_text()[-3000:]
        served = repo / 'course'
        assert sorted(p.name for p in served.glob('*.ipynb')) == sorted([HOME] + [p.name for p in lesson_notebooks(repo / 'nbs')])
        for p in served.glob('*.ipynb'):
            assert not any(BEGIN in ''.join(c['source']) for c in json.loads(p.read_text())['cells']), p.name
        title = title_and_subtitle(json.loads((served / HOME).read_text()))[0]
        with bd.browser() as page:
            page.goto(url.group(0), timeout=120000)
            heading = page.locator('.jp-MarkdownCell .jp-RenderedMarkdown h1').first
            heading.wait_for(timeout=120000)
            assert heading.inner_text().replace('¶', '').strip() == title
            assert page.locator('.lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel', has_text=HOME).count() >= 1
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / 'course_home.png'))
    assert not (ROOT / '.venv').is_symlink()


def test_course_sh_solutions_serves_the_instructors_notebooks(tmp_path):
    repo = _fresh_copy(tmp_path / 'repo')
    port = bd.free_port()
    env = {'JUPYTER_CONFIG_DIR': str(tmp_path / 'cfg'), 'JUPYTER_RUNTIME_DIR': str(tmp_path / 'rt'), 'PYTHONPATH': str(repo)}
    with bd.server(['bash', str(repo / 'scripts' / 'course.sh'), '--solutions', f'--port={port}'], port, tmp_path, env=env,
                   ready_path='/api/status', timeout=180):
        url = _printed_url(tmp_path / f'server-{port}.log', port)
        assert url and url.group(1) == 'index.ipynb'
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/api/contents?token={url.group(2)}', timeout=10) as r:
            names = {c['name'] for c in json.loads(r.read())['content']}
        assert names >= {'index.ipynb', 'reference'} | {p.name for p in lesson_notebooks(repo / 'nbs')}
    assert not (repo / 'course').exists()
