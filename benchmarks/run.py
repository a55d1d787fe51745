"""Run every benchmark, one process per topic, and write BENCHMARKS.md (or check that they run, with --quick).

  python benchmarks/run.py            full sizes; writes BENCHMARKS.md
  python benchmarks/run.py --quick    tiny sizes; checks that every benchmark runs and its implementations agree
  python benchmarks/run.py --test-timings   rewrites only the section on the test commands (from artifacts/)
  python benchmarks/run.py --only ema --out FILE   (internal: one topic, rows as JSON)"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
THREADS = int(os.environ.get('LOSSNOTES_BENCH_THREADS', '1'))


def topics() -> list[str]:
    return sorted(p.stem[len('bench_'):] for p in HERE.glob('bench_*.py'))


def run_one(topic: str, quick: bool, out: Path) -> None:
    "Run one benchmark module in this process and write its title and rows to `out`."
    import importlib
    import torch
    torch.set_num_threads(THREADS)
    sys.path.insert(0, str(HERE))
    mod = importlib.import_module(f'bench_{topic}')
    t0 = time.perf_counter()
    rows = mod.run(quick)
    out.write_text(json.dumps({'title': mod.TITLE, 'rows': rows, 'seconds': time.perf_counter() - t0}))


def machine() -> list[str]:
    import torch
    cpu = next((l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines()
                if l.startswith('model name')), platform.processor() or 'unknown')
    return [f'- CPU: {cpu}, {os.cpu_count()} cores', f'- torch {torch.__version__}, {THREADS} thread(s) '
            f'(`torch.set_num_threads({THREADS})` in every benchmark process), Python {platform.python_version()}',
            f'- generated {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} by `bash scripts/bench.sh`']


def fmt_s(s: float) -> str:
    return f'{s * 1e9:.0f} ns' if s < 1e-6 else f'{s * 1e6:.2f} us' if s < 1e-3 else f'{s * 1e3:.2f} ms' if s < 1 else f'{s:.2f} s'


def table(rows: list[dict]) -> list[str]:
    out = ['| case | implementation | median | min | max | reference | ratio | target | met | note |',
           '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        ratio = '' if r['ratio'] is None else f"{r['ratio']:.2f}x"
        met = {True: 'yes', False: '**missed**', None: ''}[r['met']]
        out.append(f"| {r['case']} | {r['impl']} | {fmt_s(r['median_s'])} | {fmt_s(r['min_s'])} | {fmt_s(r['max_s'])} "
                   f"| {r['ref'] or ''} | {ratio} | {r['target']} | {met} | {r['note']} |")
    return out


def test_command_timings(artifacts: Path = ROOT / 'artifacts') -> list[str]:
    "The section on the test commands: the last full run of scripts/test.sh step by step, and the last fast loop."
    lines = []
    p = artifacts / 'test-timings.json'
    if p.exists():
        t = json.loads(p.read_text())
        ends, prev = t['seconds_at_end_of'], 0
        fresh = t.get('fresh_environment')
        where = {True: 'on a fresh clone, its environments built from nothing',
                 False: 'in a working tree whose environments were already built'}.get(fresh, 'where not recorded')
        lines += [f'The last run of `bash scripts/test.sh` ({t["date"]}, {where}), which `.ci/run` runs; target: the whole '
                  'of `.ci/run` on a fresh clone (the environment set up from nothing included) within 10 minutes.', '',
                  '| step | seconds |', '|---|---|']
        for step, end in ends.items():
            lines.append(f'| {step} | {end - prev} |'); prev = end
        verdict = ('met' if prev <= 600 else f'**missed** by {prev - 600} s') if fresh else 'not judged (not a fresh clone)'
        lines += [f'| **whole test command** | **{prev}** |', '', f'The 10-minute target: {verdict}.', '']
    else: lines += ['The whole test command: not measured yet (run `bash scripts/test.sh`, then this command again).', '']
    p = artifacts / 'fast-loop.json'
    if p.exists():
        f = json.loads(p.read_text())
        lines += [f'The last fast loop, `.venv/bin/python -m pytest -m "not slow"` ({f["date"]}): {f["tests"]} tests in '
                  f'**{f["seconds"]} s** on {f["workers"]} worker(s), exit status {f["exit_status"]}; target: at most 60 s.']
    else: lines += ['The fast loop: not measured yet (run `.venv/bin/python -m pytest -m "not slow"`, then this command again).']
    return lines


def rewrite_test_command_section() -> None:
    "Replace only BENCHMARKS.md's section on the test commands (the benchmarks' own rows stay as they were)."
    path = ROOT / 'BENCHMARKS.md'
    text = path.read_text()
    head, rest = text.split('## The whole test command\n', 1)
    tail = rest[rest.index('\n## '):] if '\n## ' in rest else '\n'
    path.write_text(head + '## The whole test command\n\n' + '\n'.join(test_command_timings()) + '\n' + tail)


def main(argv: list[str]) -> int:
    quick = '--quick' in argv
    if '--test-timings' in argv:
        rewrite_test_command_section()
        print('wrote the test commands section of BENCHMARKS.md')
        return 0
    if '--only' in argv:
        run_one(argv[argv.index('--only') + 1], quick, Path(argv[argv.index('--out') + 1]))
        return 0
    wanted = [t for t in topics() if not (quick and t == 'sliders')]  # the browser tests already drive the sliders
    results, failed = {}, []
    with tempfile.TemporaryDirectory() as d:
        for t in wanted:
            out = Path(d) / f'{t}.json'
            print(f'benchmark {t} ...', flush=True)
            r = subprocess.run([sys.executable, __file__, '--only', t, '--out', str(out)] + (['--quick'] if quick else []))
            if r.returncode != 0 or not out.exists(): failed.append(t); continue
            results[t] = json.loads(out.read_text())
    if failed:
        print(f'benchmarks failed: {failed}', file=sys.stderr)
        return 1
    if quick:
        print(f'quick benchmarks ran: {", ".join(wanted)}')
        return 0
    lines = ['# Benchmarks', '', '<!-- Generated by `bash scripts/bench.sh`; do not edit by hand. -->', '']
    lines += machine() + ['', 'Each figure is the median over repetitions after warm-up (`time.perf_counter`), with min '
                          'and max; the ratio compares it with the reference measured in the same run.', '']
    missed = []
    for t, res in results.items():
        lines += [f'## {res["title"]}', ''] + table(res['rows']) + ['']
        missed += [f"- {res['title']}: {r['case']}, {r['impl']}: {fmt_s(r['median_s'])}"
                   + (f" ({r['ratio']:.2f}x {r['ref']})" if r['ratio'] is not None else '') + f" against target "
                   f"'{r['target']}'. {r['note']}" for r in res['rows'] if r['met'] is False]
    lines += ['## The whole test command', ''] + test_command_timings() + ['']
    lines += ['## Targets missed', ''] + (missed or ['None: every target holds.']) + ['']
    (ROOT / 'BENCHMARKS.md').write_text('\n'.join(lines))
    print('wrote BENCHMARKS.md')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
