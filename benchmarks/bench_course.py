"""Course-wide figures: `import lossnotes` against `import torch` alone (fresh processes), and each notebook's
run time under nbdev_test (one notebook per process, as a learner's kernel would run it)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from common import row

TITLE = 'Import time and notebook run times'
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _wall(cmd: list[str], repeat: int) -> tuple[float, float, float]:
    "Median, min and max wall seconds of running `cmd` (a fresh process each time), after one warm-up when repeated."
    import statistics
    if repeat > 1: subprocess.run(cmd, check=True, capture_output=True)  # the quick mode only checks that it runs
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts), max(ts)


def _added_by_lossnotes(code: str) -> float:
    "Seconds that lossnotes' own imports add to `code`, from `python -X importtime` (one fresh process)."
    err = subprocess.run([sys.executable, '-X', 'importtime', '-c', code], check=True, capture_output=True,
                         text=True).stderr
    entries = [l.split('|') for l in err.splitlines() if l.startswith('import time:') and 'cumulative' not in l]
    total, stack = 0, []  # children are printed before their parent: walk backwards, parents first
    for _, cumulative, name in reversed(entries):
        level = (len(name) - len(name.lstrip())) // 2
        while stack and stack[-1][0] >= level: stack.pop()
        name = name.strip()
        if name.startswith('lossnotes') and not any(n.startswith('lossnotes') for _, n in stack): total += int(cumulative)
        stack.append((level, name))
    return total / 1e6


def run(quick: bool) -> list[dict]:
    import lossnotes, pkgutil, statistics
    mods = sorted(m.name for m in pkgutil.iter_modules(lossnotes.__path__) if not m.name.startswith('_'))
    repeat = 1 if quick else 15
    torch_only = _wall([sys.executable, '-c', 'import torch'], repeat)
    rows = [row('import', 'import torch', torch_only, note='wall time of a fresh process')]
    for label, code in [('import lossnotes', 'import torch, lossnotes'),
                        ('import every lossnotes module', 'import torch, ' + ', '.join(f'lossnotes.{m}' for m in mods))]:
        stats = _wall([sys.executable, '-c', code], repeat)
        added = statistics.median(_added_by_lossnotes(code) for _ in range(repeat))
        assert added > 0
        rows.append(row('import', label, stats, torch_only, 'import torch', target='adds at most 50 ms to import torch',
                        met=added <= 0.050, note=f'lossnotes\' own imports add {added * 1e3:.1f} ms '
                        '(median of python -X importtime); the wall-time ratio is within run-to-run noise'))
    if quick: return rows  # notebook run times are measured by the full run only
    for nb in sorted((ROOT / 'nbs').glob('*.ipynb')):
        t0 = time.perf_counter()
        r = subprocess.run([str(BIN / 'nbdev_test'), '--path', str(nb)], cwd=ROOT, capture_output=True, text=True)
        secs = time.perf_counter() - t0
        rows.append(row('notebook under nbdev_test', nb.name, (secs, secs, secs), target='under 30 s', met=secs < 30 and r.returncode == 0,
                        note='' if r.returncode == 0 else 'FAILED'))
    return rows
