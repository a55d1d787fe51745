# Sourced by the project's commands. Creates the virtual environment .venv at the repository root if it is
# missing and installs the project into it with the pinned development toolchain (constraints.txt). A second
# run finds the stamp up to date and installs nothing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
STAMP="$VENV/.lossnotes-installed"
want=$(cat "$ROOT/constraints.txt" "$ROOT/settings.ini" "$ROOT/setup.py" | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  echo "lossnotes: creating $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "lossnotes: installing the project and its pinned toolchain into .venv (first run only)"
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel packaging
  # --no-compile: Python compiles a module when it is first imported; compiling all of torch up front triples its install
  "$VENV/bin/python" -m pip install -q --no-compile -c "$ROOT/constraints.txt" -e "$ROOT[dev]"
  echo "$want" > "$STAMP"
fi
# .venv is installed with --no-compile, so Python compiles each module on its first import and caches the bytecode in
# .venv. With PYTHONDONTWRITEBYTECODE set (some containers set it) nothing is cached, and every process compiles torch,
# Jupyter and the rest again: about a second more of CPU per process, over hundreds of test processes and kernels.
unset PYTHONDONTWRITEBYTECODE
export PATH="$VENV/bin:$PATH"
export MPLBACKEND=${MPLBACKEND:-Agg}
cd "$ROOT"
