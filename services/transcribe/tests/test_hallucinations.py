"""Whisper's inventions on silence are removed; what people say is kept."""

from __future__ import annotations

import pytest

from papo_transcribe.engines.base import Segment
from papo_transcribe.hallucinations import clean_text, collapse_repeats, compression_ratio, is_hallucination


def clean(*segments: Segment) -> str:
    return clean_text(segments, no_speech_threshold=0.6, log_prob_threshold=-1.0)


@pytest.mark.parametrize(
    "text",
    [
        " Legendas pela comunidade Amara.org",
        "Legendas pela comunidade Amara.org ",
        " Obrigado por assistir!",
        " Obrigada por assistir.",
        " Thank you for watching!",
        " Thanks for watching.",
        " Subtitles by the Amara.org community",
        " Sous-titres réalisés par la communauté d'Amara.org",
        " Inscreva-se no canal!",
        " [Música]",
        " (risos)",
        " ♪ ♪ ♪",
        " ...",
    ],
)
def test_known_hallucinations_are_recognised(text: str) -> None:
    assert is_hallucination(text)
    assert clean(Segment(text=text)) == ""


@pytest.mark.parametrize("text", [" Obrigado.", " Oi, tudo bem?", " Música alta aqui, não ouvi.", " E aí?"])
def test_ordinary_speech_is_not_a_hallucination(text: str) -> None:
    assert not is_hallucination(text)
    assert clean(Segment(text=text)) == text.strip()


def test_a_credit_line_after_real_speech_is_dropped_alone() -> None:
    text = clean(Segment(" Quero duas pizzas."), Segment(" Legendas pela comunidade Amara.org"))
    assert text == "Quero duas pizzas."


def test_segments_whisper_marks_as_silent_and_unsure_are_dropped() -> None:
    silent = Segment(" Tchau.", no_speech_prob=0.9, avg_logprob=-1.4)
    assert clean(Segment(" Oi."), silent) == "Oi."


def test_a_silent_segment_that_loops_is_dropped_even_when_confident() -> None:
    # What Whisper base produced for three seconds of quiet noise, with language forced to pt.
    loop = Segment(" O que é" + " o que é" * 60, no_speech_prob=0.66, avg_logprob=-0.09)
    assert clean(Segment(" Oi."), loop) == "Oi."


def test_the_same_phrase_on_and_on_is_cut_to_one() -> None:
    # Whisper base on five seconds of digital silence (which the silence check stops before the model).
    loop = Segment(" O que é isso?", no_speech_prob=0.72, avg_logprob=-0.25)
    assert clean(*[loop] * 14) == "O que é isso?"


def test_confident_speech_that_might_be_silent_is_kept() -> None:
    segment = Segment(" Sim.", no_speech_prob=0.7, avg_logprob=-0.3)
    assert clean(segment) == "Sim."


def test_a_person_repeating_a_sentence_is_not_a_loop() -> None:
    # tiny.en on a note saying two sentences three times: the window's text compresses 2.9x.
    table = Segment(
        " I would like a table for two people tomorrow evening.", no_speech_prob=0.64, avg_logprob=-0.2
    )
    weather = Segment(
        " The weather is sunny today, so we will walk to the park.", no_speech_prob=0.64, avg_logprob=-0.2
    )
    assert clean(*[table, weather] * 3).count("table") == 3


def test_a_decoding_loop_is_collapsed() -> None:
    looped = "Bom dia " + "o que é " * 40 + "tchau"
    assert collapse_repeats(looped) == "Bom dia o que é tchau"
    assert compression_ratio(looped) > 2.4


def test_a_few_repeats_are_speech_and_stay() -> None:
    assert collapse_repeats("não, não, não. Eu disse não") == "não, não, não. Eu disse não"
    assert collapse_repeats("sim sim sim sim sim sim") == "sim"
