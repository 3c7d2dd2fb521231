"""A person chats with papo through the simulator's page; every service runs as in production."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

AUDIO = Path(__file__).parents[1] / "fixtures" / "audio"
REPLY_SECONDS = 60_000
TRANSCRIBE_SECONDS = 180_000


def open_chat(page: Any, url: str, contact: str, business: str | None = None) -> None:
    page.goto(url)
    if business is not None:
        page.get_by_label("Business number").select_option(value=business)
    page.get_by_role("navigation", name="Chats").get_by_role("button", name=re.compile(contact)).click()
    page.get_by_role("heading", name=contact).wait_for()


def composer(page: Any) -> Any:
    return page.get_by_role("textbox", name=re.compile("Message"))


def log(page: Any) -> Any:
    return page.get_by_role("log")


def write(page: Any, text: str) -> None:
    box = composer(page)
    box.fill(text)
    box.press("Enter")
    log(page).locator(".bubble", has_text=text).wait_for()


def bot_replies(page: Any) -> Any:
    return log(page).locator(".bubble.bot")


def test_a_burst_typed_quickly_gets_one_reply(page: Any, simulated_stack: Any) -> None:
    from playwright.sync_api import expect

    open_chat(page, simulated_stack.url, "Ana")
    for text in ("hi", "do you deliver on sundays?", "to the city centre"):
        write(page, text)
    reply = bot_replies(page).first
    reply.wait_for(timeout=REPLY_SECONDS)
    # the fake model echoes the prompt's last user message: the whole burst, in order
    expect(reply).to_contain_text(re.compile(r"hi\s+do you deliver on sundays\?\s+to the city centre"))
    expect(log(page).locator(".ticks.read")).to_have_count(3)
    expect(page.get_by_role("complementary")).to_contain_text("delivery")
    expect(bot_replies(page)).to_have_count(1)


def test_typing_shows_before_the_reply(page: Any, simulated_stack: Any) -> None:
    from playwright.sync_api import expect

    open_chat(page, simulated_stack.url, "Bruno")
    write(page, "what time do you open?")
    status = page.locator("#chat-status")
    expect(status).to_have_text("typing…", timeout=REPLY_SECONDS)
    assert bot_replies(page).count() == 0, "typing comes before the reply"
    bot_replies(page).first.wait_for(timeout=REPLY_SECONDS)
    expect(status).not_to_have_text("typing…")


def test_an_uploaded_voice_note_shows_its_transcript_in_the_timeline(page: Any, simulated_stack: Any) -> None:
    from playwright.sync_api import expect

    open_chat(page, simulated_stack.url, "Carla")
    page.get_by_label("Send a voice note file").set_input_files(str(AUDIO / "pt_pizza.ogg"))
    log(page).locator(".bubble.contact audio").wait_for()
    timeline = page.get_by_role("complementary")
    expect(timeline).to_contain_text("papo fetched the voice note", timeout=TRANSCRIBE_SECONDS)
    # the transcript persist stored, quoted in the turn's "transcription" step
    expect(timeline).to_contain_text(
        re.compile(r"transcription“[^”]*pizza", re.IGNORECASE), timeout=TRANSCRIBE_SECONDS
    )
    bot_replies(page).first.wait_for(timeout=REPLY_SECONDS)


def test_writing_as_the_operator_pauses_the_bot(page: Any, simulated_stack: Any) -> None:
    from playwright.sync_api import expect

    open_chat(page, simulated_stack.url, "Ana", business="papo-clinic")
    page.get_by_role("switch", name="Write as the business operator").check()
    write(page, "Hello Ana, Maria from the clinic here. I will take it from here.")
    status = page.locator("#chat-status")
    expect(status).to_contain_text("paused", timeout=REPLY_SECONDS)
    page.get_by_role("switch", name="Write as the business operator").uncheck()
    write(page, "thanks Maria, can I come at 3?")

    # Another chat written to afterwards is answered; by then Ana's window has closed long ago.
    open_chat(page, simulated_stack.url, "Bruno", business="papo-clinic")
    write(page, "is the clinic open on saturdays?")
    bot_replies(page).first.wait_for(timeout=REPLY_SECONDS)

    open_chat(page, simulated_stack.url, "Ana", business="papo-clinic")
    expect(log(page).locator(".bubble.operator")).to_have_count(1)
    expect(log(page).locator(".bubble.contact")).to_have_count(1)
    expect(bot_replies(page)).to_have_count(0)
    expect(status).to_contain_text("paused")


def test_papo_dev_still_refuses_unauthenticated_webhooks(simulated_stack: Any) -> None:
    import httpx

    from papo_simulator.wire import new_phone_message_id, text_message_data, webhook_envelope

    data = text_message_data(
        remote_jid="5511987650001@s.whatsapp.net",
        message_id=new_phone_message_id(),
        text="let me in",
        timestamp=0,
        push_name="Mallory",
        from_me=False,
        instance_id="x",
    )
    body = webhook_envelope(
        "messages.upsert",
        instance="papo-shop",
        data=data,
        destination="",
        sender="",
        server_url="",
        apikey="",
    )
    url = f"http://127.0.0.1:{simulated_stack.base_port}/webhook/evolution"
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"x-papo-token": "guessed"}).status_code == 401
