"""Stop sequences cut a streamed reply wherever the deltas split them (``StopScanner``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.api.chat import StopScanner


def run(deltas: list[str], stops: list[str]) -> tuple[str, bool]:
    scanner = StopScanner(stops)
    out = "".join(scanner.feed(d) for d in deltas) + scanner.flush()
    return out, scanner.stopped


def test_a_stop_split_across_deltas_is_found() -> None:
    assert run(["Hello wo", "rld. Bye"], ["world"]) == ("Hello ", True)
    assert run(["abc", "d"], ["cd", "zz"]) == ("ab", True)


def test_without_a_stop_everything_passes_and_held_text_is_flushed() -> None:
    assert run(["Hel", "lo"], ["xyz"]) == ("Hello", False)
    assert run(["Hello"], []) == ("Hello", False)


def test_the_earliest_stop_wins() -> None:
    assert run(["one two three"], ["three", "two"]) == ("one ", True)


@given(
    st.text(alphabet="abc", max_size=30),
    st.lists(st.text(alphabet="abc", min_size=1, max_size=3), min_size=1, max_size=3),
    st.lists(st.integers(min_value=0, max_value=30), max_size=6),
)
def test_the_cut_is_the_same_however_the_text_is_split(
    text: str, stops: list[str], cuts: list[int]
) -> None:
    points = sorted({min(c, len(text)) for c in cuts})
    deltas = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    expected = (text[: min(found)], True) if found else (text, False)
    assert run(deltas, stops) == expected
