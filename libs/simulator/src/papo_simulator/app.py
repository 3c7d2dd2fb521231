"""The simulator's HTTP server: Evolution API v2's endpoints for papo, and the chat page with its JSON API and
live events, on one port."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import uvicorn
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody
from litestar.response import ServerSentEvent
from litestar.static_files import create_static_files_router
from pydantic import BaseModel, Field

from papo_common.logging import configure_logging
from papo_simulator.evolution import Answer, SimulatedEvolution
from papo_simulator.history import HistoryReader
from papo_simulator.phone import Phones
from papo_simulator.settings import SimulatorSettings
from papo_simulator.timeline import build_timeline
from papo_simulator.webhooks import WebhookPoster
from papo_simulator.world import Chat, World

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_VOICE_NOTE_BYTES = 16 * 1024 * 1024


def _evolution_response(answer: Answer) -> Response[Any]:
    status, body = answer
    return Response(json.dumps(body), status_code=status, media_type="application/json; charset=utf-8")


async def _evolution_call(
    request: Request[Any, Any, Any], state: State, instance: str, name: str
) -> Response[Any]:
    evolution: SimulatedEvolution = state.evolution
    if refusal := evolution.refuse(instance, request.headers):
        return _evolution_response(refusal)
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return _evolution_response(
            (
                400,
                {
                    "status": 400,
                    "error": "Bad Request",
                    "response": {"message": ["Unexpected token in JSON"]},
                },
            )
        )
    return _evolution_response(await getattr(evolution, name)(instance, body))


@post("/message/sendText/{instance:str}")
async def send_text(request: Request[Any, Any, Any], state: State, instance: FromPath[str]) -> Response[Any]:
    return await _evolution_call(request, state, instance, "send_text")


@post("/chat/sendPresence/{instance:str}")
async def send_presence(
    request: Request[Any, Any, Any], state: State, instance: FromPath[str]
) -> Response[Any]:
    return await _evolution_call(request, state, instance, "send_presence")


@post("/chat/markMessageAsRead/{instance:str}")
async def mark_message_as_read(
    request: Request[Any, Any, Any], state: State, instance: FromPath[str]
) -> Response[Any]:
    return await _evolution_call(request, state, instance, "mark_read")


@post("/chat/getBase64FromMediaMessage/{instance:str}")
async def get_base64(request: Request[Any, Any, Any], state: State, instance: FromPath[str]) -> Response[Any]:
    return await _evolution_call(request, state, instance, "media")


# The page and its API


class TextIn(BaseModel):
    text: str = Field(min_length=1, max_length=4096)
    as_operator: bool = False


class VoiceNoteIn(BaseModel):
    base64: str = Field(min_length=1)
    mimetype: str = Field(default="audio/ogg; codecs=opus", pattern=r"^audio/")
    seconds: float | None = Field(default=None, ge=0, le=3600)


def _chat(state: State, instance: str, number: str) -> Chat:
    try:
        chat: Chat = state.world.chat(instance, number)
    except KeyError:
        raise NotFoundException(detail="no such business number or contact") from None
    return chat


def _chat_view(state: State, chat: Chat) -> dict[str, Any]:
    settings: SimulatorSettings = state.settings
    return {
        "instance": chat.instance,
        "number": chat.contact.number,
        "typing": chat.typing,
        "paused": chat.paused,
        "messages": [asdict(m) for m in chat.messages],
        "timeline": [asdict(t) for t in build_timeline(chat, debounce_seconds=settings.debounce_seconds)],
    }


@get("/", media_type=MediaType.HTML, include_in_schema=False)
async def page() -> str:
    return (STATIC / "index.html").read_text(encoding="utf-8")


@get("/api/world")
async def world_view(state: State) -> dict[str, Any]:
    world: World = state.world
    settings: SimulatorSettings = state.settings
    return {
        "instances": [asdict(i) for i in world.instances.values()],
        "contacts": [asdict(c) for c in world.contacts.values()],
        "debounce_seconds": settings.debounce_seconds,
        "papo_history": state.history.enabled,
    }


@get("/api/chats/{instance:str}/{number:str}")
async def chat_view(state: State, instance: FromPath[str], number: FromPath[str]) -> dict[str, Any]:
    return _chat_view(state, _chat(state, instance, number))


@post("/api/chats/{instance:str}/{number:str}/messages", status_code=202)
async def write(
    state: State, instance: FromPath[str], number: FromPath[str], data: JSONBody[TextIn]
) -> dict[str, Any]:
    if not data.text.strip():
        raise ClientException(detail="the message is empty")
    phones: Phones = state.phones
    message = phones.write(_chat(state, instance, number), data.text, as_operator=data.as_operator)
    return asdict(message)


@post("/api/chats/{instance:str}/{number:str}/voice-notes", status_code=202)
async def voice_note(
    state: State, instance: FromPath[str], number: FromPath[str], data: JSONBody[VoiceNoteIn]
) -> dict[str, Any]:
    try:
        audio = base64.b64decode(data.base64, validate=True)
    except (binascii.Error, ValueError):
        raise ClientException(detail="the voice note is not valid base64") from None
    if not audio or len(audio) > MAX_VOICE_NOTE_BYTES:
        raise ClientException(detail="the voice note is empty or larger than 16 MiB")
    phones: Phones = state.phones
    message = phones.send_voice_note(
        _chat(state, instance, number), audio, mimetype=data.mimetype, seconds=data.seconds
    )
    return {**asdict(message), "audio_url": None}


@get("/api/events")
async def events(state: State) -> ServerSentEvent:
    world: World = state.world

    async def stream() -> Any:
        yield json.dumps({"type": "hello"})
        async for event in world.events():
            yield json.dumps(event)

    return ServerSentEvent(stream())


def create_app(settings: SimulatorSettings | None = None) -> Litestar:
    settings = settings or SimulatorSettings()
    world = World()
    poster = WebhookPoster(
        world,
        settings.simulator_webhook_url,
        settings.webhook_token.get_secret_value() if settings.webhook_token else None,
    )
    api_key = settings.evolution_api_key.get_secret_value()
    server_url = f"http://{settings.simulator_host}:{settings.simulator_port}"
    phones = Phones(world, poster, server_url=server_url, apikey=api_key)
    history = HistoryReader(
        world, settings.admin_url, settings.admin_token.get_secret_value() if settings.admin_token else None
    )

    async def start(app: Litestar) -> None:
        await poster.start()
        await history.start()

    async def stop(app: Litestar) -> None:
        await poster.aclose()
        await history.aclose()

    return Litestar(
        route_handlers=[
            send_text,
            send_presence,
            mark_message_as_read,
            get_base64,
            page,
            world_view,
            chat_view,
            write,
            voice_note,
            events,
            create_static_files_router(path="/static", directories=[STATIC]),
        ],
        state=State(
            {
                "settings": settings,
                "world": world,
                "phones": phones,
                "history": history,
                "evolution": SimulatedEvolution(world, phones, api_key=api_key),
            }
        ),
        on_startup=[start],
        on_shutdown=[stop],
        openapi_config=None,
    )


def main() -> None:
    settings = SimulatorSettings()
    configure_logging("simulator", level=settings.log_level, fmt=settings.log_format)
    logger.info(
        f"simulator: open http://{settings.simulator_host}:{settings.simulator_port}/ to chat with papo"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.simulator_host,
        port=settings.simulator_port,
        log_level="warning",
        access_log=False,
        log_config=None,
    )
