"""Splitting long replies into messages a person would send, on Portuguese text as the llm writes it."""

from __future__ import annotations

import re

import pytest

from papo_deliver.chunking import split_reply


def words(text: str) -> list[str]:
    return text.split()


def assert_lossless(text: str, chunks: tuple[str, ...]) -> None:
    """Every word of the reply is sent, once, in order."""
    assert words(" ".join(chunks)) == words(text)


def test_a_reply_that_fits_is_one_message_untouched_but_trimmed() -> None:
    text = "Olá! Tudo bem?\n\nPosso ajudar com o seu pedido."
    assert split_reply(f"  {text}\n", max_chars=600, max_chunks=5) == (text,)


def test_paragraphs_are_the_first_boundary_and_short_ones_are_packed_together() -> None:
    first, second, third = "A" * 250, "B" * 250, "C" * 250
    chunks = split_reply(f"{first}\n\n{second}\n\n\n{third}", max_chars=600, max_chunks=5)
    assert chunks == (f"{first}\n\n{second}", third)


def test_a_long_paragraph_is_split_at_sentences_and_starts_its_own_message() -> None:
    intro = "Oi, Maria!"
    sentences = [f"Frase número {n} do parágrafo, com um pouco de texto para encher." for n in range(6)]
    text = f"{intro}\n\n{' '.join(sentences)}"
    chunks = split_reply(text, max_chars=150, max_chunks=10)

    assert chunks[0] == intro, "a paragraph that needs several messages does not start mid-message"
    assert all(len(chunk) <= 150 for chunk in chunks)
    assert all(chunk.endswith(".") for chunk in chunks[1:]), "cut at sentence ends only"
    assert_lossless(text, chunks)


@pytest.mark.parametrize(
    "sentence",
    [
        "Fale com o Sr. Pereira amanhã.",
        "A Dra. Ana atende às terças.",
        "O endereço é Av. Paulista, 1000.",
        "O valor é R$ 10,50 por unidade.",
        "O total ficou em R$ 1.234,56 com frete.",
        "Trouxemos maçã, banana etc. e também uva.",
        "Bom... deixa eu ver aqui.",
        "Assinado: J. Silva, gerente.",
        "Veja em https://exemplo.com.br/a.b?c=1.",
    ],
)
def test_abbreviations_numbers_ellipses_and_urls_do_not_end_a_sentence(sentence: str) -> None:
    filler = "Mais uma frase qualquer para forçar a divisão do texto."
    text = f"{filler} {sentence} {filler}"
    chunks = split_reply(text, max_chars=len(sentence) + 5, max_chunks=10)
    assert sentence in chunks


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Custa R$ 10,50. Depois você paga o resto.", ("Custa R$ 10,50.", "Depois você paga o resto.")),
        ("Temos de tudo, etc. Quer ver a lista?", ("Temos de tudo, etc.", "Quer ver a lista?")),
        ("Hmm… Vou verificar para você!", ("Hmm…", "Vou verificar para você!")),
        ("Espera... Já volto com a resposta.", ("Espera...", "Já volto com a resposta.")),
        ("Claro! 😊 Posso ajudar em mais algo?", ("Claro! 😊", "Posso ajudar em mais algo?")),
        ('Ele disse "pode ser." Então fechamos!', ('Ele disse "pode ser."', "Então fechamos!")),
        ("Chegou em 2023. Desde então cresceu.", ("Chegou em 2023.", "Desde então cresceu.")),
    ],
)
def test_real_sentence_ends_are_found(text: str, expected: tuple[str, ...]) -> None:
    assert split_reply(text, max_chars=max(map(len, expected)) + 2, max_chunks=5) == expected


def test_list_items_stay_whole_and_the_intro_stays_with_the_first_item() -> None:
    items = [f"{n}. Passo {n}: abra o menu e escolha a opção {n} da lista." for n in range(1, 7)]
    text = "Siga estes passos:\n" + "\n".join(items)
    chunks = split_reply(text, max_chars=130, max_chunks=10)

    assert chunks[0].startswith(f"Siga estes passos:\n{items[0]}")
    for item in items:
        assert any(item in chunk for chunk in chunks), f"item split: {item}"
    assert_lossless(text, chunks)


def test_a_list_number_at_the_start_of_an_item_is_not_a_sentence_end() -> None:
    item = "1. Abra o aplicativo. Depois toque em Pedidos e escolha o mais recente da lista."
    chunks = split_reply(item, max_chars=40, max_chunks=10)
    assert chunks[0].startswith("1. Abra o aplicativo.")
    assert_lossless(item, chunks)


def test_an_indented_continuation_belongs_to_its_item() -> None:
    text = "- Item um\n  com detalhe\n- Item dois\n  com outro detalhe\n- Item três"
    chunks = split_reply(text, max_chars=35, max_chunks=10)
    assert chunks[:2] == ("- Item um\n  com detalhe", "- Item dois\n  com outro detalhe")


def test_a_code_block_that_fits_is_never_split_even_with_blank_lines_inside() -> None:
    code = "```python\ndef soma(a, b):\n\n    return a + b\n```"
    text = f"Aqui está:\n\n{code}\n\nÉ só chamar soma(1, 2)."
    chunks = split_reply(text, max_chars=60, max_chunks=10)
    assert chunks == (f"Aqui está:\n\n{code}", "É só chamar soma(1, 2).")


def test_a_code_block_too_long_is_split_between_lines_and_each_part_fenced_again() -> None:
    lines = [f"linha_{n} = {n} * 2" for n in range(20)]
    text = "```python\n" + "\n".join(lines) + "\n```"
    chunks = split_reply(text, max_chars=120, max_chunks=10)

    assert len(chunks) > 1
    for chunk in chunks:
        assert len(chunk) <= 120
        assert chunk.startswith("```python\n") and chunk.endswith("\n```")
    inner = [line for chunk in chunks for line in chunk.split("\n")[1:-1]]
    assert inner == lines


def test_a_monster_sentence_is_split_between_words() -> None:
    text = " ".join(["palavra"] * 200)
    chunks = split_reply(text, max_chars=100, max_chunks=20)
    assert all(len(chunk) <= 100 for chunk in chunks)
    assert all(set(chunk.split()) == {"palavra"} for chunk in chunks)
    assert_lossless(text, chunks)


def test_a_url_is_never_cut_even_when_longer_than_a_message() -> None:
    url = "https://exemplo.com.br/" + "a" * 200
    text = f"Acesse {url} para ver."
    chunks = split_reply(text, max_chars=80, max_chunks=10)
    assert url in chunks


def test_a_word_longer_than_a_message_that_is_not_a_url_is_cut() -> None:
    blob = "x" * 250
    chunks = split_reply(blob, max_chars=100, max_chunks=10)
    assert chunks == ("x" * 100, "x" * 100, "x" * 50)


def test_past_the_maximum_the_tail_is_merged_into_the_last_message_not_dropped() -> None:
    paragraphs = [f"Parágrafo {n}. " + "texto " * 12 for n in range(8)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    chunks = split_reply(text, max_chars=100, max_chunks=3)

    assert len(chunks) == 3
    assert chunks[2].startswith("Parágrafo 2.") and chunks[2].endswith(paragraphs[-1].strip())
    assert "\n\nParágrafo 7." in chunks[2], "merged with the separators it had"
    assert_lossless(text, chunks)


def test_emojis_and_accents_count_as_characters_and_survive() -> None:
    text = "Obrigado pela preferência! 🙏🏽 Volte sempre. ❤️ Até logo, São Paulo agradece! 🎉"
    chunks = split_reply(text, max_chars=40, max_chunks=10)
    assert all(len(chunk) <= 40 for chunk in chunks)
    assert "".join(chunks).count("🙏🏽") == 1
    assert_lossless(text, chunks)


@pytest.mark.parametrize("max_chars", [80, 120, 200, 600])
def test_a_realistic_reply_is_lossless_and_within_bounds(max_chars: int) -> None:
    text = (
        "Olá, Sr. João! Tudo bem? 😊 Sobre o seu pedido nº. 4521, a Dra. Ana confirmou o valor de "
        "R$ 10,50 por unidade, com frete etc. O prazo é de 3 dias úteis... Talvez menos!\n\n"
        "Para acompanhar:\n1. Abra https://loja.exemplo.com.br/pedidos?id=4521&ref=wpp.\n"
        '2. Toque em "Rastrear".\n3. Pronto!\n\n'
        "Se preferir, fale com a gente pelo telefone (11) 4000-1234. Até mais!"
    )
    chunks = split_reply(text, max_chars=max_chars, max_chunks=20)
    assert all(len(chunk) <= max_chars for chunk in chunks)
    assert_lossless(text, chunks)
    assert not any(re.search(r"https://\S*$", chunk) and not chunk.endswith("wpp.") for chunk in chunks)
    assert all(chunk == chunk.strip() and chunk for chunk in chunks)
