"""Helpers shared by the notebook tests."""

from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def notebook_sources() -> list[Path]:
    """Every jupytext percent source in notebooks/ (its paired .ipynb sits beside it):
    NN_name.py, or NNx_name.py for a notebook that follows NN (04b after 04)."""
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]*_*.py"))


def code_cells(py_path: Path) -> list[str]:
    nb = jupytext.read(py_path)
    return [c.source for c in nb.cells if c.cell_type == "code"]
