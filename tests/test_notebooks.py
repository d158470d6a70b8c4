"""Every notebook is paired with its .ipynb and runs top to bottom.

The test suite runs them in fast mode (MINITML_FAST=1 shrinks sizes); run
`MINITML_FAST=0 pytest tests/test_notebooks.py` to execute them in full.
"""

import os

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient
from notebook_tools import NOTEBOOKS, notebook_sources


def test_there_are_notebooks():
    names = [p.stem for p in notebook_sources()]
    for expected in ("01_dmel", "02_patches", "03_moe"):
        assert expected in names


def test_every_ipynb_has_a_source():
    for ipynb in NOTEBOOKS.glob("*.ipynb"):
        assert ipynb.with_suffix(".py").exists(), f"{ipynb.name} has no jupytext .py source"


@pytest.mark.parametrize("source", notebook_sources(), ids=lambda p: p.stem)
def test_pair_in_sync_and_without_outputs(source):
    ipynb = source.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `jupytext --sync {source}`"
    from_py = jupytext.read(source)
    committed = nbformat.read(ipynb, as_version=4)
    pairs = list(zip(from_py.cells, committed.cells))
    assert len(from_py.cells) == len(committed.cells), (
        f"{source.name} and {ipynb.name} differ in cell count: run `jupytext --sync {source}`"
    )
    for i, (a, b) in enumerate(pairs):
        assert a.cell_type == b.cell_type and a.source == b.source, (
            f"cell {i} of {ipynb.name} is out of sync with {source.name}: "
            f"run `jupytext --sync {source}`"
        )
        if b.cell_type == "code":
            assert not b.outputs and b.execution_count is None, (
                f"cell {i} of {ipynb.name} has outputs; commit notebooks without outputs"
            )


@pytest.mark.parametrize("source", notebook_sources(), ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(source, monkeypatch):
    monkeypatch.setenv("MINITML_FAST", os.environ.get("MINITML_FAST", "1"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
