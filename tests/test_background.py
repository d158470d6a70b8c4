"""The background model and its handoff: order, exactly once, cancellation, failure, no waiting.

The interaction model is untrained; `script_monologue` makes its text channel say the
calls, so every test drives the real path: monologue -> Handoff -> worker -> text-in.
"""

import time

import pytest
import torch

from minitml.background import BackgroundModel, ContextPackage, script_monologue, weave_time
from minitml.config import get_config
from minitml.model import InteractionModel
from minitml.neural_background import WEIGHTS, NeuralBackground, load_word_gpt
from minitml.protocol import FAIL, PAD, RESULT
from minitml.session import Session
from minitml.world.tools import ToolExecutor, use_tools
from minitml.world.vocab import VOCAB


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return InteractionModel(get_config("tiny")).eval()


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Delayed(BackgroundModel):
    """Answers 'a b c' with ['a', 'b', 'c'] after delays[first word] seconds; 'stop' raises."""

    def __init__(self, delays, **kwargs):
        super().__init__(**kwargs)
        self.delays = delays

    def answer(self, package):
        if package.call[0] == "stop":
            raise RuntimeError("the tool crashed")
        self.wait(self.delays.get(package.call[0], 0.0))
        yield from package.call


def session_with(model, background, **kwargs):
    return Session(model, background=background, overrun="ignore", vocode=False,
                   **{"vocab": list(VOCAB), **kwargs})


def step_until(session, done, timeout_s=10.0, pause_s=0.01):
    """Step (back to back, with a short pause) until done() or the timeout; return the outputs."""
    outs, end = [], time.monotonic() + timeout_s
    while True:
        outs.append(session.step(torch.zeros(3200), record=True))
        if done() or time.monotonic() > end:
            return outs
        time.sleep(pause_s)


def text_in_words(session):
    """Every non-empty text-in slot the model was fed, in order."""
    return [VOCAB[i] for b in session.recorded for i in b.text_in.flatten().tolist() if i != PAD]


def events(outs, kind):
    return [e for o in outs for e in o.events if e.kind == kind]


def all_settled(session, n_calls=1):
    """n calls issued, none pending, and every result word fed to the model."""
    return lambda: (len(session.handoff.calls) >= n_calls and not session.handoff.pending
                    and not session.text_queue)


# -- the tool executor -----------------------------------------------------------------
@pytest.mark.parametrize("call, answer", [
    ("thirty seven times forty nine", "one thousand eight hundred thirteen"),
    ("ninety nine times ninety nine", "nine thousand eight hundred one"),
    ("twelve plus thirty", "forty two"),
    ("one hundred minus one", "ninety nine"),
    ("seven minus seven", "zero"),
    ("colour of a banana", "yellow"),
    ("how many legs does a spider have", "eight"),
])
def test_tools_answer_exactly(call, answer):
    assert use_tools(call.split()) == answer.split()


@pytest.mark.parametrize("call, message", [
    ("three minus five", r"result -2 cannot be said"),
    ("ninety nine times one hundred thirty", r"result 12870 cannot be said"),
    ("colour of a dog", "no tool understands"),
    ("thirty banana times two", "not a number word"),
])
def test_tools_refuse_what_they_cannot_answer(call, message):
    with pytest.raises(ValueError, match=message):
        use_tools(call.split())


# -- the handoff -------------------------------------------------------------------------
def test_results_arrive_in_call_order_exactly_once(model):
    # call 1 is slow, call 2 fast; a worker per call would finish 2 first: it still waits
    bg = Delayed({"wait": 0.4}, worker="thread")
    session = session_with(model, bg)
    script_monologue(session, "let me check <call> wait one </call> <call> quick two three </call>")
    outs = step_until(session, all_settled(session, 2))
    session.close()
    assert text_in_words(session) == [RESULT, "wait", "one", RESULT, "quick", "two", "three"]
    calls = [e.detail.split()[0] for e in events(outs, "background_call")]
    results = [e.detail.split()[0] for e in events(outs, "background_result")]
    assert calls == results == ["#1", "#2"]
    c1, c2 = session.handoff.calls
    assert c1.status == c2.status == "done" and c1.latency_ms >= 400
    assert c1.heard_by_s <= c2.heard_by_s
    # the result fills X = 2 text-in slots per micro-turn: 3 words -> 2 micro-turns
    t = c1.delivered_turn
    assert [VOCAB[i] for i in session.recorded[t].text_in.flatten().tolist()] == [RESULT, "wait"]


def test_the_context_package_holds_the_conversation(model):
    seen = []

    class Recorder(BackgroundModel):
        def answer(self, package):
            seen.append(package)
            yield "yes"

    session = session_with(model, Recorder())
    script_monologue(session, "okay let me check <call> colour of a lemon </call>")
    session.step(torch.zeros(3200), text_in="hey there")
    step_until(session, all_settled(session))
    session.close()
    (package,) = seen
    assert isinstance(package, ContextPackage)
    assert package.call == ["colour", "of", "a", "lemon"]
    assert [w for w, _ in package.monologue][:5] == ["okay", "let", "me", "check", "<call>"]
    times = [t for _, t in package.monologue]
    assert times == sorted(times) and abs(times[1] - times[0] - 0.05) < 1e-9  # one word per 50 ms slot
    assert package.text_in[:2] == ["hey", "there"]
    assert package.issued_s == package.monologue[-1][1] and package.issued_turn == 2
    assert "colour of a lemon" in str(package)


def test_a_cancelled_call_delivers_nothing(model):
    session = session_with(model, ToolExecutor(latency_s=0.4))
    script_monologue(session, "<call> two times three </call>")
    outs = step_until(session, lambda: session.handoff.calls, timeout_s=5)
    cancelled = session.cancel_background()
    assert [e.kind for e in cancelled] == ["background_cancelled"]
    time.sleep(0.6)  # the worker would have answered by now
    outs += step_until(session, lambda: False, timeout_s=0.3)
    assert text_in_words(session) == []
    assert session.handoff.calls[0].status == "cancelled"
    assert events(outs, "background_cancelled") and not events(outs, "background_result")
    # the worker is not stuck: the next call is answered
    script_monologue(session, "<call> two times four </call>")
    step_until(session, all_settled(session, 2))
    session.close()
    assert text_in_words(session) == [RESULT, "eight"]


@pytest.mark.parametrize("worker", ["thread", "process"])
def test_exception_and_timeout_deliver_fail_and_the_session_goes_on(model, worker):
    bg = Delayed({"hold": 30.0}, worker=worker, timeout_s=0.5)
    session = session_with(model, bg)
    script_monologue(session, "<call> stop </call> <call> hold on </call> <call> fine </call>")
    outs = step_until(session, all_settled(session, 3), timeout_s=15)
    session.close()
    assert text_in_words(session) == [RESULT, FAIL, RESULT, FAIL, RESULT, "fine"]
    errors = [e.detail for e in events(outs, "background_error")]
    assert any("RuntimeError: the tool crashed" in d for d in errors)
    assert any("no answer within 0.5 s" in d for d in errors)
    assert [c.status for c in session.handoff.calls] == ["failed", "timeout", "done"]


def test_the_loop_does_not_wait_for_a_slow_job(model):
    session = session_with(model, ToolExecutor(latency_s=2.0))
    script_monologue(session, "<call> six times seven </call>")
    start = time.monotonic()
    outs = step_until(session, lambda: time.monotonic() - start > 1.0, pause_s=0.0)
    assert session.handoff.calls and session.handoff.calls[0].status == "running"  # still thinking
    assert len(outs) >= 5 and max(o.compute_ms for o in outs) < 500  # steps never block for 2 s
    outs += step_until(session, all_settled(session))
    session.close()
    assert text_in_words(session) == [RESULT, "forty", "two"]
    (result,) = events(outs, "background_result")
    assert 2000 <= session.handoff.calls[0].latency_ms < 6000 and "ms after the call" in result.detail


def test_protocol_mistakes_are_events_not_crashes(model):
    session = session_with(model, ToolExecutor())
    script_monologue(session, "</call> <call> </call> <call> seven <call> colour of a frog </call>")
    outs = step_until(session, all_settled(session, 1))
    session.close()
    errors = [e.detail for e in events(outs, "background_error")]
    assert any("</call> without <call>" in d for d in errors)
    assert any("an empty call" in d for d in errors)
    assert any("a new <call> before </call>" in d for d in errors)
    assert text_in_words(session) == [RESULT, "green"]


def test_words_outside_the_vocabulary_fail(model):
    class Babbler(BackgroundModel):
        def answer(self, package):
            yield "xylophone"

    session = session_with(model, Babbler())
    script_monologue(session, "<call> something </call>")
    outs = step_until(session, all_settled(session))
    session.close()
    assert text_in_words(session) == [RESULT, FAIL]
    assert any("outside the vocabulary" in e.detail for e in events(outs, "background_error"))


def test_reset_forgets_pending_calls(model):
    session = session_with(model, ToolExecutor(latency_s=0.3))
    script_monologue(session, "<call> two plus two </call>")
    step_until(session, lambda: session.handoff.calls, timeout_s=5)
    session.reset()
    time.sleep(0.5)
    step_until(session, lambda: False, timeout_s=0.2)
    session.close()
    assert session.handoff.calls == [] and text_in_words(session) == []


def test_without_a_background_model_nothing_changes(model):
    session = Session(model, overrun="ignore", vocode=False)
    assert session.handoff is None and session.cancel_background() == []
    with pytest.raises(ValueError, match="must be a BackgroundModel"):
        Session(model, background="tools", vocab=list(VOCAB))
    with pytest.raises(ValueError, match="needs the vocabulary"):  # calls and results are words
        Session(model, background=ToolExecutor())


# -- the neural background model ------------------------------------------------------------
def test_the_neural_model_knows_the_lookups_and_abstains_instead_of_guessing():
    bg = NeuralBackground(n_samples=16, word_delay_s=0.0, worker="thread")
    assert bg.solve("colour of a banana".split()) == ["yellow"]
    assert bg.solve("legs of a spider".split()) == ["eight"]
    assert bg.solve("after twenty nine".split()) == ["thirty"]
    # two-digit multiplication is beyond it: it must not say a wrong number
    hard = bg.solve("eighty seven times sixty three".split())
    assert hard in (["five", "thousand", "four", "hundred", "eighty", "one"], [FAIL])


def test_weights_from_another_vocabulary_are_refused(tmp_path):
    ckpt = torch.load(WEIGHTS, weights_only=True)
    ckpt["vocab"] = ["<pad>", "<call>", "</call>", "<result>", "<fail>", "nought"]
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="another vocabulary: word 5 is 'nought' there and 'zero' here"):
        load_word_gpt(tmp_path / "other.pt")


def test_weave_time_waits_until_the_user_is_quiet():
    assert weave_time(2.0, []) == 2.0
    assert weave_time(2.0, [(0.5, 1.5)]) == 2.0  # quiet since 1.5: 0.5 s > 0.25 s
    assert weave_time(2.0, [(1.0, 1.9)]) == pytest.approx(2.15)  # spoke until 0.1 s ago
    assert weave_time(2.0, [(1.8, 2.6), (2.7, 3.0)]) == pytest.approx(3.25)  # two phrases
    assert weave_time(2.0, [(2.5, 3.0)]) == 2.0  # the user starts later: speak now
