"""Write the learner's course into lossnotes/notebooks/, which the package ships for `lossnotes course DEST`: the
home page 00_start_here.ipynb, then the learner version of every lesson in nbs/ (solutions stubbed, hidden test
cells, answer cells and nbdev directives removed, outputs cleared). `--check` exits 1 when they are out of date."""
import filecmp, sys, tempfile
from pathlib import Path
from lossnotes.course.build import build_course

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / 'lossnotes' / 'notebooks'

def main(argv):
    if '--check' in argv:
        with tempfile.TemporaryDirectory() as d:
            fresh = {p.name for p in build_course(ROOT / 'nbs', d)}
            have = {p.name for p in DEST.glob('*.ipynb')}
            stale = sorted((fresh ^ have) | {n for n in fresh & have if not filecmp.cmp(Path(d) / n, DEST / n, shallow=False)})
        if stale:
            print(f'lossnotes/notebooks/ is stale ({", ".join(stale)}): run  .venv/bin/python scripts/make_course.py', file=sys.stderr)
            return 1
        return 0
    for old in DEST.glob('*.ipynb'): old.unlink()
    written = build_course(ROOT / 'nbs', DEST)
    print(f'wrote {len(written)} learner notebooks to {DEST.relative_to(ROOT)}')
    return 0

if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
