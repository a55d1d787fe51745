#!/usr/bin/env bash
# Open the course: JupyterLab on nbs/, landing on the home page, with live widgets.
# Binds 127.0.0.1 and keeps Jupyter's token authentication. Extra arguments go to `jupyter lab`
# (e.g. --port=9000, or --ServerApp.ip=0.0.0.0 to serve other machines on purpose).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
unset MPLBACKEND  # inside the course, matplotlib uses the notebook's inline backend
NBS=${LOSSNOTES_NBS:-$ROOT/nbs}  # the folder to serve (the browser tests serve a copy)
args=(--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.root_dir="$NBS")
if [ "$(id -u)" = 0 ]; then args+=(--allow-root); fi
echo "lossnotes: starting JupyterLab; open the URL with the token printed below (index.ipynb is the home page)."
exec jupyter lab "${args[@]}" "$@" "$NBS/index.ipynb"
