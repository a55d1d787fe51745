"""The benchmarks cannot rot: the quick mode of the benchmark command runs every benchmark with tiny sizes, and
each asserts that its implementations agree. No timing is asserted here."""
import json
import subprocess
import sys

import pytest

from conftest import PY, ROOT

sys.path.insert(0, str(ROOT / 'benchmarks'))
import run as bench_run  # noqa: E402


def test_every_topic_with_a_benchmark_has_one():
    assert {'course', 'sliders', 'site', 'ema', 'batchnorm', 'accumulate'} <= set(bench_run.topics())


@pytest.mark.slow
@pytest.mark.parametrize('topic', [t for t in bench_run.topics() if t != 'sliders'])  # the browser tests drive the sliders
def test_quick_benchmark_runs(topic, tmp_path):
    "Each benchmark with tiny sizes, in a process of its own, as `benchmarks/run.py --quick` runs them: it runs and its rows are there."
    out = tmp_path / f'{topic}.json'
    r = subprocess.run([PY, str(ROOT / 'benchmarks' / 'run.py'), '--only', topic, '--out', str(out), '--quick'],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads(out.read_text())['rows']
    assert rows and all({'case', 'impl', 'median_s'} <= set(r) for r in rows), rows


def test_report_table_formats_a_row():
    from common import row
    r = row('n=10', 'mine', (2e-6, 1e-6, 3e-6), (4e-6, 4e-6, 4e-6), 'theirs', target='at most 1x', met=True)
    assert r['ratio'] == 0.5
    line = bench_run.table([r])[-1]
    assert line == '| n=10 | mine | 2.00 us | 1.00 us | 3.00 us | theirs | 0.50x | at most 1x | yes |  |'
