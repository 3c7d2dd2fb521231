"""Chat engines: what answers a prompt. `PAPO_LLM_ENGINE` picks one."""

from __future__ import annotations

from papo_llm.engines.base import ChatEngine, ChatMessage, Completion, CompletionFailed
from papo_llm.settings import LlmSettings


def make_engine(settings: LlmSettings) -> ChatEngine:
    """The engine `settings.llm_engine` names."""
    if settings.llm_engine == "openai":
        from papo_llm.engines.openai import OpenAIChatEngine

        return OpenAIChatEngine.from_settings(settings)
    raise ValueError(f"unknown llm engine {settings.llm_engine!r}")


__all__ = ["ChatEngine", "ChatMessage", "Completion", "CompletionFailed", "make_engine"]
