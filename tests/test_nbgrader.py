"""Autograding with the real nbgrader, end to end: `lossnotes nbgrader DEST` writes the course folder, then only
`nbgrader generate_assignment`, `autograde` and `generate_feedback` run. On the fixture lesson (tests/fixtures/): the
instructor's solutions score full marks, the untouched release scores 0 with no error outside the autograder cells, a
half-done submission scores in between, a learner's answered copy from `lossnotes course` (no nbgrader metadata)
scores full marks, a notebook with none of the exercises is refused loudly, and without lossnotes in nbgrader's
environment generate_assignment fails naming what to install. On every lesson of nbs/ that checks its exercises by
id, two submissions (a half-answered release and a learner's copy answering the other half) see every autograder cell
pass once and say "not yet" once. Everywhere: no autograder cell's output is read as a score ("cannot be converted to
a float"), the feedback's failure lines are short and its figures have alt text."""
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PY, ROOT, without_module
from lossnotes.course.build import BEGIN, has_exercises, learner_cells, learner_notebook, lesson_notebooks, uses_check_api

pytestmark = pytest.mark.slow
NBGRADER = Path(PY).parent / 'nbgrader'
FIXTURES = ROOT / 'tests' / 'fixtures'
LESSONS = [p.stem for p in lesson_notebooks(ROOT / 'nbs') if has_exercises(p) and uses_check_api(p)]


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


def _course(tmp_path, nbs, lesson):
    "The nbgrader course folder written by `lossnotes nbgrader`, the lesson released; (env, course, source, release)."
    env, course = _env(tmp_path), tmp_path / 'grading'
    _run([PY, '-m', 'lossnotes.course.cli', 'nbgrader', course, '--from', nbs], tmp_path, env)
    r = _run([NBGRADER, 'generate_assignment', lesson], course, env)
    assert 'Exception while loading config' not in r.stderr, r.stderr[-3000:]
    return (env, course, *_released(course, lesson))


def _released(course, lesson):
    "(source, release) of a released lesson: every cell marked, the course's own stubs, locked cells not editable."
    source = json.loads((course / 'source' / lesson / f'{lesson}.ipynb').read_text())
    kinds = [(m['solution'], m['grade'], m['locked']) for m in map(_meta, source['cells'])]
    assert set(kinds) == {(True, False, False), (False, True, True), (False, False, True)}, kinds  # nothing unmarked
    release = json.loads((course / 'release' / lesson / f'{lesson}.ipynb').read_text())
    stubs = [''.join(c['source']) for c in release['cells'] if _meta(c).get('solution')]
    assert stubs and all('NotImplementedError' not in s and '...' in s for s in stubs), stubs  # the course's own stubs
    assert not any(BEGIN in ''.join(c['source']) for c in release['cells'])
    assert all(c['metadata'].get('editable') is False for c in release['cells'] if _meta(c).get('locked'))
    title = next(i for i, c in enumerate(release['cells']) if ''.join(c['source']).startswith('# '))
    assert 'graded_release()' in ''.join(release['cells'][title + 1]['source']), 'no value revealed in a graded copy'
    return source, release


def _answered_release(source, release, which):
    "The release with the solution cells at positions `which` (0, 1, ... in order) answered by the instructor's."
    solutions = {_meta(c)['grade_id']: c['source'] for c in source['cells'] if _meta(c).get('solution')}
    nb = json.loads(json.dumps(release))
    for k, c in enumerate(c for c in nb['cells'] if _meta(c).get('solution')):
        if k in which: c['source'] = solutions[_meta(c)['grade_id']]
    return nb


def _learner_copy(instructor, which):
    "What `lossnotes course` gives a learner (no nbgrader metadata), with the exercises at positions `which` answered."
    solved, stubs = learner_cells(instructor['cells'], solutions=True), learner_cells(instructor['cells'], solutions=False)
    assert len(solved) == len(stubs)
    answers = [i for i, c in enumerate(solved) if c['cell_type'] == 'code' and BEGIN in ''.join(c['source'])]
    nb = learner_notebook(instructor)
    nb['cells'] = [solved[i] if i in {answers[k] for k in which} else stubs[i] for i in range(len(solved))]
    assert not any('nbgrader' in c.get('metadata', {}) for c in nb['cells'])
    return nb


def _autograde(course, env, lesson, students):
    "Submit {student: notebook}, autograde and write feedback; {student: [score, max score]} from the gradebook."
    for student, nb in students.items(): _submit(course, student, lesson, nb)
    r = _run([NBGRADER, 'autograde', lesson], course, env, timeout=1800)
    assert 'cannot be converted to a float' not in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    if 'copy' in students:
        assert "copy's" in r.stderr and 'matched to the release by exercise id' in r.stderr, r.stderr[-3000:]  # said, not silent
    _run([NBGRADER, 'generate_feedback', lesson], course, env)
    return _scores(course, env, lesson, students)


def _scores(course, env, lesson, students):
    "{student: [score, max score]} of `lesson` from the course's gradebook."
    code = ("import json, sys\nfrom nbgrader.api import Gradebook\n"
            "with Gradebook('sqlite:///gradebook.db') as gb:\n"
            "    print(json.dumps({s: [gb.find_submission(sys.argv[1], s).score, gb.find_submission(sys.argv[1], s).max_score]"
            " for s in sys.argv[2:]}))")
    return json.loads(_run([PY, '-c', code, lesson, *students], course, env).stdout.strip().splitlines()[-1])


def _graded(course, student, lesson):
    "{autograder cell's grade_id: None if it passed, else (error name, message)}; and the errors outside those cells."
    nb = json.loads((course / 'autograded' / student / lesson / f'{lesson}.ipynb').read_text())
    errors = [(c, o) for c in nb['cells'] for o in c.get('outputs', []) if o['output_type'] == 'error']
    grades = {_meta(c)['grade_id']: None for c in nb['cells'] if _meta(c).get('grade')}
    grades.update({_meta(c)['grade_id']: (o['ename'], o['evalue']) for c, o in errors if _meta(c).get('grade')})
    return grades, [(_meta(c).get('grade_id'), o['ename'], o['evalue'][:200]) for c, o in errors if not _meta(c).get('grade')]


def _feedback_pages_agree(course, lesson, scores, not_yet):
    for student in scores:
        page = (course / 'feedback' / student / lesson / f'{lesson}.html').read_text()
        total = re.search(r'(\d+(?:\.\d+)?) / (\d+(?:\.\d+)?)', page)  # the first score on the page is the total
        assert total and [float(total[1]), float(total[2])] == scores[student], (student, total)
        assert ('data-status="not yet"' in page) == (student in not_yet), student  # the checkers' feedback is shown
        assert all(re.search(r'\salt=("[^"]+"|\'[^\']+\')', img) for img in re.findall(r'<img\b[^>]*>', page)), student  # either quote: an alt with " is written alt='...'


def _short_lines(failures):
    assert max(len(line) for e in failures for line in e.split('\n')) <= 100, failures  # a feedback page clips long lines


def test_nbgrader_grades_full_zero_partial(tmp_path):
    """The fixture lesson, graded four ways: the instructor's solutions score full marks, the untouched release 0 with no
    error outside the autograder cells, a half-done release in between, a learner's answered copy full marks; a
    notebook with none of the exercises is refused."""
    nbs, lesson = FIXTURES / 'nbs', '01_toy'
    env, course, source, release = _course(tmp_path, nbs, lesson)
    n = sum(1 for c in release['cells'] if _meta(c).get('solution'))
    instructor = json.loads((nbs / f'{lesson}.ipynb').read_text())
    students = {'solved': source, 'untouched': release, 'half': _answered_release(source, release, range(n // 2)),
                'copy': _learner_copy(instructor, range(n))}
    scores = _autograde(course, env, lesson, students)
    points = sum(_meta(c).get('points', 0) for c in source['cells'] if _meta(c).get('grade'))
    assert scores['solved'] == [points, points] and scores['copy'] == [points, points], scores
    assert scores['untouched'] == [0, points], scores
    assert 0 < scores['half'][0] < points, scores
    grades, outside = _graded(course, 'untouched', lesson)
    assert not outside and grades and all(g and g[0] == 'AssertionError' and 'not yet' in g[1] for g in grades.values()), grades
    _short_lines([g[1] for g in grades.values()])
    _feedback_pages_agree(course, lesson, scores, not_yet=('untouched', 'half'))

    # a notebook with no nbgrader metadata and none of the exercises is refused, loudly
    _submit(course, 'stranger', lesson, {'cells': [{'cell_type': 'markdown', 'metadata': {}, 'source': '# my notes'}],
                                         'metadata': source['metadata'], 'nbformat': 4, 'nbformat_minor': 5})
    r = _run([NBGRADER, 'autograde', lesson, '--student=stranger'], course, env, ok=False)
    assert 'refusing to grade it' in r.stderr, r.stderr[-3000:]


def _at_once(tmp, folders, env, command, timeout=1800):
    """`nbgrader COMMAND '*'` in each student's course folder, all at once, within `timeout` seconds in all;
    {student: (exit code, stdout, stderr)}. A failure or a timeout leaves none of them (nor their kernels) running."""
    logs = {s: (tmp / f'{s}-{command}.out', tmp / f'{s}-{command}.err') for s in folders}
    procs, deadline = {}, time.monotonic() + timeout
    try:
        for s, f in folders.items():
            with open(logs[s][0], 'w') as out, open(logs[s][1], 'w') as err:
                procs[s] = subprocess.Popen([str(NBGRADER), command, '*'], cwd=f, env=env, stdout=out, stderr=err,
                                            start_new_session=True)
        for proc in procs.values(): proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        for proc in procs.values():
            if proc.poll() is None: os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    return {s: (p.returncode, logs[s][0].read_text(), logs[s][1].read_text()) for s, p in procs.items()}


@pytest.fixture(scope='module')
def lessons_graded(tmp_path_factory):
    """Every lesson of nbs/ in one nbgrader course, released by one `generate_assignment '*'`; per lesson two
    submissions that between them answer every exercise once and leave it alone once: the release with the
    even-numbered answers filled in ('half') and a learner's copy from `lossnotes course`, matched by exercise id, with
    the odd-numbered ones ('copy'). Each student's submissions are autograded and given feedback in a copy of the
    course folder of their own, the two at once. Returns {lesson: (source, {student: (course, scores)})}."""
    tmp = tmp_path_factory.mktemp('nbgrader')
    env, course = _env(tmp), tmp / 'grading'
    _run([PY, '-m', 'lossnotes.course.cli', 'nbgrader', course, '--from', ROOT / 'nbs'], tmp, env)
    assert sorted(p.name for p in (course / 'source').iterdir()) == LESSONS
    r = _run([NBGRADER, 'generate_assignment', '*'], course, env)
    assert 'Exception while loading config' not in r.stderr, r.stderr[-3000:]
    sources, folders = {}, {}
    for student in ('half', 'copy'):
        folders[student] = tmp / student
        shutil.copytree(course, folders[student])
    for lesson in LESSONS:
        source, release = _released(course, lesson)
        n = sum(1 for c in release['cells'] if _meta(c).get('solution'))
        assert n >= 3, (lesson, n)
        instructor = json.loads((ROOT / 'nbs' / f'{lesson}.ipynb').read_text())
        _submit(folders['half'], 'half', lesson, _answered_release(source, release, range(0, n, 2)))
        _submit(folders['copy'], 'copy', lesson, _learner_copy(instructor, range(1, n, 2)))
        sources[lesson] = source
    graded = _at_once(tmp, folders, env, 'autograde')
    for student, (code, out, err) in graded.items():
        assert code == 0, (student, out[-2000:], err[-4000:])
        assert 'cannot be converted to a float' not in out + err, (out + err)[-3000:]
        if student == 'copy':  # said, not silent, and every exercise found in the learner's copy
            assert err.count('matched to the release by exercise id') == len(LESSONS) and 'not found' not in err, err[-3000:]
    for student, (code, out, err) in _at_once(tmp, folders, env, 'generate_feedback', timeout=900).items():
        assert code == 0, (student, out[-2000:], err[-4000:])
    code = ("import json, sys\nfrom nbgrader.api import Gradebook\n"
            "with Gradebook('sqlite:///gradebook.db') as gb:\n"
            "    print(json.dumps({a: [gb.find_submission(a, sys.argv[1]).score, gb.find_submission(a, sys.argv[1]).max_score]"
            " for a in sys.argv[2:]}))")
    scores = {s: json.loads(_run([PY, '-c', code, s, *LESSONS], f, env).stdout.strip().splitlines()[-1]) for s, f in folders.items()}
    return {lesson: (sources[lesson], {s: (folders[s], scores[s][lesson]) for s in folders}) for lesson in LESSONS}


@pytest.mark.xdist_group('nbgrader-lessons')
@pytest.mark.parametrize('lesson', LESSONS)
def test_nbgrader_grades_every_exercise_right_and_not_yet(lesson, lessons_graded):
    """Each lesson, graded in two executions that between them see every exercise answered once and left alone once:
    each autograder cell passes in exactly one of them and says "not yet" (an AssertionError, nothing else) in the
    other; no cell outside them errs; the two scores are partial and add up to full marks; the feedback pages show the
    scores and the checkers' feedback."""
    source, students = lessons_graded[lesson]
    points = sum(_meta(c).get('points', 0) for c in source['cells'] if _meta(c).get('grade'))
    (half, outside_half), (copy, outside_copy) = (_graded(students[s][0], s, lesson) for s in ('half', 'copy'))
    assert not outside_half and not outside_copy, (outside_half, outside_copy)
    assert set(half) == set(copy) == {_meta(c)['grade_id'] for c in source['cells'] if _meta(c).get('grade')}
    assert all((half[g] is None) != (copy[g] is None) for g in half), (half, copy)  # right in one, "not yet" in the other
    failed = [g for g in list(half.values()) + list(copy.values()) if g]
    assert all(ename == 'AssertionError' and 'not yet' in value for ename, value in failed), failed
    _short_lines([value for _, value in failed])
    scores = {s: students[s][1] for s in students}
    assert scores['half'][1] == scores['copy'][1] == points and scores['half'][0] + scores['copy'][0] == points, scores
    assert 0 < scores['half'][0] < points and 0 < scores['copy'][0] < points, scores
    for s in students: _feedback_pages_agree(students[s][0], lesson, {s: scores[s]}, not_yet=(s,))


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
