"""Every claims ledger (tests/claims/<notebook>.md) stays in step with its notebook: each quoted claim still reads in
the notebook's visible text, and each piece of evidence it names (a hidden check, a test, a cell) exists."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEDGERS = sorted((ROOT / 'tests' / 'claims').glob('*.md'))
LEDGERS = [p for p in LEDGERS if p.name != 'README.md']
KINDS = {'number', 'source', 'experiment', 'math'}
DIRECTIVE = re.compile(r'^\s*#\s?\|\s*([\w-]+)')


def notebook_for(ledger: Path) -> Path:
    stem = ledger.stem
    if stem.startswith('reference_'): return ROOT / 'nbs' / 'reference' / f"{stem[len('reference_'):]}.ipynb"
    return ROOT / 'nbs' / f'{stem}.ipynb'


def norm(s: str) -> str:
    s = s.replace('\u2019', "'").replace('\u2018', "'").replace('\u201c', '"').replace('\u201d', '"')
    s = s.replace('\u2212', '-').replace('\\|', '|')
    return ' '.join(re.sub(r'[*`]', '', s).lower().split())


def _src(cell) -> str: return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']


def _hidden(cell) -> bool:
    if cell['cell_type'] != 'code': return False
    names = [m[1] for m in map(DIRECTIVE.match, _src(cell).split('\n')) if m]
    return 'hide' in names


def _outputs(cell) -> str:
    out = []
    for o in cell.get('outputs', []):
        if 'text' in o: out.append(''.join(o['text']))
        data = o.get('data', {})
        for k in ('text/plain', 'text/markdown', 'text/html'):
            if k in data: out.append(''.join(data[k]))
    return '\n'.join(out)


def texts(nb_path: Path) -> tuple[str, str]:
    "(the visible text, the hidden cells' source) of a notebook."
    cells = json.loads(nb_path.read_text(encoding='utf-8'))['cells']
    visible = [_src(c) + '\n' + _outputs(c) for c in cells if not _hidden(c)]
    hidden = [_src(c) for c in cells if _hidden(c)]
    return '\n'.join(visible), '\n'.join(hidden)


def split_row(line: str) -> list[str]:
    cells = re.split(r'(?<!\\)\|', line.strip())
    return [c.strip() for c in cells[1:-1]]


def rows(ledger: Path) -> list[list[str]]:
    out = []
    for line in ledger.read_text(encoding='utf-8').splitlines():
        if not line.lstrip().startswith('|'): continue
        cells = split_row(line)
        if len(cells) < 4 or set(''.join(cells)) <= set('-: ') or cells[0] in ('#', 'n'): continue
        out.append(cells)
    return out


def quote_of(claim: str) -> str | None:
    m = re.search(r'"(.+)"|\u201c(.+)\u201d', claim)
    return None if m is None else (m[1] or m[2])


def appears(quote: str, text: str) -> bool:
    pieces = [norm(p) for p in re.split(r'\.\.\.|\u2026', quote) if norm(p)]
    pos = 0
    for p in pieces:
        i = text.find(p, pos)
        if i < 0: return False
        pos = i + len(p)
    return True


VERSION = re.compile(r'\b(v?\d+\.\d+(\.\d+)?|[0-9a-f]{7,40})\b')
TEST_REF = re.compile(r'tests/([\w/]+\.py)::(\w+)')
HIDDEN_REF = re.compile(r'hidden check\s*`([^`]+)`')
CELL_REF = re.compile(r'cell\s+"([^"]+)"')


@pytest.mark.parametrize('ledger', LEDGERS, ids=[p.stem for p in LEDGERS])
def test_ledger_in_step_with_notebook(ledger):
    nb = notebook_for(ledger)
    assert nb.exists(), f'{ledger.name}: no notebook {nb.relative_to(ROOT)}'
    visible, hidden = texts(nb)
    visible_n, hidden_n = norm(visible), norm(hidden)
    table = rows(ledger)
    assert table, f'{ledger.name} has no rows'
    problems = []
    for r in table:
        num, claim, kind, evidence = r[0], r[1], r[2].strip('` ').lower(), '|'.join(r[3:])
        q = quote_of(claim)
        if q is None: problems.append(f'row {num}: the claim is not quoted'); continue
        if len(q.split()) > 20: problems.append(f'row {num}: quote longer than 20 words')
        if not appears(q, visible_n): problems.append(f'row {num}: {q!r} is not in the visible text of {nb.name}')
        if kind not in KINDS: problems.append(f'row {num}: kind {kind!r} is not one of {sorted(KINDS)}')
        named = False
        for frag in HIDDEN_REF.findall(evidence):
            named = True
            if norm(frag) not in hidden_n: problems.append(f'row {num}: hidden check {frag!r} is not in a hidden cell')
        for path, name in TEST_REF.findall(evidence):
            named = True
            f = ROOT / 'tests' / path
            if not f.exists() or not re.search(rf'def {name}\b', f.read_text(encoding='utf-8')):
                problems.append(f'row {num}: test tests/{path}::{name} does not exist')
        for title in CELL_REF.findall(evidence):
            named = True
            if norm(title) not in visible_n + ' ' + hidden_n: problems.append(f'row {num}: cell {title!r} not found')
        if VERSION.search(evidence): named = True
        if kind == 'source' and not VERSION.search(evidence):
            problems.append(f'row {num}: a source row names no version, tag or commit')
        if not named: problems.append(f'row {num}: evidence names no hidden check, test, cell or version')
    assert not problems, f'{ledger.name}:\n' + '\n'.join(problems)


def test_parser_catches_drift(tmp_path):
    "The ledger check fails when a quoted claim or a named check is missing: it can fail."
    assert appears('reports 2.00 ... after 100', norm('It reports 2.00, 3.96 and, after 100 batches'))
    assert not appears('after 100 ... reports 2.00', norm('It reports 2.00, 3.96 and, after 100 batches'))
    assert split_row(r'| 1 | "a \| b" | math | cell "x" |') == ['1', r'"a \| b"', 'math', 'cell "x"']
    assert quote_of('"the weights sum to 1"') == 'the weights sum to 1'
