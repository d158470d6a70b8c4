"""The words that are not speech, and the events a conversation is logged as.

The monologue and the text-in slots carry one word id per position. A few ids
are not words anyone says; they are the protocol between the interaction
model, the background model and the loop (minitml/stream.py lays out the stream):

    PAD      <pad>     id 0: nothing: a silent 50 ms slot, an empty text-in slot
    CALL     <call>    the model starts a request to the background model ...
    END_CALL </call>   ... and ends it; the words in between are the request
    RESULT   <result>  a background result starts arriving in the text-in slots
    FAIL     <fail>    the background call failed (instead of, or after part of, a result)

Every vocabulary starts with these five, in this order (minitml/world/vocab.txt
does). The words between CALL and END_CALL are silent too: they go to the
background model, not to the speaker.

`is_takeover` is the benchmark's rule for what a stretch of speech was (the
session's events and the metrics both use it); `Event` is one line of a
session's log: what happened, and when on the session clock.
"""

from __future__ import annotations

from dataclasses import dataclass

PAD = 0  # the word id of "no word"
SPECIALS = ("<pad>", "<call>", "</call>", "<result>", "<fail>")  # ids 0..4 of every vocabulary
_, CALL, END_CALL, RESULT, FAIL = SPECIALS


def unnamed(word_id: int) -> str:
    """The name of an id past the end of the vocabulary (an untrained model says them):
    "<unused250>", bracketed like a protocol token, so it is never spoken either."""
    return f"<unused{word_id}>"


# Full-Duplex-Bench's rule for what a stretch of speech was: a takeover lasts at least
# TURN_S from its first word's start to its last word's end, or has more than TURN_WORDS
# words; anything shorter is a backchannel. The session's events and the metrics share it.
TURN_S, TURN_WORDS = 1.0, 3


def is_takeover(duration_s: float, n_words: int) -> bool:
    """The benchmark's rule (TURN_S, TURN_WORDS); durations are sums of floats, so 1 s
    counts with a margin far below one 50 ms slot."""
    return duration_s >= TURN_S - 1e-6 or n_words > TURN_WORDS


@dataclass
class Event:
    kind: str  # speech_start, took_turn, backchannel, yielded, background_call,
    #            background_result, background_cancelled, background_error,
    #            deadline_miss, catch_up, error
    time: float  # seconds on the session clock (when it is heard / played)
    detail: str = ""
