"""Checks for the exercises at the end of each notebook.

A student writes a function; `check` runs it on a few cases and compares it with
the package's own answer. An exercise that still raises NotImplementedError is
reported as "not attempted yet" instead of failing the notebook, so every
notebook runs top to bottom before and after the exercises are done.

    def my_bitrate(cfg):
        raise NotImplementedError  # your code here

    check(my_bitrate, [((cfg.audio,), 25_600.0)])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch


def _close(got: Any, want: Any, atol: float) -> bool:
    if isinstance(want, (torch.Tensor, np.ndarray)) or isinstance(got, (torch.Tensor, np.ndarray)):
        got_t, want_t = torch.as_tensor(np.asarray(got)), torch.as_tensor(np.asarray(want))
        if got_t.shape != want_t.shape:
            return False
        return bool(torch.allclose(got_t.double(), want_t.double(), atol=atol, rtol=0))
    if isinstance(want, float) or isinstance(got, float):
        return abs(float(got) - float(want)) <= atol
    if isinstance(want, (tuple, list)) and isinstance(got, (tuple, list)):
        return len(got) == len(want) and all(_close(g, w, atol) for g, w in zip(got, want))
    return got == want


def check(fn: Callable, cases: Iterable[tuple[tuple, Any]], atol: float = 1e-6,
          name: str | None = None) -> bool | None:
    """Run `fn(*args)` for each `(args, expected)` case and print one line per case.

    Returns True when every case matches, False when one does not, and None when
    `fn` raises NotImplementedError (the exercise is not attempted yet).
    """
    name = name or getattr(fn, "__name__", "exercise")
    results = []
    for i, (args, want) in enumerate(cases):
        try:
            got = fn(*args)
        except NotImplementedError:
            print(f"{name}: not attempted yet")
            return None
        ok = _close(got, want, atol)
        results.append(ok)
        detail = "" if ok else f" (expected {_short(want)}, got {_short(got)})"
        print(f"{name} case {i}: {'correct' if ok else 'WRONG'}{detail}")
    return all(results)


def _short(x: Any) -> str:
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return f"array of shape {tuple(x.shape)}"
    text = repr(x)
    return text if len(text) < 80 else text[:77] + "..."
