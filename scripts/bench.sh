#!/usr/bin/env bash
# Run every benchmark (one process per topic) and write BENCHMARKS.md. `--quick` only checks that they run.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
unset LOSSNOTES_DEMO_CACHE  # the notebook timings measure what a learner runs: every demo computed
if [ -x /usr/bin/chromium ]; then export LOSSNOTES_CHROMIUM=/usr/bin/chromium; fi
python benchmarks/run.py "$@"
