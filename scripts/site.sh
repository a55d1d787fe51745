#!/usr/bin/env bash
# Build the learner-facing static site into DEST (default site/): one page per lesson and reference notebook and
# an index, working opened from file:// with no network; each lesson's live figure keeps its controls.
# Usage: bash scripts/site.sh [DEST]
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
python scripts/make_site.py "$@"
