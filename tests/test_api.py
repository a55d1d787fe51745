"""The package's own API (lossnotes/__init__.py, from nbs/reference/api.ipynb): its docstring, its version, and
every public tool of every tool module importable from the package."""
import importlib

import lossnotes

TOOLS = ('ema', 'lr_find', 'losscheck', 'gradtricks', 'batchnorm', 'accumulate')
MODULE_LEVEL_ONLY = {'CHECKS', 'TASKS'}  # losscheck's constants, named as module-level on the api page


def test_package_docstring_is_set():
    "The version line stands after the docstring: lossnotes.__doc__ is the page's subtitle, not None."
    assert lossnotes.__doc__ == "What `import lossnotes` gives a practitioner: the tools, torch only, no figures."


def test_version_matches_settings():
    import configparser
    from pathlib import Path
    cfg = configparser.ConfigParser(); cfg.read(Path(__file__).parent.parent / 'settings.ini')
    assert lossnotes.__version__ == cfg['DEFAULT']['version']


def test_every_public_tool_is_exported():
    "from lossnotes import steepest_lr, effective_momentum, ... : each tool module's __all__, less the two constants, exactly."
    for mod in TOOLS:
        m = importlib.import_module(f'lossnotes.{mod}')
        names = set(m.__all__) - MODULE_LEVEL_ONLY
        assert len(names) >= 2, mod
        # every name is a module-level function or class defined there: a method patched onto a class (as
        # RunningBatchNorm's convert and load_state_dict once were) must not leak into the star-import
        leaked = {n for n in names if getattr(getattr(m, n, None), '__qualname__', None) != n
                  or getattr(m, n).__module__ != m.__name__}
        assert not leaked, (mod, leaked)
        from_mod = {n for n in lossnotes.__all__ if getattr(lossnotes, n).__module__ == m.__name__}
        assert from_mod == names, (mod, names ^ from_mod)
        for n in names: assert getattr(lossnotes, n) is getattr(m, n)
    from lossnotes import effective_momentum, steepest_lr  # the two the page once promised and lacked
    assert steepest_lr.__module__ == 'lossnotes.lr_find' and effective_momentum.__module__ == 'lossnotes.batchnorm'
