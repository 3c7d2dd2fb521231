"""A fake Evolution API v2: a real HTTP server on 127.0.0.1 speaking Evolution's wire format.

It answers the endpoints papo calls the way Evolution 2.3 does (checked against Evolution's source:
`src/api/routes/*.router.ts`, `src/validate/*.schema.ts`, `src/api/guards/*.ts`, `src/exceptions/*.ts` and
`whatsapp.baileys.service.ts`):

- `POST /message/sendText/{instance}`: 201 with the sent message (`key.id` is a new `3EB0…` id);
- `POST /chat/sendPresence/{instance}`: 201 `{"presence": ...}`, after holding the request for `delay` ms as
  Evolution does;
- `POST /chat/getBase64FromMediaMessage/{instance}`: 201 with the media registered for `message.key.id`;
- `POST /chat/markMessageAsRead/{instance}` `{"readMessages": [{"remoteJid", "fromMe", "id"}, ...]}`: 201
  `{"message": "Read messages", "read": "success"}`, validated like `readMessageSchema` (at least one key,
  unique, non-empty `id` and `remoteJid`); like Evolution 2.3 it skips keys whose `remoteJid` is neither a
  phone JID nor a group (a `@lid`), so those are not recorded as read.

Each instance runs one of Evolution's three channels (`channels={"inst": EVOLUTION}`), as 2.3.7 does:
- `WHATSAPP-BAILEYS` (the default): all of the above; `key.id` like `3EB0…`; numbers can be missing from
  WhatsApp;
- `EVOLUTION`: `sendPresence`, `markMessageAsRead` and `getBase64FromMediaMessage` answer 400 "Method not
  available on Evolution Channel"; `sendText` checks no number, echoes `number` as given in `remoteJid` (bare
  digits stay bare), answers a UUID `key.id`, whole-second `messageTimestamp`, and its webhooks carry no
  `sender`;
- `WHATSAPP-BUSINESS` (Meta's Cloud API): `sendPresence` and `markMessageAsRead` answer 400 "Method not
  available on WhatsApp Business API"; `sendText` ignores `delay` and answers a `wamid.` id;
  `getBase64FromMediaMessage` works (Evolution fetches the media from Meta).

Every accepted `sendText` is announced as a `send.message` webhook to `webhook_url` (with `webhook_headers`),
as Evolution does for every send through its API. Evolution emits it before it answers the HTTP call; the
fake delivers it before the answer (`echo_order="before"`, the webhook answered first) or after it
(`"after"`), so receivers can be tested in both orders. Media registered with `add_media` is also served at
`media_url(message_id)`, like the S3 URL Evolution puts in `message.mediaUrl`.

Guards run in Evolution's order: an unknown instance is 404, then a wrong `apikey` is 401: each instance
accepts its own key (`api_keys`) and the global one (`global_api_key`), never another instance's. Bodies are
validated like Evolution's JSON schemas and errors use its envelope
`{"status": 400, "error": "Bad Request", "response": {"message": [...]}}`. Failures can be programmed per
endpoint (`fail_next`, `hang_next`, optionally after letting `skip` matching requests through), numbers can be marked as not on WhatsApp, and every request is recorded
with its arrival time, so tests can assert what was sent, in which order, and how it was paced.

    async with FakeEvolution(api_keys={"inst": "key"}) as evo:
        ...  # point the code under test at evo.url
        assert evo.sent_texts("inst")[0].text == "hello"

`with FakeEvolution(...) as evo:` works the same for tests that start services as subprocesses.
"""

from __future__ import annotations

import asyncio
import base64 as b64
import contextlib
import json
import random
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal

import httpx
import uvicorn

# Evolution's wire format lives in the simulator, so that the fake and the simulator speak one dialect; the
# error bodies stay importable from here.
from papo_simulator.wire import (
    connection_closed_body,  # noqa: F401
    evolution_error_body,
    license_required_body,  # noqa: F401
    new_message_id,
    not_on_whatsapp_body,
    read_message_errors,
    timed_out_body,  # noqa: F401
    to_jid,
    validation_errors,
)

Json = Any
Response = tuple[int, Json]

BAILEYS = "WHATSAPP-BAILEYS"
EVOLUTION = "EVOLUTION"
BUSINESS = "WHATSAPP-BUSINESS"
CHANNELS = (BAILEYS, EVOLUTION, BUSINESS)
EchoOrder = Literal["before", "after"]
_CHANNEL_NAMES = {EVOLUTION: "Evolution Channel", BUSINESS: "WhatsApp Business API"}
_OWN_NUMBER = "5511888880000@s.whatsapp.net"


def method_not_available_body(channel: str) -> dict[str, Json]:
    """What the `EVOLUTION` and `WHATSAPP-BUSINESS` channels answer (HTTP 400) for a call they lack."""
    return evolution_error_body(400, [f"Method not available on {_CHANNEL_NAMES[channel]}"])


@dataclass
class RecordedRequest:
    """One request as the fake received it. `status` is filled in once it was answered."""

    method: str
    path: str
    endpoint: str
    """The path without the instance, e.g. `/message/sendText`."""
    instance: str | None
    headers: dict[str, str]
    json: Json
    received_monotonic: float
    received_at: datetime
    status: int | None = None
    answer: Json = None
    """The body the fake answered with (JSON), once answered."""
    after_response: Callable[[], Awaitable[None]] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SentText:
    """A text Evolution accepted (answered 201)."""

    instance: str
    number: str
    remote_jid: str
    text: str
    message_id: str
    delay: int | None
    received_monotonic: float


@dataclass(frozen=True)
class ReadReceipt:
    """A message Evolution marked as read (one key of an accepted `markMessageAsRead`)."""

    instance: str
    remote_jid: str
    message_id: str
    from_me: bool
    received_monotonic: float


@dataclass(frozen=True)
class DeliveredWebhook:
    """A webhook the fake posted (`send.message`), with the receiver's answer (None: unreachable)."""

    event: str
    instance: str
    body: Json
    status: int | None
    sent_monotonic: float


@dataclass(frozen=True)
class FakeMedia:
    base64: str
    mimetype: str = "audio/ogg; codecs=opus"
    file_length: int | None = None


@dataclass
class _ProgrammedFault:
    path_suffix: str
    times: int
    status: int | None = None
    body: Json = None
    hang_seconds: float = 0.0
    skip: int = 0

    def matches(self, request: RecordedRequest) -> bool:
        return request.path.endswith(self.path_suffix) or request.endpoint.endswith(self.path_suffix)


@dataclass
class _State:
    api_keys: dict[str, str]
    global_api_key: str | None
    not_on_whatsapp: set[str]
    media: dict[str, FakeMedia]
    simulate_delays: bool
    channels: dict[str, str] = field(default_factory=dict)
    webhook_url: str | None = None
    webhook_headers: dict[str, str] = field(default_factory=dict)
    echo_order: EchoOrder = "before"
    webhook_retry_base_seconds: float = 5.0
    """Evolution 2.3 retries a webhook answered 5xx/429 or not answered: `min(base·2^(n−1), 300)` s ±20 %,
    10 attempts; 400/401/403/404/422 end it. Tests shorten the base."""
    retrying: set[asyncio.Task[None]] = field(default_factory=set)
    webhook_client: httpx.AsyncClient | None = None
    """One client for every webhook, made in the server's loop: a client per post (its TLS context, its
    pool) cost the fake milliseconds of CPU per `sendText`, which a load test then measured as papo's."""
    webhook_loop: asyncio.AbstractEventLoop | None = None
    webhooks: list[DeliveredWebhook] = field(default_factory=list)
    base_url: str = ""
    requests: list[RecordedRequest] = field(default_factory=list)
    sent: list[SentText] = field(default_factory=list)
    read: list[ReadReceipt] = field(default_factory=list)
    faults: list[_ProgrammedFault] = field(default_factory=list)
    instance_ids: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_fault(self, request: RecordedRequest) -> _ProgrammedFault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(request):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.times -= 1
                    return fault
        return None

    def channel(self, instance: str | None) -> str:
        with self.lock:
            return self.channels.get(instance or "", BAILEYS)


class FakeEvolution:
    """A running fake Evolution API. Start it with `async with`/`with`, or `start()` and `stop()`."""

    def __init__(
        self,
        api_keys: Mapping[str, str] | None = None,
        *,
        global_api_key: str | None = None,
        not_on_whatsapp: Iterable[str] = (),
        media: Mapping[str, FakeMedia] | None = None,
        simulate_delays: bool = True,
        channels: Mapping[str, str] | None = None,
        webhook_url: str | None = None,
        webhook_headers: Mapping[str, str] | None = None,
        echo_order: EchoOrder = "before",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._state = _State(
            api_keys=dict(api_keys or {}),
            global_api_key=global_api_key,
            not_on_whatsapp={to_jid(number) for number in not_on_whatsapp},
            media=dict(media or {}),
            simulate_delays=simulate_delays,
            channels=dict(channels or {}),
            webhook_url=webhook_url,
            webhook_headers=dict(webhook_headers or {}),
            echo_order=echo_order,
        )
        self._host, self._port = host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # Programming the fake

    def add_instance(self, instance: str, api_key: str, *, channel: str = BAILEYS) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}; one of {CHANNELS}")
        with self._state.lock:
            self._state.api_keys[instance] = api_key
            self._state.channels[instance] = channel

    def set_webhook(
        self,
        url: str | None,
        headers: Mapping[str, str] | None = None,
        *,
        echo_order: EchoOrder | None = None,
        retry_base_seconds: float | None = None,
    ) -> None:
        """Where `send.message` webhooks go (None: nowhere), with which headers, in which order relative to
        the `sendText` answer, and how soon a failed one is retried."""
        with self._state.lock:
            self._state.webhook_url = url
            self._state.webhook_headers = dict(headers or {})
            if echo_order is not None:
                self._state.echo_order = echo_order
            if retry_base_seconds is not None:
                self._state.webhook_retry_base_seconds = retry_base_seconds

    def add_media(self, message_id: str, media: FakeMedia) -> None:
        with self._state.lock:
            self._state.media[message_id] = media

    def mark_not_on_whatsapp(self, number: str) -> None:
        with self._state.lock:
            self._state.not_on_whatsapp.add(to_jid(number))

    def fail_next(
        self, path_suffix: str, status: int, body: Json = None, *, times: int = 1, skip: int = 0
    ) -> None:
        """Answer the next `times` requests whose path ends with `path_suffix` (e.g. `sendText`) with
        `status` and `body` (default: Evolution's envelope with the status's reason phrase), after letting
        `skip` of them through (`skip=1`: the second `sendText` fails)."""
        body = evolution_error_body(status, HTTPStatus(status).phrase) if body is None else body
        with self._state.lock:
            self._state.faults.append(
                _ProgrammedFault(path_suffix, times, status=status, body=body, skip=skip)
            )

    def hang_next(self, path_suffix: str, seconds: float, *, times: int = 1, skip: int = 0) -> None:
        """Hold the next `times` matching requests (after `skip`) for `seconds` before handling them
        normally, so a client times out while Evolution still does the work (a send may happen after the
        client gave up)."""
        with self._state.lock:
            self._state.faults.append(_ProgrammedFault(path_suffix, times, hang_seconds=seconds, skip=skip))

    # What happened

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake Evolution API is not running")
        return f"http://{self._host}:{self._port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def requests_to(self, path_suffix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith(path_suffix) or r.endpoint.endswith(path_suffix)]

    def sent_texts(self, instance: str | None = None) -> list[SentText]:
        with self._state.lock:
            return [s for s in self._state.sent if instance is None or s.instance == instance]

    def read_receipts(self, instance: str | None = None) -> list[ReadReceipt]:
        with self._state.lock:
            return [r for r in self._state.read if instance is None or r.instance == instance]

    def delivered_webhooks(self, event: str | None = None) -> list[DeliveredWebhook]:
        with self._state.lock:
            return [w for w in self._state.webhooks if event is None or w.event == event]

    def media_url(self, message_id: str) -> str:
        """Where the media registered for `message_id` is served without a key, like Evolution's S3 URLs."""
        return f"{self.url}/s3/media/{message_id}"

    # Lifecycle

    IN_PROCESS_URL = "http://evolution.test"

    def transport(self) -> httpx.AsyncBaseTransport:
        """The fake served in-process, with no socket, for unit tests: point an `httpx.AsyncClient` with this
        transport at `IN_PROCESS_URL`. httpx does not enforce timeouts here: tests of those need `start()`."""
        self._state.base_url = self._state.base_url or self.IN_PROCESS_URL
        return httpx.ASGITransport(app=_asgi_app(self._state))

    def start(self) -> FakeEvolution:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        self._port = sock.getsockname()[1]
        self._state.base_url = f"http://{self._host}:{self._port}"
        config = uvicorn.Config(
            _asgi_app(self._state), lifespan="off", log_level="warning", access_log=False, log_config=None
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-evolution", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake Evolution API did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        client, loop = self._state.webhook_client, self._state.webhook_loop
        if client is not None and loop is not None and loop.is_running():
            with contextlib.suppress(Exception):  # closing is a courtesy: the thread's sockets end with it
                asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=5)
            self._state.webhook_client = None
        self._server.should_exit = True
        self._thread.join(2)
        if self._thread.is_alive():  # a hanging request would hold a graceful shutdown
            self._server.force_exit = True
            self._thread.join(5)
        self._server = None

    def __enter__(self) -> FakeEvolution:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeEvolution:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)


# The HTTP side, run by uvicorn in the fake's own thread

Route = Callable[[_State, RecordedRequest], Awaitable[Response]]


def _check_number(state: _State, number: str) -> Response | None:
    with state.lock:
        missing = to_jid(number) in state.not_on_whatsapp
    return (400, not_on_whatsapp_body(number)) if missing else None


async def _send_text(state: _State, request: RecordedRequest) -> Response:
    body = request.json
    schema: Mapping[str, tuple[type, ...]] = {
        "number": (str,),
        "text": (str,),
        "delay": (int,),
        "linkPreview": (bool,),
    }
    if errors := validation_errors(body, schema, ("number", "text")):
        return 400, evolution_error_body(400, [errors])
    assert request.instance is not None
    channel = state.channel(request.instance)
    if channel == BAILEYS:
        if not body["text"].strip():
            return 400, evolution_error_body(400, ["Text is required"])
        if refusal := _check_number(state, body["number"]):
            return refusal
    delay = body.get("delay")
    if state.simulate_delays and delay and channel != BUSINESS:  # the Cloud API channel ignores `delay`
        await asyncio.sleep(delay / 1000)
    number = body["number"]
    if channel == EVOLUTION:
        remote_jid, message_id = number, str(uuid.uuid4())  # echoed as given: bare digits stay bare
    elif channel == BUSINESS:
        remote_jid, message_id = to_jid(number), "wamid." + b64.b64encode(secrets.token_bytes(24)).decode()
    else:
        remote_jid, message_id = to_jid(number), new_message_id()
    sent = SentText(
        request.instance, number, remote_jid, body["text"], message_id, delay, request.received_monotonic
    )
    with state.lock:
        state.sent.append(sent)
        instance_id = state.instance_ids.setdefault(request.instance, str(uuid.uuid4()))
    answer: dict[str, Json] = {
        "key": {"remoteJid": remote_jid, "fromMe": True, "id": message_id},
        "message": {"conversation": body["text"]},
        "messageType": "conversation",
        "messageTimestamp": int(time.time()),
        "instanceId": instance_id,
    }
    if channel == BAILEYS:
        answer |= {"pushName": "Você", "status": "PENDING", "contextInfo": None, "source": "web"}
    elif channel == BUSINESS:
        answer |= {"status": "PENDING", "source": "unknown"}
    else:
        answer |= {"source": "unknown"}
    await _announce(state, request, "send.message", answer)
    return 201, answer


def _worth_retrying(status: int | None) -> bool:
    return status is None or status == 429 or status >= 500


async def _announce(state: _State, request: RecordedRequest, event: str, data: Json) -> None:
    """Post the webhook Evolution emits for `request`: now (before the answer) or once it was answered."""
    with state.lock:
        url, headers, order = state.webhook_url, dict(state.webhook_headers), state.echo_order
        api_key = state.api_keys.get(request.instance or "")
    if url is None:
        return
    assert request.instance is not None
    envelope: dict[str, Json] = {
        "event": event,
        "instance": request.instance,
        "data": data,
        "destination": url,
        "date_time": datetime.now().isoformat(timespec="milliseconds")
        + "Z",  # local time with a Z, as Evolution
        "server_url": state.base_url,
        "apikey": api_key,
    }
    if state.channel(request.instance) != EVOLUTION:
        envelope["sender"] = _OWN_NUMBER
    instance = request.instance

    async def attempt() -> int | None:
        status: int | None
        if state.webhook_client is None:
            state.webhook_client = httpx.AsyncClient(timeout=30)
            state.webhook_loop = asyncio.get_running_loop()
        try:
            status = (await state.webhook_client.post(url, json=envelope, headers=headers)).status_code
        except httpx.HTTPError:
            status = None
        with state.lock:
            state.webhooks.append(DeliveredWebhook(event, instance, envelope, status, time.monotonic()))
        return status

    async def retry_later() -> None:
        for retry in range(1, 10):
            delay = min(state.webhook_retry_base_seconds * 2 ** (retry - 1), 300.0)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # Evolution's own backoff
            if not _worth_retrying(await attempt()):
                return

    async def post() -> None:
        # the first attempt as Evolution makes it; its retries go on in the background, as Evolution's do
        if _worth_retrying(await attempt()):
            task = asyncio.get_running_loop().create_task(retry_later())
            state.retrying.add(task)
            task.add_done_callback(state.retrying.discard)

    if order == "before":
        await post()
    else:
        request.after_response = post


async def _send_presence(state: _State, request: RecordedRequest) -> Response:
    if (channel := state.channel(request.instance)) != BAILEYS:
        return 400, method_not_available_body(channel)
    body = request.json
    schema: Mapping[str, tuple[type, ...]] = {"number": (str,), "presence": (str,), "delay": (int, float)}
    if errors := validation_errors(body, schema, ("number", "presence", "delay")):
        return 400, evolution_error_body(400, [errors])
    if body["presence"] not in {"unavailable", "available", "composing", "recording", "paused"}:
        return 400, evolution_error_body(400, [["presence is not one of enum values"]])
    if refusal := _check_number(state, body["number"]):
        return refusal
    if state.simulate_delays and body["delay"]:
        await asyncio.sleep(body["delay"] / 1000)
    return 201, {"presence": body["presence"]}


async def _get_base64(state: _State, request: RecordedRequest) -> Response:
    channel = state.channel(request.instance)
    if channel == EVOLUTION:
        return 400, method_not_available_body(channel)
    body = request.json if isinstance(request.json, dict) else {}
    message_id = ((body.get("message") or {}).get("key") or {}).get("id")
    with state.lock:
        media = state.media.get(message_id) if isinstance(message_id, str) else None
    if channel == BUSINESS and not (body.get("message") or {}).get("messageType"):
        # its getBase64FromMediaMessage reads `messageType` first
        return 400, evolution_error_body(
            400, ["TypeError: Cannot read properties of undefined (reading 'includes')"]
        )
    if media is None:
        return 400, evolution_error_body(400, ["Message not found"])
    kind = media.mimetype.split("/")[0]
    media_type = f"{kind}Message" if kind in {"audio", "image", "video"} else "documentMessage"
    answer = {
        "mediaType": media_type,
        "fileName": f"{message_id}.{media.mimetype.split('/')[-1].split(';')[0]}",
        "caption": None,
        "size": {"fileLength": media.file_length, "height": None, "width": None},
        "mimetype": media.mimetype,
        "base64": media.base64,
        "buffer": None,
    }
    if channel == BUSINESS:
        del answer["buffer"]
    return 201, answer


async def _mark_read(state: _State, request: RecordedRequest) -> Response:
    if (channel := state.channel(request.instance)) != BAILEYS:
        return 400, method_not_available_body(channel)
    if errors := read_message_errors(request.json):
        return 400, evolution_error_body(400, [errors])
    assert request.instance is not None
    receipts = [
        ReadReceipt(request.instance, key["remoteJid"], key["id"], key["fromMe"], request.received_monotonic)
        for key in request.json["readMessages"]
        # Evolution 2.3's markMessageAsRead keeps only `isJidGroup || isPnUser` keys.
        if key["remoteJid"].endswith(("@s.whatsapp.net", "@g.us"))
    ]
    with state.lock:
        state.read.extend(receipts)
    return 201, {"message": "Read messages", "read": "success"}


_ROUTES: dict[str, Route] = {
    "/message/sendText": _send_text,
    "/chat/sendPresence": _send_presence,
    "/chat/getBase64FromMediaMessage": _get_base64,
    "/chat/markMessageAsRead": _mark_read,
}


def _authorise(state: _State, request: RecordedRequest) -> Response | None:
    with state.lock:
        expected = state.api_keys.get(request.instance or "")
        global_key = state.global_api_key
    if expected is None:
        return 404, evolution_error_body(404, [f'The "{request.instance}" instance does not exist'])
    if request.headers.get("apikey") not in {expected, global_key} - {None}:
        return 401, evolution_error_body(401, "Unauthorized")
    return None


def _stored_media(state: _State, request: RecordedRequest) -> tuple[int, bytes, str]:
    """A media object, as Evolution's S3 storage serves it: raw bytes, no key."""
    with state.lock:
        media = state.media.get(request.instance or "")
    if media is None:
        return 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml"
    return 200, b64.b64decode(media.base64), media.mimetype


async def _respond(state: _State, request: RecordedRequest) -> Response:
    route = _ROUTES.get(request.endpoint) if request.method == "POST" else None
    if route is None:
        return 404, evolution_error_body(404, [f"Cannot {request.method} {request.path}"])
    if fault := state.take_fault(request):
        if fault.status is not None:
            return fault.status, fault.body
        await asyncio.sleep(fault.hang_seconds)
    if refusal := _authorise(state, request):
        return refusal
    return await route(state, request)


def _asgi_app(state: _State) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            event = await receive()
            raw += event.get("body", b"")
            if not event.get("more_body"):
                break
        path = scope["path"]
        endpoint, _, instance = path.rpartition("/")
        try:
            payload: Json = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        request = RecordedRequest(
            method=scope["method"],
            path=path,
            endpoint=endpoint,
            instance=instance or None,
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            json=payload,
            received_monotonic=time.monotonic(),
            received_at=datetime.now(UTC),
        )
        with state.lock:
            state.requests.append(request)
        content_type = "application/json; charset=utf-8"
        if request.method == "GET" and endpoint == "/s3/media":
            status, encoded, content_type = _stored_media(state, request)
        else:
            if isinstance(payload, str):
                status, body = 400, evolution_error_body(400, ["Unexpected token in JSON"])
            else:
                status, body = await _respond(state, request)
            encoded = json.dumps(body).encode()
            request.answer = body
        request.status = status
        headers = [(b"content-type", content_type.encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": encoded})
        if request.after_response is not None:
            await request.after_response()

    return app
