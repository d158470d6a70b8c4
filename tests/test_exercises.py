"""The exercise checks accept right answers and reject wrong ones.

For each notebook with a solutions file, the notebook's code runs in this process
with every `my_*` function replaced by its solution as soon as it is defined; every
`check(...)` in the notebook must then report success.
"""

import ast
import importlib.util
import os

import matplotlib
import pytest
import torch
from notebook_tools import NOTEBOOKS, code_cells, notebook_sources

import minitml.exercises as exercises
from minitml.exercises import check

matplotlib.use("Agg")


def test_check_reports_correct_wrong_and_not_attempted(capsys):
    def right(x):
        return 2 * x

    def wrong(x):
        return 2 * x + 1

    def todo(x):
        raise NotImplementedError

    cases = [((1,), 2), ((torch.tensor([1.0, 2.0]),), torch.tensor([2.0, 4.0]))]
    assert check(right, cases) is True
    assert check(wrong, cases) is False
    assert check(todo, cases) is None
    out = capsys.readouterr().out
    assert "WRONG" in out and "not attempted yet" in out
    assert check(lambda: torch.zeros(2), [((), torch.zeros(3))]) is False  # shape differs


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WITH_SOLUTIONS = [p for p in notebook_sources() if (NOTEBOOKS / "solutions" / p.name).exists()]


def test_every_notebook_has_solutions():
    assert {p.stem for p in WITH_SOLUTIONS} == {p.stem for p in notebook_sources()}


@pytest.mark.parametrize("source", WITH_SOLUTIONS, ids=lambda p: p.stem)
def test_solutions_pass_the_notebook_checks(source, monkeypatch):
    monkeypatch.setenv("MINITML_FAST", "1")
    monkeypatch.chdir(NOTEBOOKS)
    solutions = _load(NOTEBOOKS / "solutions" / source.name)
    results = []

    def recording_check(*args, **kwargs):
        results.append(check(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(exercises, "check", recording_check)
    namespace = {"__name__": "__notebook__"}
    replaced = set()
    threads = torch.get_num_threads()  # a notebook may change it; later tests must not see that
    for cell in code_cells(source):
        lines = [ln for ln in cell.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        tree = ast.parse("\n".join(lines))
        for node in tree.body:  # one statement at a time, so a def can be swapped in
            exec(compile(ast.Module([node], []), str(source), "exec"), namespace)
            if isinstance(node, ast.FunctionDef) and node.name.startswith("my_"):
                namespace[node.name] = getattr(solutions, node.name)
                replaced.add(node.name)
    matplotlib.pyplot.close("all")
    torch.set_num_threads(threads)
    assert replaced, "the notebook defines no my_* exercise functions"
    assert results and all(r is True for r in results), results
    assert os.environ["MINITML_FAST"] == "1"
