"""The live figures in a real browser: Voila per topic notebook, one JupyterLab session, and the static HTML
pages opened offline. Needs Debian's chromium (`apt-get install chromium`); `.ci/run` installs it."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import browser_driver as bd
from conftest import PY, ROOT
from lossnotes.course.build import course_notebooks

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bd.CHROMIUM is None, reason='Debian chromium is missing: apt-get install chromium')]
ARTIFACTS = ROOT / 'artifacts' / 'browser'


def test_every_topic_has_a_live_figure():
    assert len(bd.TOPICS) == 5, bd.TOPICS


@pytest.mark.parametrize('nb', bd.TOPICS)
def test_voila_sliders_redraw_and_agree_with_the_library(nb, tmp_path):
    draw, controls = bd.module_of(nb).explorer_parts()
    values = {k: c.value for k, c in controls.items()}
    sliders = [k for k, c in controls.items() if c.kind in ('slider', 'select')]
    assert sliders, f'{nb} has no slider'
    folder = bd.copy_nbs(tmp_path / 'nbs')
    with bd.voila(nb, folder) as url, bd.browser() as page:
        bd.open_explorer(page, url)
        assert page.locator('.lossnotes-explorer .noUi-handle').count() == len(sliders)
        assert bd.readout_text(page) == bd.expected_readout(draw, values)
        for i, name in enumerate(sliders):
            values[name], key = bd.next_value(controls[name], values[name])
            bd.move_slider(page, i, key)
            page.wait_for_timeout(100)  # the readout widget updates in the same message burst as the figure
            assert bd.readout_text(page) == bd.expected_readout(draw, values), f'after moving {name}'
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f'{Path(nb).stem}.png'), full_page=True)
        problems = [e for e in page.errors if re.search(r'Traceback|Exception|Error displaying|lossnotes|Uncaught', e)]
        assert not problems, problems


LAB_NB = os.environ.get('LOSSNOTES_LAB_NOTEBOOK', '03_detach_gradients.ipynb')


def test_jupyterlab_run_all_then_slider_redraws(tmp_path):
    "The README's open command: open a topic notebook, Run All, move a slider, see the figure change."
    folder = bd.copy_nbs(tmp_path / 'nbs')
    port, token = bd.free_port(), 'lossnotes-browser-test'
    cmd = ['bash', str(ROOT / 'scripts' / 'course.sh'), f'--port={port}', f'--IdentityProvider.token={token}']
    env = {'LOSSNOTES_NBS': str(folder), 'JUPYTER_CONFIG_DIR': str(tmp_path / 'cfg'),
           'JUPYTER_RUNTIME_DIR': str(tmp_path / 'rt')}
    with bd.server(cmd, port, tmp_path, env=env, ready_path=f'/api/status?token={token}', timeout=120), \
         bd.browser() as page:
        page.goto(f'http://127.0.0.1:{port}/lab/tree/{LAB_NB}?token={token}', timeout=120000)
        page.wait_for_selector('.jp-Notebook', timeout=120000)
        page.wait_for_function("() => /Idle/.test(document.querySelector('#jp-main-statusbar')?.innerText || '')",
                               timeout=120000)
        page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
        page.locator('.lm-Menu-itemLabel', has_text='Run All Cells').first.click()
        page.wait_for_selector('.lossnotes-explorer .noUi-handle', timeout=240000)
        page.wait_for_function("() => /Idle/.test(document.querySelector('#jp-main-statusbar')?.innerText || '')",
                               timeout=240000)
        imgs = "() => Array.from(document.querySelectorAll('.jp-OutputArea-output img')).map(i => i.src).join('|')"
        before = page.evaluate(imgs)
        page.locator('.lossnotes-explorer .noUi-handle').first.focus()
        page.keyboard.press('ArrowRight')
        page.wait_for_function(f"b => ({imgs})() !== b", arg=before, timeout=30000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator('.lossnotes-explorer').first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / 'jupyterlab.png'))


def test_static_html_shows_every_figure_offline(tmp_path):
    "The exported pages show every stored figure with the network blocked (no kernel, no CDN)."
    subprocess.run([PY, str(ROOT / 'scripts' / 'export_html.py'), str(tmp_path / 'site')], check=True,
                   capture_output=True)
    with bd.browser() as page:
        page.route(re.compile(r'^https?://'), lambda route: route.abort())
        for nb_path in course_notebooks(ROOT / 'nbs'):
            stored = sum('image/png' in o.get('data', {}) for c in json.loads(nb_path.read_text())['cells']
                         for o in c.get('outputs', []))
            page.goto((tmp_path / 'site' / f'{nb_path.stem}.html').as_uri())
            shown = page.evaluate("() => Array.from(document.querySelectorAll('img[src^=\"data:image/png\"]'))"
                                  ".filter(i => i.complete && i.naturalWidth > 0).length")
            assert shown == stored, f'{nb_path.name}: {shown} of {stored} figures visible'
            if nb_path.name[:2] in {'01', '02', '03', '04', '05'}: assert stored >= 1
        page.goto((tmp_path / 'site' / 'contents.html').as_uri())
        assert page.locator('a').count() == len(list((ROOT / 'nbs').glob('*.ipynb')))
