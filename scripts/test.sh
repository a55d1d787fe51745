#!/usr/bin/env bash
# Run every test: the library is in sync with the notebooks, the notebooks are clean, every notebook runs,
# and pytest (unit, property-based, wheel, benchmark smoke, nbgrader and browser tests). Exits non-zero on any failure.
# pytest runs each lesson notebook: the instructor's under nbdev's own test_nb (every exercise right), the learner's
# copy in .venv-course (every checker "not yet"), and twice in nbgrader (each autograder cell right once, "not yet" once).
start=$SECONDS; steps=()
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fresh=false; [ -x .venv/bin/python ] || fresh=true  # for the report: built from nothing?
mark() { steps+=("\"$1\": $((SECONDS - start))"); }
mkdir -p artifacts  # the background build's log; the benchmark report reads the step timings written at the end
stop_build() {  # an EXIT trap runs under set -e too: it must not fail, or a green run exits 1
  if [ -n "${course_pid:-}" ] && kill -0 "$course_pid" 2>/dev/null; then kill -- "-$course_pid" 2>/dev/null || true; fi
  if [ -n "${tmp:-}" ]; then rm -rf "$tmp"; fi
}
trap stop_build EXIT
if command -v flock >/dev/null 2>&1 && command -v setsid >/dev/null 2>&1; then
  # The learner's environment .venv-course, which pytest's course_env fixture needs, is built (a minute or two of pip
  # the first time, nothing once current) while .venv is built and the notebooks are checked and run; it needs nothing
  # of .venv, and the fixture waits on the same lock. In a process group of its own (stopped with this script) and for
  # at most 30 minutes; its log: artifacts/.
  setsid bash -c 'exec 9>.venv-course.lock; flock 9; exec timeout 1800 bash scripts/course.sh --install-only --no-compile' \
    > artifacts/venv-course.log 2>&1 &
  course_pid=$!
fi
source scripts/_env.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one torch thread per process: tests, notebooks and kernels run side by side
mark environment
tmp=$(mktemp -d)
# A lesson's costliest demo (lessons.data.demo_cache), run in the instructor's, the learner's and nbgrader's two
# executions of its notebook, is computed by the first of them and loaded by the others (a caller that starts while it
# is computed waits for it): one folder for this run
export LOSSNOTES_DEMO_CACHE="$tmp/demo-cache"
cp -r settings.ini setup.py nbs lossnotes "$tmp"/

echo "== 1/4 nbdev_export leaves lossnotes/ unchanged"
(cd "$tmp" && nbdev_export)
if ! diff -r -x __pycache__ -x notebooks lossnotes "$tmp/lossnotes"; then
  echo "FAIL: lossnotes/ is out of sync with nbs/. Run: .venv/bin/nbdev_export" >&2; exit 1
fi

mark export
echo "== 2/4 notebooks are clean"
(cd "$tmp" && nbdev_clean)
if ! diff -r -x .ipynb_checkpoints nbs "$tmp/nbs" >/dev/null; then
  diff -r -x .ipynb_checkpoints nbs "$tmp/nbs" | head -20
  echo "FAIL: notebooks are not clean. Run: .venv/bin/nbdev_clean" >&2; exit 1
fi

mark clean
echo "== 3/4 nbdev_test runs every notebook but the lessons (pytest runs those)"
lessons=$(python -c "import re; from lossnotes.course.build import lesson_notebooks
print('|'.join(re.escape(p.name) for p in lesson_notebooks('nbs')))")  # the course's own list of its lessons
nbdev_test --n_workers 2 --timing --skip_file_re "^([_.]|(${lessons})\$)"  # nbdev's default skips [_.] too
mark nbdev_test

echo "== 4/4 pytest"
if [ -x /usr/bin/chromium ]; then
  export LOSSNOTES_CHROMIUM=/usr/bin/chromium
else
  echo "NOTE: /usr/bin/chromium is missing, so the browser tests are skipped."
  echo "      Install it with: apt-get update && apt-get install -y chromium   (.ci/run does this)"
fi
# One worker per core and one more (pytest.ini caps it at 4): a worker that waits on a browser's timers or a server
# leaves CPU idle that a third worker uses. On this two-core machine, with two workers pytest took 579-604 s on a fresh
# clone, with three 494-516 s.
workers=$(( $(nproc 2>/dev/null || echo 2) + 1 ))
python -m pytest tests -q -p no:cacheprovider -n "$workers" "$@"
mark pytest
# read by the benchmark report: how long the whole test command took, step by step
(IFS=,; echo "{\"date\": \"$(date -u +%FT%TZ)\", \"fresh_environment\": $fresh, \"seconds_at_end_of\": {${steps[*]}}}") > artifacts/test-timings.json
if [ -n "${course_pid:-}" ]; then wait "$course_pid" || true; fi  # a run that never needed .venv-course leaves it whole
