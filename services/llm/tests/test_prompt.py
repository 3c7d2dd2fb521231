"""The prompt: the burst in order as one message, voice notes marked, history bounded without splitting."""

from __future__ import annotations

import pytest

from papo_common.contracts import UNDERSTOOD_NOTHING
from papo_common.errors import PermanentError
from papo_llm.prompt import Turn, build_messages, merge_consecutive, messages_of, trim_history, user_turn
from papo_llm.settings import DEFAULT_SYSTEM_PROMPT, VOICE_NOTE_MARK


def test_the_burst_becomes_one_user_message_in_its_order(make_burst, make_item) -> None:
    burst = make_burst(
        make_item("m1", "oi", seconds=0),
        make_item("m2", "queria saber o preço", seconds=2),
        make_item("m3", "do corte de cabelo", seconds=4, transcribed=True),
    )

    turn = user_turn(messages_of(burst))

    assert turn == Turn("user", f"oi\nqueria saber o preço\n{VOICE_NOTE_MARK}do corte de cabelo")


def test_a_voice_note_not_understood_is_shown_with_the_marker(make_burst, make_item) -> None:
    burst = make_burst(
        make_item("m1", UNDERSTOOD_NOTHING, transcribed=True), make_item("m2", "   ", transcribed=True)
    )

    assert (
        user_turn(messages_of(burst)).content
        == f"{VOICE_NOTE_MARK}{UNDERSTOOD_NOTHING}\n{VOICE_NOTE_MARK}{UNDERSTOOD_NOTHING}"
    )


def test_blank_text_items_are_left_out_and_a_burst_of_nothing_is_permanent(make_burst, make_item) -> None:
    assert user_turn(messages_of(make_burst(make_item("m1", " "), make_item("m2", "ok")))).content == "ok"
    with pytest.raises(PermanentError):
        messages_of(make_burst(make_item("m1", "  ")))


def test_messages_sent_in_the_same_second_keep_their_burst_order(make_burst, make_item) -> None:
    # messageTimestamp has whole seconds: ties must not be broken by message id
    burst = make_burst(make_item("zz", "primeiro"), make_item("aa", "segundo"), make_item("mm", "terceiro"))
    later = make_burst(make_item("00", "quarto"), seq=2)

    assert (
        user_turn([*messages_of(later), *messages_of(burst)]).content == "primeiro\nsegundo\nterceiro\nquarto"
    )


def test_the_system_prompt_explains_the_voice_note_marker() -> None:
    assert UNDERSTOOD_NOTHING in DEFAULT_SYSTEM_PROMPT
    assert VOICE_NOTE_MARK.strip() in DEFAULT_SYSTEM_PROMPT


def test_messages_are_system_then_history_then_the_burst() -> None:
    history = [Turn("user", "olá"), Turn("assistant", "Olá! Como posso ajudar?")]

    messages = build_messages("Be nice.", history, Turn("user", "quanto custa?"), push_name="Ana")

    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"].startswith("Be nice.")
    assert "'Ana'" in messages[0]["content"]
    assert messages[-1]["content"] == "quanto custa?"


def test_a_superseded_burst_in_history_merges_with_the_current_one() -> None:
    history = [Turn("assistant", "Oi!"), Turn("user", "primeira parte")]

    messages = build_messages("S", history, Turn("user", "segunda parte"))

    assert messages[1:] == [
        {"role": "assistant", "content": "Oi!"},
        {"role": "user", "content": "primeira parte\nsegunda parte"},
    ]


def test_operator_and_assistant_turns_in_a_row_merge() -> None:
    turns = [Turn("assistant", "a"), Turn("assistant", "b"), Turn("user", "c")]

    assert merge_consecutive(turns) == [Turn("assistant", "a\nb"), Turn("user", "c")]


def test_history_keeps_the_newest_turns_within_the_turn_limit() -> None:
    turns = [Turn("user" if i % 2 == 0 else "assistant", f"t{i}") for i in range(10)]

    assert trim_history(turns, max_turns=3, max_chars=1000) == turns[-3:]
    assert trim_history(turns, max_turns=0, max_chars=1000) == []


def test_history_drops_whole_oldest_turns_to_fit_the_character_budget() -> None:
    turns = [Turn("user", "a" * 50), Turn("assistant", "b" * 30), Turn("user", "c" * 30)]

    assert trim_history(turns, max_turns=10, max_chars=80) == turns[1:]
    assert trim_history(turns, max_turns=10, max_chars=59) == turns[2:]
    # A newest turn longer than the budget is dropped, never cut in half.
    assert trim_history(turns, max_turns=10, max_chars=29) == []
