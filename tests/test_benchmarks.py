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


def test_test_command_section_gives_each_step_its_own_seconds_and_says_where_it_ran(tmp_path):
    "artifacts/test-timings.json holds the seconds at the end of each step; the report shows each step's own share."
    (tmp_path / 'test-timings.json').write_text(json.dumps({'date': 'D', 'fresh_environment': True,
        'seconds_at_end_of': {'environment': 50, 'export': 51, 'nbdev_test': 89, 'pytest': 996}}))
    lines = bench_run.test_command_timings(tmp_path)
    assert 'on a fresh clone, its environments built from nothing' in lines[0]
    assert lines[4:9] == ['| environment | 50 |', '| export | 1 |', '| nbdev_test | 38 |', '| pytest | 907 |',
                          '| **whole test command** | **996** |']
    assert lines[10] == 'The 10-minute target: **missed** by 396 s.'
    assert lines[-1].startswith('The fast loop: not measured yet')
    (tmp_path / 'test-timings.json').write_text(json.dumps({'date': 'D', 'fresh_environment': False, 'seconds_at_end_of': {'pytest': 5}}))
    lines = bench_run.test_command_timings(tmp_path)
    assert 'in a working tree whose environments were already built' in lines[0]
    assert 'The 10-minute target: not judged (not a fresh clone).' in lines
