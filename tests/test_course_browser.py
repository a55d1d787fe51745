"""The README's course command in a real browser: on a fresh copy of the repository, `bash scripts/course.sh` builds
the learner workspace course/ (no solution region in it) and the learner's environment .venv-course (none of the
development toolchain in it), serves it, and the URL it prints opens the learner's home page, in a JupyterLab with no
nbgrader UI and no news question; in it a wrong prediction gets a hint without the value and `reveal=True` shows the
value. `--reset` while the course is open starts no second server. `--solutions` serves the instructor's notebooks
instead. Needs Debian's chromium (`apt-get install chromium`).

course.sh builds .venv-course when it is missing or stale: the copy's is a link to the clone's, which the `course_env`
fixture (tests/conftest.py) builds first, so course.sh in the copy finds it current and installs nothing. `--solutions`
sources scripts/_env.sh, which builds .venv: the copy's .venv is a link to the virtual environment running these
tests, used only when its install stamp matches the copy; otherwise the test is skipped. Servers bind 127.0.0.1 and
are stopped by their PID."""
import hashlib
import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import browser_driver as bd
from conftest import PY, ROOT, copy_repo_files
from lossnotes.course.build import BEGIN, HOME, lesson_notebooks, title_and_subtitle

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bd.CHROMIUM is None, reason='Debian chromium is missing: apt-get install chromium')]
ARTIFACTS = ROOT / 'artifacts' / 'browser'


DEV_ONLY = {'nbgrader', 'playwright', 'pytest', 'hypothesis', 'torchmetrics', 'voila', 'nbdev'}
NEWS = 'official Jupyter news'  # JupyterLab's question: "Would you like to get notified about official Jupyter news?"
FIXTURES = ROOT / 'tests' / 'fixtures'
HINTS = [  # a learner's scratch notebook on the fixture lesson, whose prediction's value is 3 (the mean of batch means 1 and 5)
    "from lossnotes.course.exercises import check",
    "check('fixturecourse.toy/predict-mean-of-means', 9)",
    "check('fixturecourse.toy/predict-mean-of-means', 9, reveal=True)",
]


def _learner_venv(repo: Path) -> None:
    "Link the copy's .venv-course to the clone's when the clone's stamp matches the copy (what course.sh checks)."
    want = hashlib.sha256(b''.join((repo / n).read_bytes() for n in ('constraints.txt', 'settings.ini', 'setup.py',
                                                                      'scripts/course.sh'))).hexdigest()
    stamp = ROOT / '.venv-course' / '.lossnotes-course-installed'
    if stamp.exists() and stamp.read_text().strip() == want: (repo / '.venv-course').symlink_to(ROOT / '.venv-course')


def _menus(page) -> list[str]:
    page.locator('.lm-MenuBar-itemLabel').first.wait_for(timeout=120000)
    return [t.strip() for t in page.locator('.lm-MenuBar-itemLabel').all_inner_texts()]


def _shows_news_question(page, seconds: float) -> bool:
    try:
        page.get_by_text(NEWS).first.wait_for(timeout=seconds * 1000)
        return True
    except Exception: return False


def _run_all(page, url: str, nb: str, log: Path) -> list[str]:
    "Open `nb` on the server at `url` (a lab URL with its token), run every cell, return each code cell's output text."
    base, token = re.match(r'(http://[^/]+)/.*\?token=(\w+)', url).groups()
    feedback = "() => document.querySelectorAll('.lossnotes-feedback').length >= 2"
    return bd.lab_run_all(page, base, token, nb, done=feedback, log=log,
                          screenshot=ARTIFACTS / 'course_hints_failed.png')['outputs']


def _fresh_copy(dest: Path) -> Path:
    "The repository's files as a fresh clone of this working tree has them, with its .venv a link to this one."
    copy_repo_files(dest)
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


def test_course_sh_serves_the_learner_course_and_lands_on_its_home_page(tmp_path, course_env):
    repo = _fresh_copy(tmp_path / 'repo')
    _learner_venv(repo)
    port = bd.free_port()
    env = {'JUPYTER_CONFIG_DIR': str(tmp_path / 'cfg'), 'JUPYTER_RUNTIME_DIR': str(tmp_path / 'rt'),
           'PYTHONPATH': f'{repo}:{FIXTURES}'}  # the fixture lesson for the checker's hints
    log = tmp_path / f'server-{port}.log'
    with bd.server(['bash', str(repo / 'scripts' / 'course.sh'), f'--port={port}'], port, tmp_path, env=env,
                   ready_path='/api/status', timeout=1500):
        url = _printed_url(log, port)
        assert url and url.group(1) == HOME, log.read_text()[-3000:]
        packages = json.loads(subprocess.run([str(repo / '.venv-course' / 'bin' / 'python'), '-m', 'pip', 'list', '--format=json'],
                                             capture_output=True, text=True, check=True).stdout)
        names = {p['name'].lower() for p in packages}
        assert {'torch', 'jupyterlab', 'matplotlib', 'ipywidgets'} <= names and not names & DEV_ONLY, sorted(names & DEV_ONLY)
        said = log.read_text()
        for noise in ('nbgrader', 'deprecated', 'DEPRECATION', 'editable'): assert noise not in said, said[-3000:]
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
            menus = _menus(page)
            assert 'File' in menus and not [m for m in menus if 'grader' in m.lower()], menus  # no Nbgrader menu
            assert not _shows_news_question(page, 8)
            for nbgrader_ui in ('Validate', 'Create Assignment', 'Assignment List', 'Formgrader'):
                assert page.get_by_text(nbgrader_ui, exact=True).count() == 0, nbgrader_ui
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / 'course_home.png'))

            nbformat = pytest.importorskip('nbformat')
            nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in HINTS],
                                          metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}})
            nbformat.write(nb, served / 'zz_hints.ipynb')
            imports, wrong, revealed = _run_all(page, url.group(0), 'zz_hints.ipynb', log)
            assert 'Not yet' in wrong and 'You gave 9. That is too high.' in wrong and '3' not in wrong.replace('predict-mean-of-means', ''), wrong
            assert 'Not yet' in revealed and 'The value is 3.' in revealed, revealed
            page.screenshot(path=str(ARTIFACTS / 'course_hints.png'))

        # --reset while the course is open: the lesson starts over, no second server, the running one's URL
        lesson = lesson_notebooks(repo / 'nbs')[0]
        (served / lesson.name).write_text('my edits')
        r = subprocess.run(['bash', str(repo / 'scripts' / 'course.sh'), '--reset', lesson.name.split('_')[0]],
                           capture_output=True, text=True, timeout=300, env={**os.environ, **env})
        assert r.returncode == 0, r.stderr[-2000:]
        assert f'The course is already open: http://127.0.0.1:{port}/lab/tree/{lesson.name}?token={url.group(2)}' in r.stdout, r.stdout
        assert (served / lesson.name).read_text() != 'my edits' and [p.read_text() for p in (served / 'backups').iterdir()] == ['my edits']
    assert not (ROOT / '.venv').is_symlink()


def test_the_browser_checks_see_nbgrader_and_the_news_question_where_they_are(tmp_path):
    "The control for the test above: the development environment's JupyterLab, started without the course's settings, shows both."
    (tmp_path / 'folder').mkdir()
    (tmp_path / 'folder' / HOME).write_text(json.dumps({'cells': [], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}))
    with bd.jupyterlab(tmp_path / 'folder', tmp_path) as (url, token), bd.browser() as page:
        page.goto(f'{url}/lab/tree/{HOME}?token={token}', timeout=120000)
        assert [m for m in _menus(page) if 'grader' in m.lower()], _menus(page)
        assert _shows_news_question(page, 60)


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
