#!/usr/bin/env bash
# The lesson layer at the lowest versions settings.ini allows (scripts/floors.txt): a virtual environment of its own
# (build/floors-venv) with those exact versions and the local torch, then the tests that cover lossnotes/lessons/
# and every lesson notebook run top to bottom.
# Not part of the fast loop; a second run reuses the environment.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/build/floors-venv"
cd "$ROOT"
if [ ! -x "$VENV/bin/python" ]; then "${PYTHON:-python3}" -m venv "$VENV"; fi
want=$(cat scripts/floors.txt constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$want" ]; then
  # the floors as requirements and as constraints: nothing else may pull a newer release of them
  "$VENV/bin/python" -m pip install -q --no-compile -c scripts/floors.txt -c constraints.txt -r scripts/floors.txt torch pytest pillow
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  echo "$want" > "$VENV/.stamp"
fi
"$VENV/bin/python" - <<'PY'  # the versions this run tests are the floors, not whatever pip preferred
import importlib.metadata as md, re
pins = dict(re.match(r'([\w-]+)==(\S+)', l).groups() for l in open('scripts/floors.txt') if '==' in l)
got = {k: md.version(k) for k in pins}
assert got == pins, f"installed {got}, floors {pins}"
print('floors:', ', '.join(f'{k} {v}' for k, v in got.items()), '| torch', md.version('torch'))
PY
export MPLBACKEND=Agg
# test_plotting: the live-figure machinery and every lesson's explorer swept through its controls (slow ones too)
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -o addopts="" tests/test_plotting.py "$@"  # one process: no pytest-xdist here
# every lesson notebook in nbs/ run top to bottom in an IPython InteractiveShell, one process each: the instructor's
# notebook with its hidden cells and solutions (not the learner's copy), every code cell nbdev_test runs
# (pandas and scipy are used there)
for nb in nbs/0[0-9]*.ipynb; do
  start=$SECONDS
  log="$ROOT/build/floors-$(basename "$nb" .ipynb).log"
  if ! (cd nbs && "$VENV/bin/python" - "$(basename "$nb")" >"$log" 2>&1 <<'PY'
import json, sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
for cell in json.load(open(sys.argv[1]))['cells']:
    src = ''.join(cell['source'])
    if cell['cell_type'] != 'code' or '#| eval: false' in src: continue  # what nbdev_test skips too
    result = shell.run_cell(src, silent=True)
    if not result.success: print(f'{sys.argv[1]}: a cell failed:\n{src[:300]}'); result.raise_error()
PY
  ); then tail -40 "$log"; echo "$nb: FAILED at the floors (whole output: $log)"; exit 1; fi
  echo "$nb: ran in $((SECONDS - start)) s"
done
