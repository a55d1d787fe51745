"""The learner's course: a home page of its own and the lessons only, no test cells or nbdev directives, no answer in
sight (checker calls take only the exercise id and the learner's answer), every checker's feedback displayed; the
instructor's notebooks score every exercise correct and the learner's say "not yet" without failing; `lossnotes
course` copies what is missing, never overwrites, resets one lesson with a dated backup, and opens JupyterLab from
a wheel's files alone. Lesson tests cover the fixture lesson (tests/fixtures/) and every lesson of nbs/ that checks
its exercises by id."""
import ast
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import types
import urllib.request
import zipfile
from pathlib import Path

import pytest

import browser_driver as bd
from conftest import PY, ROOT, load_script, without_module
from lossnotes.course.build import (BEGIN, END, HOME, build_course, directives, has_exercises, learner_notebook,
                                    lesson_notebooks, title_and_subtitle, uses_check_api)
from lossnotes.course.exercises import _digest, exercise_spec

FIXTURES = ROOT / 'tests' / 'fixtures'
sys.path.insert(0, str(FIXTURES))  # the fixture lesson's module, fixturecourse.toy
LESSONS = lesson_notebooks(ROOT / 'nbs')
BY_ID = [FIXTURES / 'nbs' / '01_toy.ipynb'] + [p for p in LESSONS if uses_check_api(p)]  # lessons checked by exercise id
OLD_API = re.compile(r'from lossnotes\.course\.exercises import [^\n]*\bcheck_(number|prediction|choice|function)\b')
CURRENT = BY_ID + [p for p in LESSONS if p not in BY_ID and not OLD_API.search(p.read_text())]  # not on the old checkers
ids = lambda p: p.stem
OLD_CHECKERS = ('check_number', 'check_prediction', 'check_choice', 'check_function')


def _nb(path): return json.loads(Path(path).read_text(encoding='utf-8'))
def _src(cell): return ''.join(cell['source'])
def _code(nb): return [_src(c) for c in nb['cells'] if c['cell_type'] == 'code']
def _calls(tree, names): return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in names]


@pytest.fixture(scope='module')
def course(tmp_path_factory):
    "The learner's course built from nbs/ (what course.sh and make_course.py write)."
    dest = tmp_path_factory.mktemp('course')
    build_course(ROOT / 'nbs', dest)
    return dest


def test_packaged_course_is_fresh(capsys):
    assert load_script('make_course').main(['--check']) == 0, capsys.readouterr().err


def test_course_is_the_home_page_and_the_lessons(course):
    names = sorted(p.name for p in course.glob('*.ipynb'))
    assert names == sorted([HOME] + [p.name for p in LESSONS])
    assert {n[:3] for n in names} >= {'00_', '01_', '01a', '02_', '03_', '04_', '05_'}, names
    assert not list(course.glob('index.ipynb')), "the repository's README page is not the learner's home page"


def test_home_page_is_the_learners(course):
    home = _nb(course / HOME)
    text = '\n'.join(_src(c) for c in home['cells'])
    assert title_and_subtitle(home)[0] == 'The lossnotes course'
    links = re.findall(r'\]\(([\w.-]+\.ipynb)\)', text)
    assert links == [p.name for p in LESSONS]  # every lesson, in order
    for p in LESSONS: assert title_and_subtitle(_nb(p))[0] in text
    for needed in ('check(', 'Not yet', 'course_progress()', '--reset', 'help(', '/issues'): assert needed in text, needed
    for dev in ('pytest', 'scripts/', 'nbdev', 'Contribute', BEGIN): assert dev not in text, dev
    assert not [c for c in home['cells'] if c['cell_type'] == 'code']


@pytest.mark.parametrize('nb', LESSONS + BY_ID[:1], ids=ids)
def test_learner_notebook_has_no_test_cells_directives_or_answers(nb):
    learner = learner_notebook(_nb(nb))
    assert learner['metadata']['lossnotes'] == {'version': 'learner'} and 'widgets' not in learner['metadata']
    hidden = [s for s in _code(_nb(nb)) if 'hide' in directives(s)]
    for src in _code(learner):
        assert not directives(src), src[:80]
        assert src not in hidden and src.strip()
        lines = [l.strip() for l in src.split('\n')]
        assert BEGIN not in lines and END not in lines
        assert not re.search(r'^\s*EXERCISES\b|\b_reference\w*\s*[=(]|^\s*def _reference', src, flags=re.M), src[:200]
        assert not re.search(r'^\s*(from|import) nbdev', src, flags=re.M), 'the course does not install nbdev'
    assert all(not c.get('outputs') and c.get('execution_count') is None for c in learner['cells'] if c['cell_type'] == 'code')


def _bound(tree) -> set[str]:
    "Names a cell binds at its top level: imports, assignments, definitions."
    out = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)): out |= {(a.asname or a.name).split('.')[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): out.add(node.name)
        else: out |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return out


def _top_level_loads(tree) -> set[str]:
    "Names a cell reads outside any function, lambda, class or comprehension (whose own names may shadow them)."
    out, todo = set(), list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp,
                             ast.DictComp, ast.GeneratorExp)):
            todo += getattr(node, 'decorator_list', [])
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load): out.add(node.id)
        todo += list(ast.iter_child_nodes(node))
    return out


@pytest.mark.parametrize('nb', CURRENT, ids=ids)
def test_hidden_cells_define_nothing_the_learner_runs(nb):
    "The learner version drops #| hide cells, so a visible cell may not use a name that only a hidden cell defines."
    hidden, visible = set(), set()
    used = set()
    for src in _code(_nb(nb)):
        tree = ast.parse('\n'.join(l for l in src.split('\n') if not l.lstrip().startswith('%')))
        if 'hide' in directives(src): hidden |= _bound(tree)
        else:
            visible |= _bound(tree)
            used |= _top_level_loads(tree)
    assert not (hidden - visible) & used, f'defined only in #| hide cells, used in visible ones: {sorted((hidden - visible) & used)}'


def _binding(cells_before: list[str], name: str):
    "The last top-level statement that binds `name` in these cells, and its cell."
    found = None, ''
    for src in cells_before:
        for node in ast.parse(src).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name: found = node, src
            elif isinstance(node, ast.Assign) and any(name in {n.id for n in ast.walk(t) if isinstance(n, ast.Name)} for t in node.targets): found = node, src
    return found


def _is_stub(node) -> bool:
    "An assignment of `...` (or of a tuple of them), or a function whose body is a docstring, `...`, `pass` or `return ...`."
    if isinstance(node, ast.Assign):
        return all(isinstance(v, ast.Constant) and v.value is ... for v in
                   (node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]))
    def stubby(s):
        if isinstance(s, ast.Pass): return True
        if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and (s.value.value is ... or isinstance(s.value.value, str)): return True
        if isinstance(s, ast.Return) and (s.value is None or isinstance(s.value, ast.Constant) and s.value.value is ...): return True
        if isinstance(s, ast.Assign): return _is_stub(s)
        return False
    return all(stubby(s) for s in node.body)


@pytest.mark.parametrize('nb', BY_ID, ids=ids)
def test_answers_are_out_of_sight(nb):
    "Checker calls take only the exercise id and the learner's answer, a name bound by a stub; no option or reference in sight."
    code = _code(learner_notebook(_nb(nb)))
    n_checks = 0
    for i, src in enumerate(code):
        tree = ast.parse(src)
        old = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == 'lossnotes.course.exercises'
               for a in n.names if a.name in OLD_CHECKERS]
        assert not old, f'old checkers (expected values in the cell): {old}'
        for call in _calls(tree, {'check', 'grade'}):
            n_checks += 1
            assert call.func.id == 'check' and len(call.args) == 2 and not call.keywords, ast.unparse(call)
            ex, answer = call.args
            assert isinstance(ex, ast.Constant) and isinstance(ex.value, str), ast.unparse(call)
            spec = exercise_spec(ex.value)
            # the answer is the learner's name (or an expression of it, such as `value_and_grad(my_loss)`), no literal
            assert not [n for n in ast.walk(answer) if isinstance(n, ast.Constant)], f'a literal in the answer: {ast.unparse(call)}'
            names = [n.id for n in ast.walk(answer) if isinstance(n, ast.Name)]
            stubs = [b for b in (_binding(code[:i + 1], n) for n in names) if b[0] is not None and _is_stub(b[0])]
            assert stubs, f'the answer {ast.unparse(answer)} is not set by a stub in the learner version: {src[:300]}'
            cells = '\n'.join([src] + [bound_in for _, bound_in in stubs])
            if spec['kind'] == 'choice' and isinstance(spec['options'], dict):  # the plain format of earlier lessons
                assert spec['answer'].lower() not in cells.lower(), f'the right option is in the cell: {cells[:300]}'
            if spec['kind'] == 'function' and 'reference' in spec:
                assert not re.search(rf"\b{spec['reference'].__name__}\b", cells), f'the reference implementation is in the cell: {cells[:300]}'
    assert n_checks >= 3


@pytest.mark.parametrize('nb', BY_ID, ids=ids)
def test_every_feedback_is_displayed(nb):
    "A check is its cell's last expression (one per cell), or its result is passed to display()."
    for src in _code(learner_notebook(_nb(nb))):
        tree = ast.parse(src)
        checks = _calls(tree, {'check'})
        if not checks: continue
        last = tree.body[-1]
        shown = {id(last.value)} if isinstance(last, ast.Expr) and not src.rstrip().endswith(';') else set()
        shown |= {id(a) for d in _calls(tree, {'display'}) for a in d.args}
        assert all(id(c) in shown for c in checks), f'a check whose feedback is not displayed: {src[:300]}'


def _module_of(nb) -> str:
    exp = re.search(r'default_exp\s+(\S+)', _code(_nb(nb))[0]).group(1)
    return f'lossnotes.{exp}' if exp.startswith('lessons.') else exp


@pytest.mark.parametrize('nb', BY_ID, ids=ids)
def test_lesson_exercises_match_its_module(nb):
    "Three to five exercises, each an exercise of this lesson's module, every one of its EXERCISES checked; progress last."
    import importlib
    code = _code(_nb(nb))
    checked = [c.args[0].value for s in code for c in _calls(ast.parse(s), {'check'})]
    assert 3 <= len(checked) <= 5 and len(set(checked)) == len(checked), checked
    module = importlib.import_module(_module_of(nb))
    lesson = checked[0].split('/')[0]
    assert all(c.split('/')[0] == lesson for c in checked) and importlib.import_module(
        lesson if '.' in lesson else f'lossnotes.lessons.{lesson}') is module, checked
    assert sorted(c.split('/')[1] for c in checked) == sorted(module.EXERCISES), 'every exercise of EXERCISES is checked once'
    for name, spec in module.EXERCISES.items():
        if spec['kind'] == 'choice' and isinstance(spec['options'], dict):  # the plain format of earlier lessons
            feedback = list(spec['options'].values())
            assert spec['answer'] in spec['options'] and all(feedback) and len(set(feedback)) == len(feedback), name
        elif spec['kind'] == 'choice':  # sealed: one right option, one distinct feedback per option
            assert len(spec['feedback']) == len(spec['options']) == len(set(spec['feedback'])) >= 2, name
            assert sum(_digest(spec['salt'], 'answer', d) == spec['answer'] for d in spec['options']) == 1, name
    assert 'course_progress()' in _code(learner_notebook(_nb(nb)))[-1], 'the last cell shows course_progress()'


INSTRUCTOR_RUN = """
import json, sys
from pathlib import Path
from nbdev.config import get_config
from nbdev.test import test_nb
from lossnotes.course import exercises
ok, _ = test_nb(Path(sys.argv[1]), skip_flags=get_config().tst_flags.split())  # what nbdev_test runs, in this process
print(json.dumps({'ok': ok, 'statuses': exercises.summary()}))
"""


@pytest.mark.slow
@pytest.mark.parametrize('nb', BY_ID, ids=ids)
def test_instructor_version_runs_and_gets_every_exercise_right(nb):
    """The instructor's notebook runs under nbdev's own `test_nb`, as `nbdev_test` runs it (scripts/test.sh leaves the
    lessons to this test, so each runs once) and every exercise is checked correct."""
    env = {**os.environ, 'MPLBACKEND': 'Agg',
           'PYTHONPATH': os.pathsep.join([str(ROOT), str(FIXTURES), os.environ.get('PYTHONPATH', '')])}
    r = subprocess.run([PY, '-c', INSTRUCTOR_RUN, str(nb)], cwd=nb.parent, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result['ok'], r.stderr[-3000:]
    assert len(result['statuses']) >= 3 and set(result['statuses'].values()) == {'correct'}, result['statuses']


LEARNER_RUN = """
import json, sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': sys.argv[2]}}).execute()
out = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs if o.get('output_type') == 'error']
print(json.dumps({'errors': [f"{o['ename']}: {o['evalue']}" for o in out],
                  'status': [t for c in nb.cells if c.cell_type == 'code' for o in c.outputs
                             for t in [o.get('data', {}).get('text/html', '')] if 'lossnotes-feedback' in t]}))
"""


@pytest.mark.slow
@pytest.mark.parametrize('nb', CURRENT, ids=ids)
def test_learner_version_runs_and_says_not_yet(nb, course, tmp_path, course_env):
    """The learner's copy as `lossnotes course` writes it runs top to bottom in a fresh kernel, every checker says 'not
    yet' and nothing errs: each lesson in the learner's environment .venv-course (the course extra only); the fixture
    lesson, which is not part of the course, in this one."""
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'MPLBACKEND', 'VIRTUAL_ENV')}
    env.update(JUPYTER_RUNTIME_DIR=str(tmp_path / 'rt'), JUPYTER_CONFIG_DIR=str(tmp_path / 'cfg'), JUPYTER_DATA_DIR=str(tmp_path / 'data'))
    if nb.parent == ROOT / 'nbs': py, folder = course_env / 'bin' / 'python', course
    else:  # the fixture lesson, as `lossnotes course` would write it
        py, folder = Path(PY), tmp_path / 'course'
        folder.mkdir()
        (folder / nb.name).write_text(json.dumps(learner_notebook(_nb(nb))))
        env['PYTHONPATH'] = os.pathsep.join([str(ROOT), str(FIXTURES)])
    r = subprocess.run([str(py), '-c', LEARNER_RUN, str(folder / nb.name), str(folder)],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert not result['errors'], result['errors']
    assert all('data-status="not yet"' in s for s in result['status']), result['status']
    if has_exercises(nb): assert len(result['status']) >= 3, result['status']


def _cli(*args):
    "The `lossnotes` command's main() with these arguments, in this process: (returncode, stdout, stderr)."
    from lossnotes.course.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: code = main([str(a) for a in args])
        except SystemExit as e: code = e.code
    return types.SimpleNamespace(returncode=code or 0, stdout=out.getvalue(), stderr=err.getvalue())


def test_cli_copies_what_is_missing_and_resets_one_lesson(tmp_path, course):
    dest = tmp_path / 'my-course'
    r = _cli('course', dest, '--from', ROOT / 'nbs')
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in course.glob('*.ipynb'))
    lesson = dest / LESSONS[-1].name
    lesson.write_text('my edits'); (dest / HOME).unlink()
    r = _cli('course', dest, '--from', ROOT / 'nbs')
    assert r.returncode == 0 and 'Copied 1 notebook' in r.stdout, r.stdout + r.stderr
    assert lesson.read_text() == 'my edits'
    # built from a clone's nbs/, the home page gives the clone's reset command; the packaged course, lossnotes's
    home = '\n'.join(_src(c) for c in _nb(dest / HOME)['cells'])
    assert f'`bash scripts/course.sh --folder {dest.resolve()} --reset 01`' in home, home
    assert '`lossnotes course FOLDER --reset 01`' in '\n'.join(_src(c) for c in _nb(course / HOME)['cells'])
    number = LESSONS[-1].name.split('_')[0]
    r = _cli('course', dest, '--from', ROOT / 'nbs', '--reset', number)
    assert r.returncode == 0, r.stderr
    backups = list((dest / 'backups').iterdir())
    assert [b.read_text() for b in backups] == ['my edits'] and re.fullmatch(rf'{LESSONS[-1].stem}-\d{{4}}-\d\d-\d\d-\d{{6}}\.ipynb', backups[0].name)
    assert lesson.read_text() == (course / lesson.name).read_text()
    r = _cli('course', dest, '--from', ROOT / 'nbs', '--reset', '99')
    assert r.returncode == 1 and "lesson must be one of" in r.stderr


def _solution_strings(nb, exercise: str) -> list[str]:
    "The string constants of three words or more that the instructor's solution gives for `exercise`."
    code = _code(_nb(nb))
    i = next(k for k, src in enumerate(code) for c in _calls(ast.parse(src), {'check'}) if c.args[0].value == exercise)
    out = []
    for src in code[max(i - 1, 0):i + 1]:
        lines = src.split('\n')
        for a, b in [(j, lines.index(END, j)) for j, l in enumerate(lines) if l.strip() == BEGIN] if BEGIN in lines else []:
            region = '\n'.join(lines[a + 1:b])
            out += [n.value for n in ast.walk(ast.parse(region)) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                    and len(n.value.split()) >= 3]  # an option's text: a letter, or a word like 'steep', cannot be grepped
    return out


def _secrets() -> dict[str, tuple[list[str], list[str]]]:
    "Per exercise id: (strings no code may hold: the right option's text, the value's digits; strings nothing may hold: feedback)."
    from lossnotes.course.exercises import _expected_value, _unseal
    out = {}
    for nb in BY_ID:
        for ex in [c.args[0].value for s in _code(_nb(nb)) for c in _calls(ast.parse(s), {'check'})]:
            spec, code, anywhere = exercise_spec(ex), [], []
            if spec['kind'] == 'choice' and isinstance(spec['options'], dict):  # the plain format of earlier lessons
                code.append(spec['answer']); anywhere += [f for f in spec['options'].values() if len(f) > 20]
            elif spec['kind'] == 'choice':
                code += _solution_strings(nb, ex)
                anywhere += [_unseal(f, f"{spec['salt']}:{d}") for f, d in zip(spec['feedback'], spec['options'])]
            elif spec['kind'] in ('number', 'prediction'):
                v = _expected_value(spec)
                forms = {repr(v), f'{v:.6g}', f'{v:.5g}', f'{v:.4g}'}
                code += [f for f in forms if len(re.sub(r'\D', '', f.split('e')[0]).strip('0')) >= 4]  # 4 significant digits or more
                code += [rf'answer\s*=\s*{re.escape(f)}\b' for f in forms]  # a short value, as a spec would hold it
            elif 'reference' in spec and spec['reference'].__name__.startswith('_reference'):
                code.append(f"def {spec['reference'].__name__}")  # the answer, implemented in the lesson's module
            else: continue  # a function checked against PyTorch, the library, or sealed outputs: nothing in plain text
            out[ex] = (code, anywhere)
    return out


def _texts(files: dict[str, str]) -> tuple[str, str]:
    "(the code of these files: .py whole, notebooks' code cells; all their text) from {name: text}."
    code, everything = [], []
    for name, text in files.items():
        everything.append(text)
        if name.endswith('.ipynb'): code += [_src(c) for c in json.loads(text)['cells'] if c['cell_type'] == 'code']
        else: code.append(text)
    return '\n'.join(code), '\n'.join(everything)


def _leaks(code: str, everything: str) -> list[str]:
    found = []
    for ex, (in_code, anywhere) in _secrets().items():
        found += [f'{ex}: {s!r} in code' for s in in_code if (re.search(s, code) if s.startswith('answer') else s in code)]
        found += [f'{ex}: feedback {s[:40]!r}...' for s in anywhere if ' '.join(s.split()) in ' '.join(everything.split())]
    return found


@pytest.mark.slow
@pytest.mark.xdist_group('wheel')  # one worker builds the wheel once
def test_no_answer_in_the_wheel_or_the_course_folder(wheel, course):
    """Every right option, every value (4 digits or more; a short one as `answer=`), every option's feedback and every
    reference implementation: not in the wheel's files nor in the learner's course folder."""
    with zipfile.ZipFile(wheel) as z:
        files = {n: z.read(n).decode('utf-8', 'replace') for n in z.namelist() if not n.endswith(('.pyc', '.png'))}
    assert any(n.endswith('lessons/ema.py') for n in files) and any(n.endswith('.ipynb') for n in files)
    assert _secrets() and all(code or anywhere for code, anywhere in _secrets().values())
    leaks = _leaks(*_texts(files))
    assert not leaks, leaks
    leaks = _leaks(*_texts({p.name: p.read_text() for p in course.glob('*.ipynb')}))
    assert not leaks, leaks
    # the test finds an answer where one is: the instructor's notebooks hold them
    assert _leaks(*_texts({p.name: p.read_text() for p in BY_ID[1:]}))


@pytest.mark.slow
@pytest.mark.xdist_group('wheel')  # one worker builds the wheel once
def test_course_open_and_reset_from_the_wheel_alone(tmp_path, wheel):
    "The wheel's files alone (no repository on the path): `lossnotes course DEST --open` serves DEST, `--reset` restores."
    site = tmp_path / 'site'
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / 'lossnotes' / 'notebooks' / HOME).exists()
    entry = f"import sys; sys.path.insert(0, {str(site)!r}); from lossnotes.course.cli import main; sys.exit(main())"
    run = lambda *a: subprocess.run([PY, '-I', '-c', entry, *map(str, a)], cwd=tmp_path, capture_output=True, text=True)
    dest = tmp_path / 'home-course'
    r = run('course', dest)
    assert r.returncode == 0, r.stderr
    lesson = dest / LESSONS[0].name
    lesson.write_text('mine')
    r = run('course', dest, '--reset', LESSONS[0].name.split('_')[0])
    assert r.returncode == 0 and lesson.read_text() != 'mine' and [p.read_text() for p in (dest / 'backups').iterdir()] == ['mine'], r.stderr
    port, token = bd.free_port(), 'lossnotes-wheel-test'
    cmd = [PY, '-I', '-c', entry, 'course', str(dest), '--open', '--no-browser', f'--port={port}', f'--IdentityProvider.token={token}']
    env = {'JUPYTER_RUNTIME_DIR': str(tmp_path / 'rt'), 'JUPYTER_CONFIG_DIR': str(tmp_path / 'cfg'), 'PATH': '/usr/bin:/bin'}
    with bd.server(cmd, port, tmp_path, env=env, ready_path=f'/api/status?token={token}', timeout=120):
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/api/contents?token={token}', timeout=10) as r:
            names = {c['name'] for c in json.loads(r.read())['content']}
        assert HOME in names and lesson.name in names and 'backups' in names
    log = next(tmp_path.glob('server-*.log')).read_text()
    assert f'http://127.0.0.1:{port}/lab/tree/{HOME}?token=' in log, log[-2000:]


NO_JUPYTERLAB = without_module('jupyterlab')


def test_open_without_jupyterlab_says_what_to_install(tmp_path):
    "`lossnotes course DEST --open` with `[viz]` only (no JupyterLab): the pip command, not a traceback."
    (tmp_path / 'site').mkdir()
    (tmp_path / 'site' / 'sitecustomize.py').write_text(NO_JUPYTERLAB)
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(tmp_path / 'site'), str(ROOT)])}
    r = subprocess.run([PY, '-m', 'lossnotes.course.cli', 'course', str(tmp_path / 'c'), '--open'], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 1 and 'pip install "lossnotes[course]"' in r.stderr and 'Traceback' not in r.stderr, r.stderr
