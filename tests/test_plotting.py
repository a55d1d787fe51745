"""The live-figure machinery of lossnotes.lessons.plotting: the fast path (`live`) against full drawings, every
lesson's explorer swept through its controls, the widgets' behaviour without a browser, and no test switches read
from the environment."""
import io
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import browser_driver as bd  # noqa: E402
from lossnotes.lessons.plotting import Explorer, Readout, explore, figure_png, live, new_figure, slider, toggle  # noqa: E402
from lossnotes.lessons.plotting import _legend_at_best, _place, _titles  # noqa: E402


def decode(png: bytes) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(png)).convert('RGB'))


def counting(fast: bool):
    "A one-line figure that counts its full drawings and updates."
    calls = dict(draw=0, update=0)
    x = np.linspace(0, 1, 50)
    def draw(fig, a=1.0, show=True):
        calls['draw'] += 1
        ax = fig.subplots()
        line, = ax.plot(x, 0 * x, label='a x')
        ax.set(xlabel='x', ylabel='y', ylim=(-0.1, 2.1)); ax.legend(loc='upper left')
        def update(a, show):
            calls['update'] += 1
            line.set_ydata(a * x); line.set_visible(show)
            return f'a = {a:.2f}'
        return live(update(a, show), update, [line]) if fast else update(a, show)
    return draw, dict(a=slider(1.0, 0.0, 2.0, 0.1), show=toggle(True)), calls


def test_the_private_matplotlib_names_the_fast_path_reads_still_mean_what_it_needs():
    "The only private matplotlib API the live figures use sits in these three functions: a change in matplotlib fails here."
    fig = new_figure(); ax = fig.subplots(); ax.plot([0, 1], label='a')
    for loc, text in [('center', 'C'), ('left', 'L'), ('right', 'R')]: ax.set_title(text, loc=loc)
    assert [t.get_text() for t in _titles(ax)] == ['C', 'L', 'R']
    assert [t.get_text() for t in _titles(ax)] == [ax.get_title(loc) for loc in ('center', 'left', 'right')]
    assert all(any(t is c for c in ax.get_children()) for t in _titles(ax))  # drawn by Axes.draw with the children
    assert _legend_at_best(ax.legend()) and _legend_at_best(ax.legend(loc='best')) and _legend_at_best(ax.legend(loc=0))
    assert not _legend_at_best(ax.legend(loc='upper right')) and not _legend_at_best(ax.legend(loc=(0.5, 0.5)))
    assert not _legend_at_best(ax.title)
    fig.set_layout_engine('constrained')
    _place(ax, [0.3, 0.3, 0.4, 0.4])
    assert ax.get_in_layout() and np.allclose(ax.get_position().bounds, [0.3, 0.3, 0.4, 0.4])
    fig.get_layout_engine().execute(fig)  # still laid out: the layout moves it back to fill the figure
    assert ax.get_position().x0 < 0.2 and ax.get_position().width > 0.6


def test_live_returns_a_string_that_carries_the_fast_path():
    fig = new_figure(); line, = fig.subplots().plot([0, 1])
    r = live('loss: 0.5', lambda **v: '', [line], redraw_on='beta')
    assert isinstance(r, Readout) and r == 'loss: 0.5' and type(str(r)) is str and r.split(': ') == ['loss', '0.5']
    assert r.artists == (line,) and r.redraw_on == frozenset({'beta'})
    with pytest.raises(TypeError, match="update must be callable, got 3"): live('', 3, [line])
    with pytest.raises(ValueError, match=r"artists must name at least one artist that update changes, got \(\)"):
        live('', print, [])
    with pytest.raises(ValueError, match='artists must belong to an axes'): live('', print, [object()])


def test_a_move_on_the_fast_path_updates_in_place_and_matches_a_full_drawing():
    draw, controls, calls = counting(fast=True)
    ex = Explorer(draw, controls)
    ex.render(); ex.png()
    for a in (0.3, 1.7, 2.0):
        assert ex.step(a=a) == f'a = {a:.2f}'
        full = Explorer(*counting(fast=False)[:2]); full.render(a=a)
        assert np.array_equal(ex.frame()[..., :3], decode(figure_png(full.fig)))  # savefig, no blitting at all
    assert (calls['draw'], ex.counts) == (1, dict(draw=1, update=3, background=1))
    ex.step(show=False)
    assert not ex.fig.axes[0].get_lines()[0].get_visible() and ex.counts['draw'] == 1
    assert ex.values == {'a': 1.0, 'show': True}  # step's changes apply to that drawing only
    assert ex.step() == 'a = 1.00' and ex.counts['update'] == 5


def test_a_plain_readout_draws_the_whole_figure_on_every_move():
    draw, controls, calls = counting(fast=False)
    ex = Explorer(draw, controls)
    ex.render()
    ex.step(a=0.5); ex.step(a=0.5); ex.step(a=0.7)
    assert calls['draw'] == 3 and ex.counts == dict(draw=3, update=0, background=0)  # an unchanged value draws nothing


def test_redraw_on_and_moved_limits_fall_back_to_full_or_background_drawing():
    x = np.arange(5.)
    def draw(fig, k=1.0, log=False):
        ax = fig.subplots(); ax.set_yscale('log' if log else 'linear')
        line, = ax.plot(x, x + 1)
        def update(k, log):
            line.set_ydata((x + 1) * k)
            ax.set_ylim(0.5, 6 * k)  # moves with k: the tick labels change
            return ''
        return live(update(k, log), update, [line], redraw_on=['log'])
    ex = Explorer(draw, dict(k=slider(1.0, options=[1.0, 10.0, 100.0]), log=toggle(False)))
    assert ex.sweep(compare=True) == 0
    # back at log=False the first drawing is updated; one background per limit (3) at log=False, one at log=True
    assert ex.counts['draw'] == 2 and ex.counts['background'] == 4
    labels = [t.get_text() for t in ex.fig.axes[0].get_yticklabels()]
    assert ex.step(k=100.0) == '' and [t.get_text() for t in ex.fig.axes[0].get_yticklabels()] != labels


def test_a_return_to_earlier_values_reuses_the_drawing_and_its_background():
    x = np.arange(5.)
    calls = {'draw': 0}
    def draw(fig, k=1.0, log=False):
        calls['draw'] += 1
        ax = fig.subplots(); ax.set_yscale('log' if log else 'linear')
        line, = ax.plot(x, x + 1)
        def update(k, log):
            line.set_ydata((x + 1) * k); ax.set_ylim(0.5, 6 * k)
            return f'k={k} log={log}'
        return live(update(k, log), update, [line], redraw_on=['log'])
    ex = Explorer(draw, dict(k=slider(1.0, options=[1.0, 10.0]), log=toggle(False)))
    ex.render(); ex.frame()
    first = ex.fig
    moves = [dict(k=10.0), dict(k=1.0), dict(log=True), dict(k=10.0), dict(log=False), dict(k=1.0), dict(log=True)]
    for m in moves:
        ex.values.update(m)
        assert ex.step() == f"k={ex.values['k']} log={ex.values['log']}"
        img = np.asarray(ex.frame())[..., :3].copy()
        ref = Explorer(draw, ex.controls); ref.render(**ex.values)
        assert np.array_equal(img, np.asarray(ref.frame())[..., :3]), m
        calls['draw'] -= 1  # the reference's own drawing
    assert ex.fig is not first  # log=True is a drawing of its own
    # two drawings (log False, True) and four backgrounds (two limits each): every later frame reuses them
    assert calls['draw'] == 2 and ex.counts == dict(draw=2, update=6, background=4)


def test_a_still_artist_above_the_moving_ones_stays_in_the_background_until_they_touch_it():
    def draw(fig, y=0.1):
        ax = fig.subplots(); ax.set_xlim(0, 1); ax.set_ylim(0, 1)
        line, = ax.plot([0.1, 0.9], [y, y], lw=2, label='moving line')
        ax.legend(loc='upper right')
        for s in ax.spines.values(): s.set_visible(False)
        def update(y):
            line.set_ydata([y, y])
            return f'y={y}'
        return live(update(y), update, [line])
    ex = Explorer(draw, dict(y=slider(0.1, options=[0.1, 0.2, 0.95])))
    ex.render(); ex.frame()
    legend = ex.fig.axes[0].get_legend()
    assert legend not in ex._layers[ex.fig.axes[0]]  # far from the line: drawn once, in the background
    ex.step(y=0.2); ex.frame()
    assert legend not in ex._layers[ex.fig.axes[0]] and ex.counts['background'] == 1
    ex.step(y=0.95); ex.frame()  # the line runs under the legend: the legend is drawn over it on every frame
    assert legend in ex._layers[ex.fig.axes[0]] and ex.counts['background'] == 2
    assert ex.sweep(compare=True) == 0


def test_an_update_that_changes_the_layout_before_the_first_frame_gets_the_new_layout():
    def draw(fig, n=1):
        ax = fig.subplots(); line, = ax.plot([0, 1], [0, 1])
        def update(n):
            ax.set_ylabel('y' * n * 10)  # a longer label: a wider left margin
            line.set_ydata([0, n / 10])
            return ''
        return live(update(n), update, [line])
    ex = Explorer(draw, dict(n=slider(1, options=[1, 5])))
    ex.render()
    ex.step(n=5)  # no frame was drawn at n=1
    ref = Explorer(draw, ex.controls); ref.render(n=5)
    assert np.array_equal(np.asarray(ex.frame()), np.asarray(ref.frame()))


def test_sweep_compare_catches_an_update_that_disagrees_with_draw():
    def draw(fig, n=1):
        line, = fig.subplots().plot([0, 1], [0, n]); fig.axes[0].set_ylim(0, 10)
        return live('', lambda n: '', [line])  # forgets to move the line
    with pytest.raises(AssertionError, match='n=6: the fast frame differs from a full drawing'):
        Explorer(draw, dict(n=slider(1, 1, 10))).sweep(compare=True)


def test_show_reads_no_test_switch_from_the_environment(monkeypatch):
    monkeypatch.setenv('IN_TEST', '1'); monkeypatch.setenv('LOSSNOTES_SWEEP_EXPLORERS', '1')
    draw, controls, calls = counting(fast=True)
    ex = explore(draw, **controls)
    # one drawing; `prepare` visits show=False and comes back (two updates, its frames not counted), so the
    # static figure at the defaults reuses a stored background
    assert calls == dict(draw=1, update=3) and ex.counts == dict(draw=1, update=0, background=0)


@pytest.mark.parametrize('fast', [False, True])
def test_widgets_follow_the_slider_and_return_to_the_static_figure(fast):
    "The live image (Voila's) at the defaults is the static PNG, after moving away and back; sliders are continuous."
    draw, controls, calls = counting(fast)
    ex = Explorer(draw, controls).show(voila=True)
    static = decode(ex._image.value)
    assert all(w.continuous_update for k, w in ex.widgets.items() if k == 'a')
    ex.widgets['a'].value = 0.4
    assert ex.readout == 'a = 0.40' and not np.array_equal(decode(ex._image.value), static)
    assert ex._text.value == '<pre class="lossnotes-readout">a = 0.40</pre>'
    ex.widgets['a'].value = 1.0
    assert np.array_equal(decode(ex._image.value), static)
    assert calls['draw'] == (1 if fast else 3)


def test_an_error_in_update_shows_in_the_readout_and_is_raised():
    def draw(fig, n=1):
        line, = fig.subplots().plot([0, 1])
        def update(n):
            if n > 2: raise ZeroDivisionError('boom at n > 2')
            return f'n = {n}'
        return live(update(n), update, [line])
    ex = Explorer(draw, dict(n=slider(1, 1, 5))).show(voila=True)
    with pytest.raises(ZeroDivisionError, match='boom'): ex.widgets['n'].value = 3
    assert 'ZeroDivisionError: boom at n &gt; 2' in ex._text.value


def test_in_jupyter_an_error_in_update_shows_under_the_figure(monkeypatch):
    "Without Voila the readout is an HTML output under the PNG: an exception in a move is shown there, then raised."
    shown = []
    import IPython.display
    class Handle:
        def __init__(self, obj): shown.append(obj)
        def update(self, obj): shown.append(obj)
    monkeypatch.setattr(IPython.display, 'display', lambda obj, display_id=False: Handle(obj) if display_id else None)
    def draw(fig, n=1):
        line, = fig.subplots().plot([0, 1])
        def update(n):
            if n > 2: raise ZeroDivisionError('boom at n > 2')
            return ''  # no readout at all: the error still has a place
        return live(update(n), update, [line])
    ex = Explorer(draw, dict(n=slider(1, 1, 5))).show(voila=False)
    ex.widgets['n'].value = 2
    assert isinstance(shown[-2], IPython.display.Image) and shown[-1].data == '<pre class="lossnotes-readout"></pre>'
    with pytest.raises(ZeroDivisionError, match='boom'): ex.widgets['n'].value = 3
    assert 'ZeroDivisionError: boom at n &gt; 2' in shown[-1].data


@pytest.mark.parametrize('nb', bd.TOPICS)
def test_after_prepare_a_first_visit_to_any_slider_stop_draws_no_background(nb):
    "What `show` prepares: every value of a few-valued control that needs no whole drawing has its background stored."
    draw, controls = bd.module_of(nb).explorer_parts()
    ex = Explorer(draw, controls)
    ex.render()
    assert ex.prepare() >= 0 and ex.counts == dict(draw=1, update=0, background=0)  # its frames are not counted
    finite = [k for k, c in controls.items() if c.kind in ('select', 'choice', 'toggle') and k not in ex._fast.redraw_on]
    assert finite, nb
    for k in finite:
        for v in controls[k].values():
            ex.step(**{k: v}); ex.frame()
    assert ex.counts['draw'] == 1 and ex.counts['background'] == 0, ex.counts


@pytest.mark.slow  # 2-12 s per lesson: the explorers' data, then a full drawing per value
@pytest.mark.parametrize('nb', bd.TOPICS)
def test_every_lesson_explorer_draws_at_every_control_value(nb):
    "What a learner can reach with the controls draws without error; a fast path agrees with full drawings."
    draw, controls = bd.module_of(nb).explorer_parts()
    ex = Explorer(draw, controls)
    defaults = ex.render()
    assert defaults == bd.expected_readout(draw, {k: c.value for k, c in controls.items()})
    ex.sweep(compare=isinstance(draw(new_figure(), **ex.values), Readout))
    assert ex.step() == defaults  # back at the teaching defaults
