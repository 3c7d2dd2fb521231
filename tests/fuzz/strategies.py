"""Hypothesis strategies for Evolution API webhooks: the envelope's shape is right, its fields are hostile.

Every field is usually what Evolution sends and sometimes anything else: huge, negative, float and string
numbers, deep nesting, NUL and other control characters, overlong strings, wrong types, any unicode.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from papo_common.contracts.base import (
    INSTANCE_MAX_LENGTH,
    JID_MAX_LENGTH,
    MESSAGE_ID_MAX_LENGTH,
    PUSH_NAME_MAX_LENGTH,
)

INSTANCES = ("loja", "Loja Centro 2", "loja-ção", "l" * INSTANCE_MAX_LENGTH, "🛒 loja")
"""Instances a hostile body may name and still be answered through (the fake Evolution knows them all)."""

_CONTROL = st.characters(min_codepoint=0, max_codepoint=0x1F) | st.sampled_from(["\x7f", "\x85", "\x9f"])
_ANY_CHARACTER = st.characters(codec="utf-8")
"""Every code point JSON can carry (surrogates cannot be encoded)."""


def _sometimes(usual: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` four times in five (one_of would flatten `hostile`'s many branches and pick them far more)."""
    return st.sampled_from([usual, usual, usual, usual, hostile]).flatmap(lambda chosen: chosen)


def hostile_strings(*, limit: int = 64) -> st.SearchStrategy[str]:
    """Text with control characters, NUL, any unicode, and lengths either side of `limit`."""
    return st.one_of(
        st.text(_ANY_CHARACTER, max_size=limit),
        st.text(_ANY_CHARACTER | _CONTROL, min_size=1, max_size=limit),
        st.text(max_size=8).map(lambda text: text + "\x00" + text),
        st.integers(min_value=limit - 2, max_value=limit + 2).map(lambda size: "x" * max(size, 0)),
        st.integers(min_value=limit, max_value=limit * 40).map(lambda size: "é" * size),
        st.just(""),
        st.just("   "),
    )


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth):
        value = {"n": value}
    return value


deeply_nested = st.integers(min_value=20, max_value=1200).map(nested)

hostile_numbers = st.one_of(
    st.integers(min_value=0, max_value=2**40),
    st.integers(),
    st.integers(min_value=10**18, max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.integers(min_value=300, max_value=400).map(lambda digits: "9" * digits),
    st.sampled_from(["1e309", "-1e309", "nan", "inf", "0x1F", " 17 ", "", "1_000"]),
    st.fixed_dictionaries({"low": st.integers(), "high": st.integers(), "unsigned": st.booleans()}),
    json_values,
)

identifiers = st.one_of(
    st.text(st.characters(whitelist_categories=["Lu", "Nd"]), min_size=1, max_size=24),
    hostile_strings(limit=MESSAGE_ID_MAX_LENGTH),
)

phone_jids = st.integers(min_value=10**10, max_value=10**13).map(lambda n: f"{n}@s.whatsapp.net")
jids = st.one_of(
    phone_jids,
    st.integers(min_value=10**13, max_value=10**15).map(lambda n: f"{n}@lid"),
    phone_jids.map(lambda jid: jid.replace("@", ":12@")),
    st.sampled_from(["status@broadcast", "120363025246125486@g.us", "1234@newsletter", "12@broadcast"]),
    hostile_strings(limit=JID_MAX_LENGTH).map(lambda text: text + "@s.whatsapp.net"),
    hostile_strings(limit=JID_MAX_LENGTH),
)

texts = _sometimes(st.text(_ANY_CHARACTER, min_size=1, max_size=200), hostile_strings(limit=4096))

audio = st.fixed_dictionaries(
    {},
    optional={
        "mimetype": _sometimes(st.just("audio/ogg; codecs=opus"), hostile_strings(limit=255) | json_values),
        "seconds": hostile_numbers,
        "fileLength": hostile_numbers,
        "ptt": _sometimes(st.booleans(), json_values),
        "url": st.text(max_size=40),
    },
)

contents = st.one_of(
    st.fixed_dictionaries({"conversation": texts}),
    st.fixed_dictionaries({"extendedTextMessage": st.fixed_dictionaries({"text": texts})}),
    st.fixed_dictionaries({"audioMessage": audio}, optional={"base64": st.text(max_size=40)}),
    st.fixed_dictionaries({"imageMessage": st.fixed_dictionaries({"caption": texts})}),
    st.builds(lambda inner: {"ephemeralMessage": {"message": {"conversation": inner}}}, texts),
    st.dictionaries(st.text(max_size=20), json_values, max_size=3),
    json_values,
)

keys = st.fixed_dictionaries(
    {
        "id": _sometimes(st.text("0123456789ABCDEF", min_size=12, max_size=32), identifiers | json_values),
        "remoteJid": _sometimes(phone_jids, jids | json_values),
        "fromMe": _sometimes(st.booleans(), json_values),
    },
    optional={
        "remoteJidAlt": jids,
        "participant": jids,
        "senderPn": jids,
        "addressingMode": st.sampled_from(["pn", "lid"]),
    },
)

message_data = st.fixed_dictionaries(
    {
        "key": _sometimes(keys, json_values),
        "message": contents,
        "messageTimestamp": hostile_numbers,
    },
    optional={
        "pushName": _sometimes(
            st.text(max_size=30), hostile_strings(limit=PUSH_NAME_MAX_LENGTH) | json_values
        ),
        "messageType": st.text(max_size=20),
        "contextInfo": st.one_of(
            st.fixed_dictionaries({"stanzaId": identifiers, "quotedMessage": contents}), deeply_nested
        ),
        "status": st.text(max_size=12),
    },
)

events = _sometimes(
    st.sampled_from(["messages.upsert", "MESSAGES_UPSERT", "messages-upsert", "send.message"]),
    st.sampled_from(["connection.update", "messages.update", "qrcode.updated"]) | hostile_strings(limit=40),
)


def webhooks(instances: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """Whole webhook bodies; `instances` narrows the instance names (the real stack knows only some)."""
    instance = instances if instances is not None else _sometimes(st.sampled_from(INSTANCES), identifiers)
    return st.fixed_dictionaries(
        {"event": events, "instance": instance, "data": _sometimes(message_data, json_values)},
        optional={
            "date_time": st.text(max_size=30),
            "sender": jids,
            "apikey": st.none() | st.text(max_size=40),
            "destination": st.text(max_size=40),
        },
    )
