"""Export every notebook to self-contained HTML in site/ (or the folder given), with an index page.

Figures are embedded in the pages as data URIs, so the pages show them offline with no kernel and no CDN.
Usage: python scripts/export_html.py [DEST]"""
import html
import re
import json
import sys
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from lossnotes.course.build import course_notebooks

ROOT = Path(__file__).resolve().parent.parent


def title(nb) -> str:
    for c in nb.cells:
        if c.cell_type == 'markdown':
            for line in c.source.split('\n'):
                if line.startswith('# '): return line[2:].strip()
    return 'untitled'


def export(dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name='lab', embed_images=True)
    pages, rows = [], []
    for p in course_notebooks(ROOT / 'nbs'):
        nb = nbformat.read(p, as_version=4)
        body, _ = exporter.from_notebook_node(nb, resources={'metadata': {'name': title(nb)}})
        out = dest / (p.stem + '.html')
        body = re.sub(r'href="([\w.-]+)\.ipynb"', r'href="\1.html"', body)  # links between notebooks
        out.write_text(body, encoding='utf-8')
        pages.append(out)
        rows.append(f'<li><a href="{out.name}">{html.escape(p.stem)}</a>: {html.escape(title(nb))}</li>')
    index = dest / 'contents.html'
    index.write_text('<!doctype html><meta charset="utf-8"><title>lossnotes</title>'
                     '<h1>lossnotes: the course</h1><ul>' + '\n'.join(rows) + '</ul>\n', encoding='utf-8')
    return [index] + pages


if __name__ == '__main__':
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / 'site'
    files = export(dest)
    print(f'wrote {len(files)} pages to {dest} (open {files[0]})')
