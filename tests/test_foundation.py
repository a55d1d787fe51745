"""The project's foundation: import weight, packaging, README freshness, notebook layout, the open command."""
import ast
import configparser
import json
import pkgutil
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import lossnotes
import lossnotes.course
import lossnotes.lessons
import browser_driver as bd
from conftest import PY, ROOT, copy_repo_files, load_script

TOOLS = sorted(m.name for m in pkgutil.iter_modules(lossnotes.__path__) if not m.ispkg and m.name != '_modidx')
LESSONS = sorted(m.name for m in pkgutil.iter_modules(lossnotes.lessons.__path__))
COURSE = sorted(m.name for m in pkgutil.iter_modules(lossnotes.course.__path__))
MODULES = TOOLS + [f'lessons.{m}' for m in LESSONS] + [f'course.{m}' for m in COURSE]
HEAVY = ('matplotlib', 'ipywidgets', 'sklearn', 'pandas', 'IPython')


def test_modules_found():
    assert {'_checks', 'ema', 'lr_find', 'losscheck', 'gradtricks', 'batchnorm', 'accumulate'} == set(TOOLS)
    assert {'plotting', 'data', 'lr_find', 'losscheck', 'gradtricks', 'batchnorm', 'accumulate'} <= set(LESSONS)
    assert {'build', 'cli', 'exercises', 'folder', 'grading', 'lab'} == set(COURSE)


def _import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    "Every module of lossnotes/ -> the lossnotes modules it imports (anywhere in it), and those it imports inside a function."
    pkg = Path(lossnotes.__file__).parent
    files = {('.'.join(p.relative_to(pkg.parent).with_suffix('').parts)).removesuffix('.__init__'): p
             for p in pkg.rglob('*.py') if p.name != '_modidx.py'}
    graph, inside = {m: set() for m in files}, {m: set() for m in files}
    for mod, path in files.items():
        tree, here = ast.parse(path.read_text(encoding='utf-8')), mod if path.name == '__init__.py' else mod.rpartition('.')[0]
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import): targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                package = here.split('.')[:len(here.split('.')) - node.level + 1] if node.level else []  # `from ..x import` climbs
                base = '.'.join(package + ([node.module] if node.module else []))
                targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in files else base for a in node.names]
            else: continue
            for t in targets:
                if t in files and t != mod:  # a module that imports itself (a worker spawned by name) is no cycle
                    graph[mod].add(t)
                    if id(node) not in top: inside[mod].add(t)
    return graph, inside


def test_no_import_cycle_and_layers_point_down():
    "No cycle among lossnotes' modules; tools import no lesson or course, lessons no course, only the CLI imports grading."
    graph, inside = _import_graph()
    state, stack = {}, []
    def visit(m):  # depth first: a module met again while still on the stack closes a cycle
        state[m] = 'open'; stack.append(m)
        for n in sorted(graph[m]):
            assert state.get(n) != 'open', f"import cycle: {' -> '.join(stack[stack.index(n):] + [n])}"
            if n not in state: visit(n)
        state[m] = 'done'; stack.pop()
    for m in sorted(graph):
        if m not in state: visit(m)
    layer = lambda m: 'course' if m.startswith('lossnotes.course') else 'lesson' if m.startswith('lossnotes.lessons') else 'tool'
    up = {(m, n) for m in graph for n in graph[m] if (layer(m), layer(n)) in {('tool', 'lesson'), ('tool', 'course'), ('lesson', 'course')}}
    assert not up, f'imports against the layers: {sorted(up)}'
    assert {m for m in graph if 'lossnotes.course.grading' in graph[m]} == {'lossnotes.course.cli'}
    assert {m: sorted(v) for m, v in inside.items() if m.startswith('lossnotes.course') and v} == {}, 'an import hidden in a function'
    # and each course module imports first, whatever was imported before: in one fresh process, each after clearing lossnotes
    code = ("import importlib, sys\nfor m in sys.argv[1:]:\n    for k in [k for k in sys.modules if k.split('.')[0] == 'lossnotes']: del sys.modules[k]\n"
            "    importlib.import_module(m)\nprint('ok')")
    r = subprocess.run([PY, '-c', code, *sorted(m for m in graph if m.startswith('lossnotes.course.'))], capture_output=True, text=True)
    assert r.stdout.strip() == 'ok', r.stderr[-2000:]


@pytest.mark.parametrize('mod', TOOLS)
def test_tool_all_holds_tools_only(mod):
    "No tool module exports a figure, explorer, colour, demo data set or demo trainer."
    import importlib
    names = getattr(importlib.import_module(f'lossnotes.{mod}'), '__all__', [])
    bad = [n for n in names if re.search(r'plot|draw|explorer|COLOR|digits|train_|SEEDED|synthetic', n)]
    assert not bad, bad


def test_top_level_api():
    "The practitioner's tools are importable from the package itself."
    expected = set('ema ema_seeded zero_lag ema_lag EMA lr_range_test check_loss soft_accuracy grad_wrt value_with_grad_of '
                   'straight_through irls_loss RunningBatchNorm LossMeter epoch_summaries real_items'.split())
    assert expected <= set(lossnotes.__all__)
    for n in lossnotes.__all__: assert getattr(lossnotes, n).__module__.startswith('lossnotes.'), n


IMPORT_WEIGHT = """
import importlib, json, sys
heavy = set(sys.argv[1].split(','))
def loaded(): return {m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(('lossnotes.lessons', 'lossnotes.course'))}
report = {}
for mod in sys.argv[2:]:  # each import's newcomers; lossnotes first, which imports every tool
    before = loaded(); importlib.import_module(mod); report[mod] = sorted(loaded() - before)
before = loaded()
import lossnotes
lossnotes.LRFinderResult([1e-3, 1e-2], [1., 2.], [1., 2.])  # a result whose plot() would import matplotlib
report['LRFinderResult(...)'] = sorted(loaded() - before)
print(json.dumps(report))
"""


def test_import_is_light_and_tools_import_no_lesson_or_course():
    """In a fresh interpreter: importing the library, then each tool module, then building an LR range test result loads
    none of matplotlib, ipywidgets, scikit-learn, pandas, SciPy or IPython, and no lesson or course module. (`import
    lossnotes` imports every tool, so one process answers for each; a newcomer is blamed on the import that loaded it.)"""
    mods = ['lossnotes'] + [f'lossnotes.{m}' for m in TOOLS]
    out = subprocess.run([PY, '-c', IMPORT_WEIGHT, ','.join(HEAVY + ('scipy',)), *mods], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert list(report) == mods + ['LRFinderResult(...)'], report
    assert not any(report.values()), {k: v for k, v in report.items() if v}


def test_runtime_requirements_are_torch_only():
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(ROOT / 'settings.ini')
    assert cfg['DEFAULT']['requirements'].split() == ['torch>=2.1']
    viz = cfg['DEFAULT']['viz_requirements']
    assert 'matplotlib' in viz and 'ipywidgets' in viz


def test_readme_is_generated_from_index(capsys):
    assert load_script('make_readme').main(['--check']) == 0, capsys.readouterr().err


def _cells(path):
    return [c for c in json.loads(Path(path).read_text())['cells']]


@pytest.mark.parametrize('nb', sorted(p.name for p in (ROOT / 'nbs').glob('[0-9]*.ipynb')))
def test_notebook_opens_the_house_way(nb):
    "default_exp, an exported import cell, a hidden test-helper cell, then '# Title' and '> subtitle'."
    cells = _cells(ROOT / 'nbs' / nb)
    src = [''.join(c['source']) for c in cells]
    assert re.match(r'#\|\s*default_exp \w+', src[0]), src[0]
    assert src[1].startswith('#| export') and 'import' in src[1]
    assert src[2].startswith('#| hide')
    title = src[3].split('\n')
    assert cells[3]['cell_type'] == 'markdown' and title[0].startswith('# ') and title[2].startswith('> ')


@pytest.mark.slow
def test_wheel_installs_into_a_clean_venv(tmp_path):
    """A wheel built as `pip install` from a clone builds it (pip's isolated build, the committed learner notebooks)
    installs into a fresh virtual environment (torch from constraints) and works."""
    src = copy_repo_files(tmp_path / 'src')  # git's files only: no build/, no virtual environment
    r = subprocess.run([PY, '-m', 'pip', 'wheel', '--no-deps', '-q', '-w', str(tmp_path / 'dist'), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next((tmp_path / 'dist').glob('lossnotes-*.whl'))
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    vpy = str(venv / 'bin' / 'python')
    r = subprocess.run([vpy, '-m', 'pip', 'install', '-q', '--no-compile', '-c', str(ROOT / 'constraints.txt'), str(wheel)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    course = subprocess.run([str(venv / "bin" / "lossnotes"), "course", str(tmp_path / "c")], capture_output=True, text=True)
    assert course.returncode == 0, course.stderr
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(p.name for p in (ROOT / "lossnotes" / "notebooks").glob("*.ipynb"))
    code = ("import sys, lossnotes, lossnotes._checks as c; from lossnotes import LossMeter, EMA, RunningBatchNorm, check_loss, lr_range_test, real_items; "
            "print(lossnotes.__version__, c.check_number('beta', 0.5, 0, 1), any(m in sys.modules for m in ('matplotlib', 'ipywidgets', 'sklearn', 'pandas', 'IPython')))")
    out = subprocess.run([vpy, '-c', code], capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split()
    assert out == [lossnotes.__version__, '0.5', 'False']
    # without the viz extra, a lesson's figure or demo data names the extra to install
    for code in ("from lossnotes.lessons.data import digits; digits()",
                 "from lossnotes.lessons.plotting import new_figure; new_figure()"):
        r = subprocess.run([vpy, '-c', code], capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 1 and 'ImportError' in r.stderr and 'pip install "lossnotes[viz]"' in r.stderr, r.stderr


@pytest.mark.slow
def test_open_command_serves_jupyterlab_with_token(tmp_path, course_env):
    "The README's open command serves JupyterLab on 127.0.0.1, and /api/status needs the token."
    port, token = bd.free_port(), 'lossnotes-test-token'
    env = {'JUPYTER_RUNTIME_DIR': str(tmp_path / 'rt'), 'JUPYTER_CONFIG_DIR': str(tmp_path / 'cfg')}
    cmd = ['bash', str(ROOT / 'scripts' / 'course.sh'), f'--port={port}', f'--IdentityProvider.token={token}']
    with bd.server(cmd, port, tmp_path, env=env, ready_path=f'/api/status?token={token}', timeout=120):
        base = f'http://127.0.0.1:{port}'
        with urllib.request.urlopen(f'{base}/api/status?token={token}', timeout=5) as r:
            assert 'started' in json.loads(r.read())
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f'{base}/api/contents', timeout=5)
        assert e.value.code == 403
        with urllib.request.urlopen(f'{base}/api/contents/00_start_here.ipynb?content=0&token={token}', timeout=5) as r:
            assert json.loads(r.read())['name'] == '00_start_here.ipynb'


def test_floors_txt_pins_exactly_the_lesson_layer_floors_of_settings_ini():
    "scripts/floors.txt pins (pkg==x) what settings.ini's viz and course requirements allow at the lowest (pkg>=x)."
    from packaging.requirements import Requirement
    from packaging.version import Version
    cfg = configparser.ConfigParser(); cfg.read(ROOT / 'settings.ini')
    floors = {}  # package -> the version of its >= floor, over both lines
    for key in ('viz_requirements', 'course_requirements'):
        for spec in cfg['DEFAULT'][key].split():
            req = Requirement(spec)
            low = [s.version for s in req.specifier if s.operator == '>=']
            if low: floors.setdefault(req.name.lower(), set()).add(Version(low[0]))
    assert all(len(v) == 1 for v in floors.values()), f'one package with two floors: {floors}'
    floors = {k: v.pop() for k, v in floors.items()}
    pins = {}
    for line in (ROOT / 'scripts' / 'floors.txt').read_text().splitlines():
        line = line.split('#')[0].strip()
        if not line: continue
        req = Requirement(line)
        (pin,) = req.specifier  # one exact pin per line
        assert pin.operator == '==', f'floors.txt must pin exactly (pkg==x), got {line!r}'
        pins[req.name.lower()] = Version(pin.version)
    # jupyterlab is the course's front end: the floors run executes the lessons in an IPython shell, without it
    unpinned = {k for k in floors if k not in pins}
    assert unpinned == {'jupyterlab'}, f'floors in settings.ini that scripts/floors.txt does not pin: {unpinned - {"jupyterlab"}}'
    assert {k: pins[k] for k in floors if k in pins} == {k: v for k, v in floors.items() if k in pins}
    # and nothing pinned without a floor (torch's floor is in `requirements`; test_floors.sh uses the local torch)
    assert {k for k in pins if k != 'torch'} <= set(floors), f'pinned without a floor in settings.ini: {set(pins) - set(floors)}'
