"""Autograding with the real nbgrader, end to end: `lossnotes nbgrader DEST` writes the course folder, then only
`nbgrader generate_assignment`, `autograde` and `generate_feedback` run. The instructor's solutions score full
marks, the untouched release scores 0 with no error outside the autograder cells, a half-done submission scores in
between, and each student's feedback page is written; a learner's copy from `lossnotes course` (no nbgrader
metadata) is graded on the release's cells, a notebook with none of the exercises is refused loudly, no autograder
cell's output is read as a score ("cannot be converted to a float"), the feedback's failure lines are short and its
figures have alt text. Without lossnotes in nbgrader's environment, generate_assignment fails naming what to install.
Runs on the fixture lesson (tests/fixtures/) and on every lesson in nbs/ that checks its exercises by id."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import PY, ROOT, without_module
from lossnotes.course.build import BEGIN, has_exercises, learner_cells, learner_notebook, lesson_notebooks, uses_check_api

pytestmark = pytest.mark.slow
NBGRADER = Path(PY).parent / 'nbgrader'
FIXTURES = ROOT / 'tests' / 'fixtures'
CASES = [(FIXTURES / 'nbs', '01_toy')] + [(ROOT / 'nbs', p.stem) for p in lesson_notebooks(ROOT / 'nbs')
                                           if has_exercises(p) and uses_check_api(p)]


def _env(tmp_path):
    path = os.pathsep.join([str(ROOT), str(FIXTURES)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p])
    return {**os.environ, 'PYTHONPATH': path, 'PATH': f"{NBGRADER.parent}{os.pathsep}{os.environ['PATH']}",
            'MPLBACKEND': 'Agg', 'JUPYTER_CONFIG_DIR': str(tmp_path / 'cfg'), 'JUPYTER_RUNTIME_DIR': str(tmp_path / 'rt')}


def _run(cmd, cwd, env, timeout=900, ok=True):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert (r.returncode == 0) == ok, f'{cmd}: {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}'
    return r


def _meta(cell): return cell['metadata'].get('nbgrader', {})


def _submit(course, student, lesson, nb):
    path = course / 'submitted' / student / lesson / f'{lesson}.ipynb'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))


@pytest.mark.parametrize('nbs,lesson', CASES, ids=[c[1] for c in CASES])
def test_nbgrader_grades_full_zero_partial(nbs, lesson, tmp_path):
    env, course = _env(tmp_path), tmp_path / 'grading'
    _run([PY, '-m', 'lossnotes.course.cli', 'nbgrader', course, '--from', nbs], tmp_path, env)
    source = json.loads((course / 'source' / lesson / f'{lesson}.ipynb').read_text())
    kinds = [(m['solution'], m['grade'], m['locked']) for m in map(_meta, source['cells'])]
    assert set(kinds) == {(True, False, False), (False, True, True), (False, False, True)}, kinds  # nothing unmarked

    r = _run([NBGRADER, 'generate_assignment', lesson], course, env)
    assert 'Exception while loading config' not in r.stderr, r.stderr[-3000:]
    release = json.loads((course / 'release' / lesson / f'{lesson}.ipynb').read_text())
    stubs = [''.join(c['source']) for c in release['cells'] if _meta(c).get('solution')]
    assert stubs and all('NotImplementedError' not in s and '...' in s for s in stubs), stubs  # the course's own stubs
    assert not any(BEGIN in ''.join(c['source']) for c in release['cells'])
    assert all(c['metadata'].get('editable') is False for c in release['cells'] if _meta(c).get('locked'))

    solutions = {_meta(c)['grade_id']: c['source'] for c in source['cells'] if _meta(c).get('solution')}
    half = json.loads(json.dumps(release))
    answered = [c for c in half['cells'] if _meta(c).get('solution')][:len(solutions) // 2]
    for c in answered: c['source'] = solutions[_meta(c)['grade_id']]
    title = next(i for i, c in enumerate(release['cells']) if ''.join(c['source']).startswith('# '))
    assert 'graded_release()' in ''.join(release['cells'][title + 1]['source']), 'no value revealed in a graded copy'
    instructor = json.loads((nbs / f'{lesson}.ipynb').read_text())
    copy = learner_notebook(instructor)  # what `lossnotes course` gives a learner, answered: no nbgrader metadata
    copy['cells'] = learner_cells(instructor['cells'], solutions=True)
    assert not any('nbgrader' in c.get('metadata', {}) for c in copy['cells'])
    students = (('solved', source), ('untouched', release), ('half', half), ('copy', copy))
    for student, nb in students: _submit(course, student, lesson, nb)
    r = _run([NBGRADER, 'autograde', lesson], course, env, timeout=1800)
    assert 'cannot be converted to a float' not in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    assert "copy's" in r.stderr and 'matched to the release by exercise id' in r.stderr, r.stderr[-3000:]  # said, not silent
    _run([NBGRADER, 'generate_feedback', lesson], course, env)

    code = ("import json, sys\nfrom nbgrader.api import Gradebook\n"
            "with Gradebook('sqlite:///gradebook.db') as gb:\n"
            "    print(json.dumps({s: [gb.find_submission(sys.argv[1], s).score, gb.find_submission(sys.argv[1], s).max_score]"
            " for s in ('solved', 'untouched', 'half', 'copy')}))")
    scores = json.loads(_run([PY, '-c', code, lesson], course, env).stdout.strip().splitlines()[-1])
    points = sum(_meta(c).get('points', 0) for c in source['cells'] if _meta(c).get('grade'))
    assert scores['solved'] == [points, points] and scores['copy'] == [points, points], scores
    assert scores['untouched'] == [0, points], scores
    assert 0 < scores['half'][0] < points, scores

    untouched = json.loads((course / 'autograded' / 'untouched' / lesson / f'{lesson}.ipynb').read_text())
    errors = [(_meta(c)['grade_id'], _meta(c).get('grade'), o['ename'], o['evalue'][:200])
              for c in untouched['cells'] for o in c.get('outputs', []) if o['output_type'] == 'error']
    assert errors and all(grade and ename == 'AssertionError' and 'not yet' in value for _, grade, ename, value in errors), errors
    failures = [o['evalue'] for c in untouched['cells'] for o in c.get('outputs', []) if o['output_type'] == 'error']
    assert max(len(line) for e in failures for line in e.split('\n')) <= 100, failures  # a feedback page clips long lines
    for student in ('solved', 'untouched', 'half', 'copy'):
        page = (course / 'feedback' / student / lesson / f'{lesson}.html').read_text()
        total = re.search(r'(\d+(?:\.\d+)?) / (\d+(?:\.\d+)?)', page)  # the first score on the page is the total
        assert total and [float(total[1]), float(total[2])] == scores[student], (student, total)
        assert ('data-status="not yet"' in page) == (student in ('untouched', 'half')), student  # the checkers' feedback is shown
        assert all(re.search(r'\salt=("[^"]+"|\'[^\']+\')', img) for img in re.findall(r'<img\b[^>]*>', page)), student  # either quote: an alt with " is written alt='...'

    # a notebook with no nbgrader metadata and none of the exercises is refused, loudly
    _submit(course, 'stranger', lesson, {'cells': [{'cell_type': 'markdown', 'metadata': {}, 'source': '# my notes'}],
                                         'metadata': source['metadata'], 'nbformat': 4, 'nbformat_minor': 5})
    r = _run([NBGRADER, 'autograde', lesson, '--student=stranger'], course, env, ok=False)
    assert 'refusing to grade it' in r.stderr, r.stderr[-3000:]


BLOCK_LOSSNOTES = without_module('lossnotes')


def test_generate_assignment_fails_without_lossnotes(tmp_path):
    "nbgrader in an environment without lossnotes: generate_assignment stops with the command to install it, writes no release."
    env, course = _env(tmp_path), tmp_path / 'grading'
    _run([PY, '-m', 'lossnotes.course.cli', 'nbgrader', course, '--from', FIXTURES / 'nbs'], tmp_path, env)
    (tmp_path / 'site').mkdir()
    (tmp_path / 'site' / 'sitecustomize.py').write_text(BLOCK_LOSSNOTES)  # as if lossnotes were not installed
    env = {**env, 'PYTHONPATH': os.pathsep.join([str(tmp_path / 'site'), env['PYTHONPATH']])}
    r = _run([NBGRADER, 'generate_assignment', '01_toy'], course, env, ok=False)
    assert "No module named 'lossnotes'" in r.stderr and "pip install 'lossnotes[course]'" in r.stderr, r.stderr[-3000:]
    assert not (course / 'release').exists()
