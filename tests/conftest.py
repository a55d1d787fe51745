"""Paths shared by the tests: the repository root and the interpreter of the project's virtual environment."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

