"""Message schemas exchanged over the broker, one module per producing stage."""

from papo_common.contracts.base import Contract, ConversationRef, utcnow
from papo_common.contracts.burst import Burst, BurstItem, FlushReason
from papo_common.contracts.inbound import AudioAttachment, InboundMessage, MessageKind, QuotedMessage
from papo_common.contracts.reply import Reply, ReplySent, TokenUsage
from papo_common.contracts.transcript import UNDERSTOOD_NOTHING, Transcript

ALL_CONTRACTS: tuple[type[Contract], ...] = (InboundMessage, Transcript, Burst, Reply, ReplySent)

__all__ = [
    "ALL_CONTRACTS",
    "UNDERSTOOD_NOTHING",
    "AudioAttachment",
    "Burst",
    "BurstItem",
    "Contract",
    "ConversationRef",
    "FlushReason",
    "InboundMessage",
    "MessageKind",
    "QuotedMessage",
    "Reply",
    "ReplySent",
    "TokenUsage",
    "Transcript",
    "utcnow",
]
