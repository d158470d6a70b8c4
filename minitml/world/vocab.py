"""The word vocabulary of the toy world: every word anyone in it can say or type.

The monologue (what the assistant says, as text) and the text-in slots (tool
results, typed text) carry one *word id* per position. The ids come from
`vocab.txt` next to this file: one word per line, id = line number (from 0).

    VOCAB[0]                    # "<pad>": silence, an empty slot (= minitml.stream.PAD)
    word_id("Green,")           # normalised to "green", then looked up
    ids("it is green now")      # [.., .., .., ..]
    number_words(1813)          # ["one", "thousand", "eight", "hundred", "thirteen"]

The first lines are special tokens that are never spoken:

    <pad>      nothing: a silent 50 ms slot, an empty text-in slot
    <call>     the assistant starts a call to the background model ...
    </call>    ... and ends it; the words in between are the request
    <result>   a background result starts arriving in the text-in slots
    <fail>     the background call failed (instead of a result)

Then the number words (numbers are always spelled out, so 0..9999 need only 30
words), then every other word in alphabetical order. The tests generate every
template of `facts.py` and check that each word is here and that the whole
list fits the tiny preset's `text_vocab_size` (256). To add a template with a
new word, add the word at the end of this file's list: ids never move, so old
checkpoints stay valid.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

from minitml.protocol import PAD, SPECIALS

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()

VOCAB_FILE = Path(__file__).with_name("vocab.txt")
VOCAB: list[str] = [w.strip() for w in VOCAB_FILE.read_text().splitlines() if w.strip()]
_IDS = {w: i for i, w in enumerate(VOCAB)}

if tuple(VOCAB[:len(SPECIALS)]) != SPECIALS or _IDS["<pad>"] != PAD:
    raise RuntimeError(f"{VOCAB_FILE} must start with the protocol tokens {SPECIALS} (minitml/protocol.py), "
                       f"it starts with {VOCAB[:len(SPECIALS)]}")
if len(_IDS) != len(VOCAB):
    raise RuntimeError(f"{VOCAB_FILE} lists a word twice")


def normalize(word: str) -> str:
    """Lower case, punctuation stripped at both ends: "Green," -> "green", "uh-huh." -> "uh-huh".

    Special tokens ("<call>") stay as they are; inner hyphens stay ("uh-huh").
    """
    w = word.strip().lower()
    if w.startswith("<") and w.endswith(">"):
        return w
    return w.strip(string.punctuation)


def tokenize(text: str) -> list[str]:
    """Split a sentence into normalised words, the way the vocabulary counts them."""
    return [w for w in (normalize(t) for t in text.split()) if w]


def word_id(word: str) -> int:
    """The id of one word (normalised first). Unknown words raise ValueError naming the word."""
    w = normalize(word)
    if w not in _IDS:
        raise ValueError(f"the word {w!r} (from {word!r}) is not in the toy-world vocabulary "
                         f"({len(VOCAB)} words in {VOCAB_FILE.name}); add it at the end of that file")
    return _IDS[w]


def ids(text: str | Iterable[str]) -> list[int]:
    """Word ids of a sentence ("it is green now") or of a list of words."""
    words = tokenize(text) if isinstance(text, str) else [normalize(w) for w in text]
    return [word_id(w) for w in words if w]


def words_of(id_list: Iterable[int]) -> list[str]:
    """The words of a list of ids (the inverse of `ids`)."""
    return [VOCAB[int(i)] for i in id_list]


def number_words(n: int) -> list[str]:
    """Spell 0..9999 as words, American style (no "and"): 1813 -> one thousand eight hundred thirteen."""
    if not 0 <= n <= 9999 or int(n) != n:
        raise ValueError(f"number_words spells whole numbers 0..9999, got {n!r}")
    n = int(n)
    if n < 20:
        return [_ONES[n]]
    words: list[str] = []
    thousands, rest = divmod(n, 1000)
    hundreds, rest = divmod(rest, 100)
    if thousands:
        words += [_ONES[thousands], "thousand"]
    if hundreds:
        words += [_ONES[hundreds], "hundred"]
    if rest >= 20:
        words.append(_TENS[rest // 10])
        rest %= 10
        if rest:
            words.append(_ONES[rest])
    elif rest:
        words.append(_ONES[rest])
    return words


def spell(n: int) -> str:
    """number_words as one string: spell(37) -> "thirty seven"."""
    return " ".join(number_words(n))


def parse_number(words: Iterable[str]) -> int:
    """The inverse of number_words: ["thirty", "seven"] -> 37. Raises ValueError otherwise."""
    total, part = 0, 0
    seen = False
    for w in words:
        w = normalize(w)
        if w in _ONES:
            part += _ONES.index(w)
        elif w in _TENS[2:]:
            part += 10 * _TENS.index(w)
        elif w == "hundred":
            part *= 100
        elif w == "thousand":
            total, part = total + part * 1000, 0
        else:
            raise ValueError(f"{w!r} is not a number word")
        seen = True
    if not seen:
        raise ValueError("parse_number needs at least one number word")
    return total + part
