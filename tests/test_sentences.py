"""Sentence cutting for streamed TTS: the right boundaries, whatever the streaming chunks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.voice.sentences import SentenceSplitter, split_all


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Hello there. How are you today?", ["Hello there.", "How are you today?"]),
        ("Pi is 3.14 roughly. Next one!", ["Pi is 3.14 roughly.", "Next one!"]),
        ("It costs $4.50 today. Ok.", ["It costs $4.50 today.", "Ok."]),
        ("Mr. Smith met Dr. Jones. Then he left.", ["Mr. Smith met Dr. Jones.", "Then he left."]),
        ("Use a verb, e.g. run. Or i.e. walk.", ["Use a verb, e.g. run.", "Or i.e. walk."]),
        ("J. R. R. Tolkien wrote books. Yes!", ["J. R. R. Tolkien wrote books.", "Yes!"]),
        ("Wait... really?! Yes.", ["Wait...", "really?!", "Yes."]),
        ('"Stop." She said.', ['"Stop."', "She said."]),
        ("First line\nSecond line", ["First line", "Second line"]),
        ("No ending yet", ["No ending yet"]),
        ("2. Second step is here. Done.", ["2. Second step is here.", "Done."]),
    ],
)
def test_boundaries(text: str, sentences: list[str]) -> None:
    assert split_all(text) == sentences


def test_sentences_come_out_as_soon_as_they_complete() -> None:
    splitter = SentenceSplitter()
    assert list(splitter.feed("Hello there")) == []
    assert list(splitter.feed(".")) == []  # the boundary waits for the next character
    assert list(splitter.feed(" How are")) == ["Hello there."]
    assert list(splitter.feed(" you?")) == []
    assert list(splitter.flush()) == ["How are you?"]
    assert list(splitter.flush()) == []


def test_a_decimal_split_across_chunks_stays_whole() -> None:
    splitter = SentenceSplitter()
    out = [*splitter.feed("It is 3."), *splitter.feed("14 wide. "), *splitter.flush()]
    assert out == ["It is 3.14 wide."]


def test_run_on_text_is_cut_at_a_comma_so_tts_can_start() -> None:
    splitter = SentenceSplitter(max_chars=40)
    text = "and then we went on, and on, and on without any stop at all for ever"
    out = [*splitter.feed(text), *splitter.flush()]
    assert all(len(s) <= 40 for s in out)
    assert " ".join(out).split() == text.split()


alphabet = st.sampled_from([*"ab .,!?\n3", "Mr.", "e.g.", "3.14", "...", '"'])


@given(st.lists(alphabet, max_size=80).map("".join), st.data())
def test_chunking_never_changes_the_cut(text: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(0, len(text)), max_size=10)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    splitter = SentenceSplitter(max_chars=30)
    streamed = [s for piece in pieces for s in splitter.feed(piece)] + list(splitter.flush())
    whole = SentenceSplitter(max_chars=30)
    assert streamed == [*whole.feed(text), *whole.flush()]
    assert "".join(streamed).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
        "\n", ""
    )
