#!/usr/bin/env bash
# Open the course in JupyterLab, bound to 127.0.0.1 with Jupyter's token kept, landing on the course's home page.
#   bash scripts/course.sh               the learner's course: course/ (git-ignored), built from nbs/ on the first
#                                        run; later runs add only what is missing and never overwrite your files
#   bash scripts/course.sh --reset 03    start lesson 03 over (your file moves to course/backups/, dated), then open
#                                        the course, or say at which URL it is already open
#   bash scripts/course.sh --solutions   the instructor's notebooks in nbs/, solutions and all (in the development
#                                        environment .venv, which scripts/_env.sh builds)
#   --folder DIR                         serve DIR instead of course/ (with --solutions: instead of nbs/)
#   --install-only                       build (or bring up to date) the course's environment .venv-course, then stop
#   --no-compile                         when the environment is (re)built: leave each module's compiling to its first import
#                                        (the test command: a third of the build's CPU; the first kernels start slower)
# Other arguments go to `jupyter lab` (e.g. --port=9000). The URL to open is printed by Jupyter: it ends in
# /lab/tree/00_start_here.ipynb?token=... (index.ipynb with --solutions).
#
# The learner's course runs in its own environment, .venv-course/ (git-ignored), built on the first run with the
# course's packages only (settings.ini: requirements, viz and course): PyTorch, JupyterLab, matplotlib, ipywidgets...
# On Linux without an NVIDIA driver it takes PyTorch's CPU build from PyTorch's CPU index (as the README tells pip
# users), or the default index where that is not reachable, and says which. The clone's lossnotes/ is on its path.
set -euo pipefail
# Python caches each module's bytecode at its first import (in .venv-course when it was installed with --no-compile);
# with PYTHONDONTWRITEBYTECODE set (some containers set it) it would compile them again in every kernel
unset PYTHONDONTWRITEBYTECODE
here=$PWD
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
solutions=0 folder= install_only=0 no_compile=0 pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --solutions) solutions=1 ;;
    --install-only) install_only=1 ;;
    --no-compile) no_compile=1 ;;
    --folder) folder=$2; shift ;;
    --folder=*) folder=${1#--folder=} ;;
    *) pass+=("$1") ;;
  esac
  shift
done
if [ -n "${LOSSNOTES_NBS:-}" ]; then solutions=1 folder=$LOSSNOTES_NBS; fi  # older spelling of --solutions --folder DIR
if [ -n "$folder" ]; then case "$folder" in /*) ;; *) folder=$here/$folder ;; esac; fi
if [ "$solutions" = 1 ]; then
  source "$ROOT/scripts/_env.sh"
  unset MPLBACKEND  # inside the course, matplotlib uses the notebook's inline backend
  exec python -m lossnotes.course.cli lab "${folder:-$ROOT/nbs}" --home index.ipynb --no-browser ${pass[@]+"${pass[@]}"}
fi

VENV=${LOSSNOTES_COURSE_VENV:-$ROOT/.venv-course}
STAMP="$VENV/.lossnotes-course-installed"
CPU_INDEX=https://download.pytorch.org/whl/cpu
sha256() { if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi; }  # macOS has shasum
want=$(cat "$ROOT/constraints.txt" "$ROOT/settings.ini" "$ROOT/setup.py" "$ROOT/scripts/course.sh" | sha256 | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  start=$SECONDS
  if [ ! -x "$VENV/bin/python" ]; then
    echo "lossnotes: creating the course's environment $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
  elif ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then  # an environment whose creation was cut short
    if [ ! -f "$VENV/pyvenv.cfg" ] || [ -L "$VENV" ]; then
      echo "lossnotes: $VENV has a python without pip and is not a virtual environment this script made: remove it" >&2
      exit 1
    fi
    echo "lossnotes: creating the course's environment $VENV again (its creation was cut short)"
    "${PYTHON:-python3}" -m venv --clear "$VENV"
  fi
  py="$VENV/bin/python"
  pip=("$py" -m pip install -q -c "$ROOT/constraints.txt")
  if [ "$no_compile" = 1 ]; then pip+=(--no-compile); fi
  torch=$(grep -E '^torch([=<>!~ ]|$)' "$ROOT/constraints.txt" | head -1 | tr -d ' ' || true)
  torch=${torch:-torch}
  echo "lossnotes: installing the course's packages into $VENV (first run only; PyTorch and JupyterLab take a few minutes)"
  from="the default package index"
  if [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1 && [ ! -e /proc/driver/nvidia/version ]; then
    # no NVIDIA driver: the CPU build, a fraction of the CUDA build's size
    if "$py" -c "import urllib.request as u; u.urlopen('$CPU_INDEX/torch/', timeout=10)" >/dev/null 2>&1 \
       && "${pip[@]}" --index-url "$CPU_INDEX" "$torch"; then
      from="PyTorch's CPU index ($CPU_INDEX)"
    else
      echo "lossnotes: PyTorch's CPU index ($CPU_INDEX) is not reachable: installing torch from the default index"
      "${pip[@]}" "$torch"
    fi
  else
    "${pip[@]}" "$torch"
  fi
  # the course extra of settings.ini, without installing lossnotes itself: the clone's lossnotes/ goes on the path
  reqs=()  # one per line (bash 3.2, macOS's, has no mapfile)
  while IFS= read -r req; do [ -n "$req" ] && reqs+=("$req"); done < <("$py" - "$ROOT/settings.ini" <<'EOF'
import configparser, shlex, sys
cfg = configparser.ConfigParser(); cfg.read(sys.argv[1]); d = cfg['DEFAULT']
for key in ('requirements', 'viz_requirements', 'course_requirements'): print('\n'.join(shlex.split(d.get(key, ''))))
EOF
)
  "${pip[@]}" "${reqs[@]}"
  site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$ROOT" > "$site/lossnotes-clone.pth"
  "$py" -c "import torch; print(f'lossnotes: installed torch {torch.__version__} from $from')"
  echo "lossnotes: the course's environment is ready ($((SECONDS - start)) s)"
  echo "$want" > "$STAMP"
fi
if [ "$install_only" = 1 ]; then echo "lossnotes: the course's environment $VENV is up to date"; exit 0; fi
export PATH="$VENV/bin:$PATH"
unset MPLBACKEND  # inside the course, matplotlib uses the notebook's inline backend
cd "$ROOT"
exec "$VENV/bin/python" -m lossnotes.course.cli course "${folder:-$ROOT/course}" --from "$ROOT/nbs" --open --no-browser ${pass[@]+"${pass[@]}"}
