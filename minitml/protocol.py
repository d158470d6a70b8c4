"""The words that are not speech, and the events a conversation is logged as.

The monologue and the text-in slots carry one word id per position. A few ids
are not words anyone says; they are the protocol between the interaction
model, the background model and the loop (DESIGN.md "The token stream"):

    PAD      <pad>     id 0: nothing: a silent 50 ms slot, an empty text-in slot
    CALL     <call>    the model starts a request to the background model ...
    END_CALL </call>   ... and ends it; the words in between are the request
    RESULT   <result>  a background result starts arriving in the text-in slots
    FAIL     <fail>    the background call failed (instead of, or after part of, a result)

Every vocabulary starts with these five, in this order (minitml/world/vocab.txt
does). The words between CALL and END_CALL are silent too: they go to the
background model, not to the speaker.

`Event` is one line of a session's log: what happened, and when on the
session clock.
"""

from __future__ import annotations

from dataclasses import dataclass

PAD = 0  # the word id of "no word"
SPECIALS = ("<pad>", "<call>", "</call>", "<result>", "<fail>")  # ids 0..4 of every vocabulary
_, CALL, END_CALL, RESULT, FAIL = SPECIALS


def is_special(word: str) -> bool:
    """A protocol token (never spoken): "<call>", "<pad>", ... but not "call"."""
    return word in SPECIALS


@dataclass
class Event:
    kind: str  # speech_start, took_turn, backchannel, yielded, background_call,
    #            background_result, background_cancelled, background_error,
    #            deadline_miss, catch_up, error
    time: float  # seconds on the session clock (when it is heard / played)
    detail: str = ""
