from minitml.protocol import PAD, SPECIALS, TURN_S, TURN_WORDS, is_takeover, unnamed
from minitml.world.vocab import VOCAB, word_id


def test_every_vocabulary_starts_with_the_protocol_tokens():
    assert tuple(VOCAB[:len(SPECIALS)]) == SPECIALS and word_id("<pad>") == PAD == 0


def test_the_takeover_rule_is_the_benchmarks():
    assert (TURN_S, TURN_WORDS) == (1.0, 3)
    assert is_takeover(1.0, 1) and is_takeover(0.2 * 5, 0)  # 1 s as a sum of floats counts
    assert is_takeover(0.3, 4) and not is_takeover(0.99, 3)


def test_unnamed_ids_are_bracketed_like_protocol_tokens():
    assert unnamed(250) == "<unused250>" and unnamed(250).startswith("<")
