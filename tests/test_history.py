"""The bounded conversation history: the system prompt stays, old turns go, memory stays flat."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.voice.history import IMAGE_TOKENS, History, estimate_tokens
from services.vision import Image


def test_system_prompt_first_and_turns_in_order() -> None:
    history = History("You are a patient tutor.")
    history.add("user", "What is 2 + 2?")
    history.add("assistant", "Four.")
    assert history.messages() == [
        {"role": "system", "content": "You are a patient tutor."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "Four."},
    ]


def test_oldest_whole_turns_are_dropped_first() -> None:
    history = History("sys", budget_tokens=30)
    for i in range(10):
        history.add("user", f"question number {i} " * 2)
        history.add("assistant", f"answer {i}")
    messages = history.messages()
    assert messages[0]["role"] == "system"
    assert messages[1]["role"] == "user"  # never starts with an orphaned reply
    assert messages[-1]["content"] == "answer 9"
    assert history.tokens <= 30
    assert history.dropped > 0


def test_empty_text_is_not_a_turn() -> None:
    history = History("sys")
    history.add("assistant", "   ")
    assert len(history) == 0


@given(st.lists(st.tuples(st.sampled_from(["user", "assistant"]), st.text(max_size=200))))
def test_never_over_budget_and_never_empty_of_the_latest(turns: list) -> None:
    history = History("system prompt", budget_tokens=120)
    for role, text in turns:
        history.add(role, text)
        if text.strip():
            assert history.messages()[-1]["content"] == text.strip()
        latest = estimate_tokens(history.messages()[-1]["content"]) if len(history) else 0
        # over budget only when the single latest message alone exceeds it
        assert history.tokens <= max(120, estimate_tokens("system prompt") + latest)


def test_images_count_against_the_budget_and_leave_with_their_turn() -> None:
    photo = Image(b"png", "png", 10, 10)
    history = History("sys", budget_tokens=IMAGE_TOKENS + 50)
    history.add("user", "", (photo,))  # a photo alone is a turn
    assert history.has_images() and len(history) == 1
    assert history.messages()[1] == {"role": "user", "content": "", "images": [photo]}
    assert history.messages(images=False)[1] == {"role": "user", "content": ""}
    history.add("assistant", "It is a sum.")
    history.add("user", "x" * 400)  # over the budget: the photo's turn goes first, whole
    assert not history.has_images()
    assert [m["role"] for m in history.messages()] == ["system", "user"]
