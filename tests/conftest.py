"""Paths shared by the tests: the repository root and the interpreter of the project's virtual environment."""
import sys
from pathlib import Path

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
