"""Tables. Every row carries its instance: several WhatsApp numbers share one deployment."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Index, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from papo_common.contracts.base import (
    BURST_ID_MAX_LENGTH,
    INSTANCE_MAX_LENGTH,
    JID_MAX_LENGTH,
    MESSAGE_ID_MAX_LENGTH,
    MODEL_NAME_MAX_LENGTH,
    PUSH_NAME_MAX_LENGTH,
)


class MessageRole(StrEnum):
    USER = "user"
    """The person writing to the business."""
    OPERATOR = "operator"
    """A human at the business, typing from the business's phone (`fromMe`)."""
    ASSISTANT = "assistant"
    """papo's reply."""
    SYSTEM = "system"
    """A record of papo's own, such as a session closing (kind `session_closed`)."""


def _timestamp(*, nullable: bool = False, default_now: bool = False) -> Column[datetime]:
    return Column(
        DateTime(timezone=True),
        nullable=nullable,
        server_default=func.now() if default_now else None,
    )


class Conversation(SQLModel, table=True):
    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("instance", "user_id", name="uq_conversations_instance_user"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    instance: str = Field(sa_column=Column(String(INSTANCE_MAX_LENGTH), nullable=False))
    user_id: str = Field(sa_column=Column(String(JID_MAX_LENGTH), nullable=False))
    chat_id: str = Field(sa_column=Column(String(JID_MAX_LENGTH), nullable=False))
    push_name: str | None = Field(default=None, sa_column=Column(String(PUSH_NAME_MAX_LENGTH), nullable=True))
    created_at: datetime | None = Field(default=None, sa_column=_timestamp(default_now=True))
    last_message_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class Message(SQLModel, table=True):
    """One WhatsApp message in or out. `external_id` is WhatsApp's `key.id` for inbound and operator
    messages and papo's reply id for replies; (instance, external_id) is unique, which makes every insert
    idempotent."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("instance", "external_id", name="uq_messages_instance_external_id"),
        Index("ix_messages_conversation_sent_at", "conversation_id", "sent_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    conversation_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    )
    instance: str = Field(sa_column=Column(String(INSTANCE_MAX_LENGTH), nullable=False))
    external_id: str = Field(sa_column=Column(String(MESSAGE_ID_MAX_LENGTH), nullable=False))
    role: str = Field(sa_column=Column(String(16), nullable=False))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    transcription_failure: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    burst_id: str | None = Field(default=None, sa_column=Column(String(BURST_ID_MAX_LENGTH), nullable=True))
    in_reply_to: list[str] | None = Field(
        default=None, sa_column=Column(ARRAY(String(MESSAGE_ID_MAX_LENGTH)), nullable=True)
    )
    model: str | None = Field(default=None, sa_column=Column(String(MODEL_NAME_MAX_LENGTH), nullable=True))
    whatsapp_ids: list[str] | None = Field(
        default=None, sa_column=Column(ARRAY(String(MESSAGE_ID_MAX_LENGTH)), nullable=True)
    )
    sent_at: datetime = Field(sa_column=_timestamp())
    received_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    delivered_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    created_at: datetime | None = Field(default=None, sa_column=_timestamp(default_now=True))


class PersonIdentity(SQLModel, table=True):
    """One of the JIDs a person is addressed by on one instance (a phone JID or an `@lid`) and the
    conversation they belong to (`conversations.user_id`): the lasting copy of ingest's identity map."""

    __tablename__ = "person_identities"
    __table_args__ = (Index("ix_person_identities_user", "instance", "user_id"),)

    instance: str = Field(sa_column=Column(String(INSTANCE_MAX_LENGTH), primary_key=True))
    jid: str = Field(sa_column=Column(String(JID_MAX_LENGTH), primary_key=True))
    user_id: str = Field(sa_column=Column(String(JID_MAX_LENGTH), nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=_timestamp(default_now=True))
