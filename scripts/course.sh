#!/usr/bin/env bash
# Open the course in JupyterLab, bound to 127.0.0.1 with Jupyter's token kept, landing on the course's home page.
#   bash scripts/course.sh               the learner's course: course/ (git-ignored), built from nbs/ on the first
#                                        run; later runs add only what is missing and never overwrite your files
#   bash scripts/course.sh --reset 03    start lesson 03 over (your file moves to course/backups/, dated), then open
#   bash scripts/course.sh --solutions   the instructor's notebooks in nbs/, solutions and all
#   --folder DIR                         serve DIR instead of course/ (with --solutions: instead of nbs/)
# Other arguments go to `jupyter lab` (e.g. --port=9000). The URL to open is printed by Jupyter: it ends in
# /lab/tree/00_start_here.ipynb?token=... (index.ipynb with --solutions).
here=$PWD
solutions=0 folder= pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --solutions) solutions=1 ;;
    --folder) folder=$2; shift ;;
    --folder=*) folder=${1#--folder=} ;;
    *) pass+=("$1") ;;
  esac
  shift
done
if [ -n "${LOSSNOTES_NBS:-}" ]; then solutions=1 folder=$LOSSNOTES_NBS; fi  # older spelling of --solutions --folder DIR
if [ -n "$folder" ]; then case "$folder" in /*) ;; *) folder=$here/$folder ;; esac; fi
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
unset MPLBACKEND  # inside the course, matplotlib uses the notebook's inline backend
if [ "$solutions" = 1 ]; then
  exec python -m lossnotes.course.build lab "${folder:-$ROOT/nbs}" --home index.ipynb --no-browser ${pass[@]+"${pass[@]}"}
fi
exec python -m lossnotes.course.build course "${folder:-$ROOT/course}" --from "$ROOT/nbs" --open --no-browser ${pass[@]+"${pass[@]}"}
