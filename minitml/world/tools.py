"""The toy world's tools, and the background model that answers with them.

A tool reads the words of a request (what the interaction model said between
`<call>` and `</call>`) and returns the answer's words, or None when the request
is not for it:

    arithmetic(["thirty", "seven", "times", "forty", "nine"])   # ["one", "thousand", ...]
    colour_of(["colour", "of", "a", "banana"])                  # ["yellow"]
    legs_of(["legs", "of", "a", "spider"])                      # ["eight"]

`ToolExecutor` is a `minitml.background.BackgroundModel` that runs them, with an
artificial latency to show slow and fast tools:

    session = Session(model, vocab=VOCAB, background=ToolExecutor(latency_s=1.0))
"""

from __future__ import annotations

from collections.abc import Iterator

from minitml.background import BackgroundModel, ContextPackage
from minitml.world.facts import ANIMAL_LEGS, THING_COLOURS
from minitml.world.vocab import number_words, parse_number


def arithmetic(words: list[str]) -> list[str] | None:
    """'thirty seven times forty nine' -> ['one', 'thousand', 'eight', 'hundred', 'thirteen']."""
    ops = {"times": lambda a, b: a * b, "plus": lambda a, b: a + b, "minus": lambda a, b: a - b}
    found = [i for i, w in enumerate(words) if w in ops]
    if len(found) != 1:
        return None
    i = found[0]
    a, b = parse_number(words[:i]), parse_number(words[i + 1:])  # ValueError: not number words
    r = ops[words[i]](a, b)
    if not 0 <= r <= 9999:
        raise ValueError(f"the result {r} cannot be said in number words (0..9999)")
    return number_words(r)


def colour_of(words: list[str]) -> list[str] | None:
    """'colour of a banana' -> ['yellow'] (THING_COLOURS of the toy world)."""
    things = [w for w in words if w in THING_COLOURS]
    return [THING_COLOURS[things[0]]] if "colour" in words and things else None


def legs_of(words: list[str]) -> list[str] | None:
    """'legs of a spider' -> ['eight'] (ANIMAL_LEGS of the toy world)."""
    animals = [w for w in words if w in ANIMAL_LEGS]
    return number_words(ANIMAL_LEGS[animals[0]]) if "legs" in words and animals else None


TOOLS = (arithmetic, colour_of, legs_of)


def use_tools(words: list[str], tools=TOOLS) -> list[str]:
    """The first tool that understands the request answers it; none does: ValueError."""
    for tool in tools:
        answer = tool(list(words))
        if answer is not None:
            return answer
    names = ", ".join(getattr(t, "__name__", "?") for t in tools)
    raise ValueError(f"no tool understands {' '.join(words)!r} (tools: {names})")



class ToolExecutor(BackgroundModel):
    """Exact answers from tools, after `latency_s` (a slow or fast tool), `word_delay_s` per word."""

    def __init__(self, tools=TOOLS, latency_s: float = 0.0, word_delay_s: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.tools, self.latency_s, self.word_delay_s = tuple(tools), latency_s, word_delay_s

    def answer(self, package: ContextPackage) -> Iterator[str]:
        self.wait(self.latency_s)
        for i, word in enumerate(use_tools(package.call, self.tools)):
            if i:
                self.wait(self.word_delay_s)
            yield word
