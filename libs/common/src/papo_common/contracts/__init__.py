"""Message schemas exchanged over the broker, one module per producing stage."""

from papo_common.contracts.base import Contract, ConversationRef, utcnow
from papo_common.contracts.burst import Burst, BurstItem, FlushReason
from papo_common.contracts.inbound import AudioAttachment, InboundMessage, MessageKind, QuotedMessage
from papo_common.contracts.reply import Reply, ReplyKind, ReplySent, TokenUsage
from papo_common.contracts.session import CloseReason, SessionClosed
from papo_common.contracts.transcript import UNDERSTOOD_NOTHING, Transcript

ALL_CONTRACTS: tuple[type[Contract], ...] = (
    InboundMessage,
    Transcript,
    Burst,
    Reply,
    ReplySent,
    SessionClosed,
)

__all__ = [
    "ALL_CONTRACTS",
    "UNDERSTOOD_NOTHING",
    "AudioAttachment",
    "Burst",
    "BurstItem",
    "CloseReason",
    "Contract",
    "ConversationRef",
    "FlushReason",
    "InboundMessage",
    "MessageKind",
    "QuotedMessage",
    "Reply",
    "ReplyKind",
    "ReplySent",
    "SessionClosed",
    "TokenUsage",
    "Transcript",
    "utcnow",
]
