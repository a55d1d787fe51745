"""Shared by the tests: the repository root, the interpreter of the project's virtual environment, one torch thread
per test process, and the fast loop's own timing."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Before any test module imports torch: one thread per process. The suite runs in parallel (pytest-xdist) and starts
# kernels and subprocesses, which inherit this; two threads per process on a busy machine make tiny models 10-25x
# slower. A test about threads sets the count it needs itself.
os.environ.setdefault('OMP_NUM_THREADS', '1')

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def without_module(name: str) -> str:
    "A sitecustomize.py that makes `import name` (and its submodules) fail, as if the package were not installed."
    return f"""import sys
class _Without:
    def find_spec(self, fullname, path=None, target=None):
        if fullname == {name!r} or fullname.startswith({name + '.'!r}):
            raise ModuleNotFoundError(f"No module named {{fullname!r}}", name=fullname)
sys.meta_path.insert(0, _Without())
"""


_START = time.perf_counter()


def _seconds_since_start() -> float:
    "Seconds since this process started (Linux: from /proc, interpreter and pytest start-up included), else since conftest loaded."
    try:
        ticks = int(Path('/proc/self/stat').read_text().rsplit(')', 1)[1].split()[19])  # field 22, starttime
        return float(Path('/proc/uptime').read_text().split()[0]) - ticks / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError, IndexError): return time.perf_counter() - _START


def pytest_sessionfinish(session, exitstatus):
    """In every test process: close the Chromium that its browser tests shared (tests/browser_driver.py launches it
    once). Then the fast loop (`-m 'not slow'` over the whole of tests/) records how long it took, for BENCHMARKS.md."""
    driver = sys.modules.get('browser_driver')
    if driver is not None: driver.close_chromium()
    cfg = session.config
    if hasattr(cfg, 'workerinput') or cfg.getoption('markexpr') != 'not slow': return
    if [Path(a).resolve() for a in cfg.args] != [ROOT / 'tests'] or cfg.getoption('keyword'): return
    out = ROOT / 'artifacts' / 'fast-loop.json'
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), 'exit_status': int(exitstatus),
                               'tests': session.testscollected, 'seconds': round(_seconds_since_start(), 1),
                               'workers': getattr(cfg.option, 'numprocesses', None) or 0}))


@pytest.fixture
def two_threads():
    "torch at two threads for one test (the suite runs at one): a helper that sets one thread must be seen to restore two."
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try: yield 2
    finally: torch.set_num_threads(before)


def load_script(name: str):
    "scripts/<name>.py as a module (its main() runs in this process, without the few seconds of a fresh interpreter)."
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'scripts_{name}', ROOT / 'scripts' / f'{name}.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def copy_repo_files(dest: Path) -> Path:
    "The repository's files (tracked, and new ones git does not ignore) copied to `dest`: what a fresh clone of this working tree has."
    files = subprocess.run(['git', 'ls-files', '-z', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split('\0')  # -z: a name git would quote arrives as it is
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    return dest


def let_gloo_workers_finish(seconds: float = 0.3) -> None:
    """Call after the last collective of a one-process gloo group and after dropping the DDP model, before
    destroy_process_group. A gloo worker thread that finishes a collective frees it, and that needs the GIL; a
    process group freed meanwhile from Python (a DDP model or the group going away) holds the GIL and joins that
    thread: a deadlock (torch 2.13; seen once in ~ProcessGroupGloo under ~Reducer on a busy machine). Collecting
    garbage and then sleeping, which releases the GIL, lets the workers finish first."""
    import gc
    gc.collect()
    time.sleep(seconds)


@pytest.fixture(scope='session')
def wheel(tmp_path_factory):
    """The wheel built (`python -m build --no-isolation`, with this environment's setuptools) from this working tree's
    files, with the learner notebooks built from nbs/ (what make_course.py writes). Tests that use it share the xdist
    group 'wheel', so that one worker builds it once."""
    from lossnotes.course.build import build_course
    tmp = tmp_path_factory.mktemp('wheel')
    src = copy_repo_files(tmp / 'src')
    build_course(ROOT / 'nbs', src / 'lossnotes' / 'notebooks')
    r = subprocess.run([PY, '-m', 'build', '--wheel', '--no-isolation', '-o', str(tmp / 'dist'), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return next((tmp / 'dist').glob('lossnotes-*.whl'))


@pytest.fixture(scope='session')
def course_env():
    """The learner's environment .venv-course, built or brought up to date by `bash scripts/course.sh --install-only`
    (minutes from nothing, under a second when its stamp is current). Each worker asks once; a lock makes the others
    wait while the first builds, so that no kernel starts from an environment pip is rewriting. scripts/test.sh starts
    that build, under the same lock, before the notebooks' checks, so that pytest's workers rarely wait for it."""
    import fcntl
    with open(ROOT / '.venv-course.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try: r = subprocess.run(['bash', str(ROOT / 'scripts' / 'course.sh'), '--install-only'], capture_output=True,
                                text=True, timeout=1800)
        finally: fcntl.flock(lock, fcntl.LOCK_UN)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return ROOT / '.venv-course'


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """On a pytest-xdist worker under `--dist loadgroup`: a test marked `xdist_group` must carry its group in its id
    (pytest-xdist's side channel to the scheduler), else the groups are silently split across workers and the fixtures
    they share are built once per worker."""
    if not getattr(config.option, 'loadgroup', False) or not hasattr(config, 'workerinput'): return
    lost = [i.nodeid for i in items if i.get_closest_marker('xdist_group') and '@' not in i.nodeid.rsplit('::', 1)[-1]]
    if lost:
        msg = f"pytest-xdist's groups are lost with pytest {pytest.__version__} (see constraints.txt): {lost[:3]}"
        print(msg, file=sys.stderr)  # a worker's error reaches the terminal only as the worker's crash
        raise pytest.UsageError(msg)
