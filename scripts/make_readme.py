"""Write README.md from nbs/index.ipynb (the course's home page); `--check` exits 1 when README.md is stale.

Markdown cells are copied, code cells become ```python blocks, cells starting with `#| hide` are left out, `#| echo: false` cells show only their output,
and each PNG output is written to docs/readme/ and linked, so the README shows the home page's figures."""
import base64, hashlib, re, sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parent.parent
HEADER = '<!-- Generated from nbs/index.ipynb by scripts/make_readme.py: edit the notebook, not this file. -->\n\n'

def render(nb_path=ROOT / 'nbs' / 'index.ipynb'):
    "Return README text and {relative path: png bytes} for nb_path."
    nb = nbformat.read(nb_path, as_version=4)
    parts, images = [HEADER], {}
    for cell in nb.cells:
        src = cell.source.strip()
        if not src: continue
        directives = re.findall(r'^#\|\s*(\w+)', src, flags=re.M)
        if cell.cell_type == 'markdown':  # links between notebooks, from the repository root
            parts.append(re.sub(r'\]\(([\w.-]+\.ipynb)\)', r'](nbs/\1)', src) + '\n\n'); continue
        if 'hide' in directives: continue
        code = '\n'.join(l for l in src.split('\n') if not l.startswith('#|')).strip()
        echo = not re.search(r'^#\|\s*echo:\s*false', src, flags=re.M)
        if code and echo: parts.append(f'```python\n{code}\n```\n\n')
        for out in cell.get('outputs', []):
            data = out.get('data', {})
            if 'image/png' in data:
                png = base64.b64decode(data['image/png'])
                rel = f'docs/readme/{hashlib.sha1(png).hexdigest()[:12]}.png'
                images[rel] = png
                parts.append(f'![]({rel})\n\n')
            elif 'text/markdown' in data: parts.append(data['text/markdown'].strip() + '\n\n')
    return ''.join(parts).rstrip() + '\n', images

def main(argv):
    text, images = render()
    readme = ROOT / 'README.md'
    if '--check' in argv:
        stale = not readme.exists() or readme.read_text() != text
        missing = [p for p in images if not (ROOT / p).exists()]
        if stale or missing:
            print('README.md is stale: run  .venv/bin/python scripts/make_readme.py', file=sys.stderr)
            return 1
        return 0
    readme.write_text(text)
    out = ROOT / 'docs' / 'readme'
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob('*.png'):
        if f'docs/readme/{old.name}' not in images: old.unlink()
    for rel, png in images.items(): (ROOT / rel).write_bytes(png)
    print(f'wrote README.md and {len(images)} figure(s)')
    return 0

if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
