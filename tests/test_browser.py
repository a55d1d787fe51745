"""The live figures in a real browser: Voila per topic notebook and one JupyterLab session (the static site has
tests/test_site.py). Needs Debian's chromium (`apt-get install chromium`); `.ci/run` installs it."""
import dataclasses
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

import browser_driver as bd
from conftest import ROOT

sys.path.insert(0, str(ROOT / 'scripts'))
import make_site as ms  # noqa: E402  finds a notebook's explorer cell, as the static site does

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bd.CHROMIUM is None, reason='Debian chromium is missing: apt-get install chromium')]
ARTIFACTS = ROOT / 'artifacts' / 'browser'


def test_every_topic_has_a_live_figure():
    assert len(bd.TOPICS) == 5, bd.TOPICS


def explorer_notebook(nb: str, folder: Path) -> str:
    """Write into `folder` a notebook of the topic notebook's own explorer cell, after the import of its module's
    `explorer_parts` and of `explore`; returns its name. The rest of the lesson runs in the course and nbgrader tests: Voila shows only
    widgets, and the explorer is the lesson's one widget."""
    import nbformat
    cells = json.loads((ROOT / 'nbs' / nb).read_text())['cells']
    at = ms.explorer_cell(cells)[0]
    code = [f'from lossnotes.lessons.plotting import explore\nfrom {bd.module_of(nb).__name__} import explorer_parts',
            ''.join(cells[at]['source'])]
    name = f'explorer_{nb}'
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in code], metadata={
        'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}}), folder / name)
    return name


def parts_and_folder(nb: str, folder: Path) -> tuple:
    "(draw, controls, notebook name) of a topic's explorer notebook, or of a one-line reference figure, written into `folder`."
    if nb.startswith('reference'):
        fast = nb == 'reference_fast'
        return (*bd.reference_parts(fast), bd.reference_notebook(folder, fast))
    return (*bd.module_of(nb).explorer_parts(), explorer_notebook(nb, folder))


def assert_final_figure(page, draw, controls, values, figure=bd.FIGURE, wait_s: float = 15):
    """The page shows the library's readout and, within `wait_s`, the library's figure for `values`. The readout can
    arrive a moment before the last figure is shown: on a busy machine the browser decodes and lays out the image
    after the readout's text has changed."""
    assert bd.readout_text(page) == bd.expected_readout(draw, values).strip()
    shown = bd.shown_image(page, figure)
    library = bd.library_image(draw, controls, values, shown.shape)
    deadline = time.time() + wait_s
    asked = shown.shape
    while bd.differing(shown, library) >= 0.002 and time.time() < deadline:
        page.wait_for_timeout(250)
        shown = bd.shown_image(page, figure)
        if shown.shape != asked: library, asked = bd.library_image(draw, controls, values, shown.shape), shown.shape
    assert bd.differing(shown, library) < 0.002, (values, bd.differing(shown, library))
    assert bd.readout_text(page) == bd.expected_readout(draw, values).strip()  # and nothing moved on since


@pytest.mark.parametrize('nb', bd.TOPICS + ['reference_full', 'reference_fast'])
def test_voila_sliders_redraw_and_a_drag_ends_on_the_library_figure(nb, tmp_path):
    """The topic's explorer cell in Voila: each slider moved once, then a drag of 30 key presses 30 ms apart on the
    first: the page ends on the library's figure."""
    folder = bd.copy_nbs(tmp_path / 'nbs')
    draw, controls, name = parts_and_folder(nb, folder)
    values = {k: c.value for k, c in controls.items()}
    sliders = [k for k, c in controls.items() if c.kind in ('slider', 'select')]
    assert sliders, f'{nb} has no slider'
    with bd.voila(name, folder) as url, bd.browser() as page:
        bd.open_explorer(page, url)
        assert page.locator(bd.HANDLE).count() == len(sliders)
        assert_final_figure(page, draw, controls, values)  # the live figure agrees with the static one at the defaults
        for i, k in enumerate(sliders):
            values[k], key = bd.next_value(controls[k], values[k])
            bd.move_slider(page, i, key)
            page.wait_for_timeout(100)  # the readout widget updates in the same message burst as the figure
            assert bd.readout_text(page) == bd.expected_readout(draw, values).strip(), f'after moving {k}'
        first = sliders[0]
        plan = bd.drag_plan(dataclasses.replace(controls[first], value=values[first]), 30)
        values[first] = plan[-1][1]
        r = bd.drag(page, 0, plan, bd.expected_readout(draw, values))
        assert r['keys'] == 30 and r['frames'] >= 1, r  # how many: a benchmark, not a test
        assert_final_figure(page, draw, controls, values)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f'{Path(nb).stem}.png'), full_page=True)
        problems = [e for e in page.errors if re.search(r'Traceback|Exception|Error displaying|lossnotes|Uncaught', e)]
        assert not problems, problems


LAB_NB = os.environ.get('LOSSNOTES_LAB_NOTEBOOK', '03_detach_gradients.ipynb')


def test_jupyterlab_run_all_then_a_slider_and_a_drag_end_on_the_library_figure(tmp_path):
    """The README's open command: open a topic notebook and Run All; the figure is the notebook's PNG output, updated
    in place: a slider moved once changes it, and a drag of 30 key presses ends on the library's figure."""
    folder = bd.copy_nbs(tmp_path / 'nbs')
    draw, controls = bd.module_of(LAB_NB).explorer_parts()
    values = {k: c.value for k, c in controls.items()}
    first = next(k for k, c in controls.items() if c.kind in ('slider', 'select'))
    port, token = bd.free_port(), 'lossnotes-browser-test'
    cmd = ['bash', str(ROOT / 'scripts' / 'course.sh'), f'--port={port}', f'--IdentityProvider.token={token}']
    env = {'LOSSNOTES_NBS': str(folder), 'JUPYTER_CONFIG_DIR': str(tmp_path / 'cfg'),
           'JUPYTER_RUNTIME_DIR': str(tmp_path / 'rt')}
    with bd.server(cmd, port, tmp_path, env=env, ready_path=f'/api/status?token={token}', timeout=120), \
         bd.browser() as page:
        bd.lab_run_all(page, f'http://127.0.0.1:{port}', token, LAB_NB, log=tmp_path / f'server-{port}.log',
                       screenshot=ARTIFACTS / 'jupyterlab_failed.png')
        assert bd.readout_text(page) == bd.expected_readout(draw, values).strip()
        before = bd.shown_image(page, bd.LAB_FIGURE)
        values[first], key = bd.next_value(controls[first], values[first])
        bd.move_slider(page, 0, key, figure=bd.LAB_FIGURE)
        assert_final_figure(page, draw, controls, values, bd.LAB_FIGURE)
        assert bd.differing(bd.shown_image(page, bd.LAB_FIGURE), before) > 0, 'the figure did not change'
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator('.lossnotes-explorer').first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / 'jupyterlab.png'))
        plan = bd.drag_plan(dataclasses.replace(controls[first], value=values[first]), 30)
        values[first] = plan[-1][1]
        r = bd.drag(page, 0, plan, bd.expected_readout(draw, values), figure=bd.LAB_FIGURE)
        assert r['keys'] == 30 and r['frames'] >= 1, r  # how many: a benchmark, not a test
        assert_final_figure(page, draw, controls, values, bd.LAB_FIGURE)


def stored_explorer_png(nb_path: Path):
    "The first PNG output of the cell that calls `explore(` in a committed notebook, decoded, or None."
    import base64, io
    import numpy as np
    from PIL import Image
    for c in json.loads(nb_path.read_text())['cells']:
        if c['cell_type'] == 'code' and 'explore(' in ''.join(c['source']):
            for o in c.get('outputs', []):
                if 'image/png' in o.get('data', {}):
                    return np.asarray(Image.open(io.BytesIO(base64.b64decode(o['data']['image/png']))).convert('RGB'))
    return None


@pytest.mark.parametrize('nb', bd.TOPICS)
def test_committed_notebook_stores_the_explorer_figure_at_the_teaching_defaults(nb):
    "A reader without a kernel sees the figure the live explorer starts from (same pixels, give or take a few)."
    stored = stored_explorer_png(ROOT / 'nbs' / nb)
    assert stored is not None, f'{nb}: the explorer cell has no stored PNG output (execute the notebook)'
    draw, controls = bd.module_of(nb).explorer_parts()
    values = {k: c.value for k, c in controls.items()}
    # the same figure: pixels differ only where the data of a training run differ between machines (a few %)
    assert bd.differing(stored, bd.library_image(draw, controls, values, stored.shape)) < 0.2
