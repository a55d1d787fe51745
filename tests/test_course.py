"""The learner's course: packaged learner notebooks are fresh, run top to bottom with every exercise 'not yet',
and `lossnotes course DEST` copies them without ever overwriting a learner's file."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import PY, ROOT
from lossnotes.course.build import BEGIN, END, course_notebooks, has_exercises, learner_notebook

LESSONS = [p for p in course_notebooks(ROOT / 'nbs') if has_exercises(p)]
CLI = str(Path(PY).parent / 'lossnotes')


def _code(nb_path):
    return [''.join(c['source']) for c in json.loads(Path(nb_path).read_text())['cells'] if c['cell_type'] == 'code']


def test_packaged_course_is_fresh():
    r = subprocess.run([PY, str(ROOT / 'scripts' / 'make_course.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_every_topic_is_a_lesson():
    names = {p.name[:2] for p in LESSONS}
    assert {'01', '02', '03', '04', '05'} <= names, sorted(p.name for p in LESSONS)


@pytest.mark.parametrize('nb', LESSONS, ids=lambda p: p.stem)
def test_lesson_has_the_three_kinds_of_exercise(nb):
    "A predict-then-check, a write-a-function, an explanation checked by choice, and the closing progress cell."
    code = '\n'.join(_code(nb))
    assert code.count(BEGIN) == code.count(END) >= 3
    for checker in ('check_prediction(', 'check_function(', 'check_choice('):
        assert checker in code, f'{nb.name} has no {checker}...)'
    assert 'course_progress()' in _code(nb)[-1], 'the last code cell shows course_progress()'


RUN_LEARNER = """
import json, sys
from execnb.nbio import dict2nb
from execnb.shell import CaptureShell
from lossnotes.course import exercises
from lossnotes.course.build import learner_notebook
nb = dict2nb(learner_notebook(json.loads(open(sys.argv[1]).read())))
CaptureShell().run_all(nb, exc_stop=True)
print(json.dumps(exercises.summary()))
"""


@pytest.mark.slow
@pytest.mark.parametrize('nb', LESSONS, ids=lambda p: p.stem)
def test_learner_version_runs_and_says_not_yet(nb):
    "The learner version runs top to bottom (in a fresh process); every checker answers 'not yet', none crashes."
    env = {**os.environ, 'IN_TEST': '1', 'LOSSNOTES_LEARNER': '1', 'MPLBACKEND': 'Agg'}
    r = subprocess.run([PY, '-c', RUN_LEARNER, str(nb)], cwd=nb.parent, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    statuses = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(statuses) >= 3, statuses
    assert set(statuses.values()) == {'not yet'}, statuses


@pytest.mark.slow
def test_cli_copies_and_never_overwrites(tmp_path):
    dest = tmp_path / 'my-course'
    r = subprocess.run([CLI, 'course', str(dest)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in dest.iterdir())
    assert names == sorted(p.name for p in (ROOT / 'lossnotes' / 'notebooks').glob('*.ipynb'))
    assert 'jupyter lab' in r.stdout
    lesson = dest / LESSONS[0].name
    lesson.write_text('my edits')
    r = subprocess.run([CLI, 'course', str(dest)], capture_output=True, text=True)
    assert r.returncode == 1 and 'would be overwritten' in r.stderr and LESSONS[0].name in r.stderr
    assert lesson.read_text() == 'my edits'
    r = subprocess.run([CLI, 'course', str(dest), '--alongside'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert lesson.read_text() == 'my edits'
    assert (dest / LESSONS[0].name.replace('.ipynb', '.new.ipynb')).exists()


def test_packaged_notebooks_hold_no_solutions():
    for p in (ROOT / 'lossnotes' / 'notebooks').glob('*.ipynb'):
        nb = json.loads(p.read_text())
        assert nb['metadata']['lossnotes'] == {'version': 'learner'}
        for c in nb['cells']:
            if c['cell_type'] == 'code':
                lines = [l.strip() for l in ''.join(c['source']).split('\n')]
                assert BEGIN not in lines and END not in lines and not c['outputs']
