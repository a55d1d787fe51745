"""A figure needs an extra: without it the error names the extra to install, not a bare ModuleNotFoundError."""
import sys

import pytest
import torch

from lossnotes.lr_find import LRFinderResult, lr_range_test


def _result():
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    x, y = torch.randn(32, 2), torch.randn(32, 1)
    data = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)]
    return lr_range_test(model, torch.nn.functional.mse_loss, data, num_it=20, progress=False)


def test_lr_finder_plot_names_the_viz_extra(monkeypatch):
    res = _result()
    assert isinstance(res, LRFinderResult)
    for mod in [m for m in list(sys.modules) if m == 'matplotlib' or m.startswith('matplotlib.')]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, 'matplotlib', None)  # import matplotlib now raises ImportError
    monkeypatch.setitem(sys.modules, 'matplotlib.pyplot', None)
    with pytest.raises(ImportError, match=r'matplotlib\.pyplot is needed here but is not installed: '
                                          r'pip install "lossnotes\[viz\]"'):
        res.plot()
