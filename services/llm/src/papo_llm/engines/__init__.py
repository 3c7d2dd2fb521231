"""Chat engines: what answers a prompt. `PAPO_LLM_ENGINE` picks one (see `LlmSettings.engine`)."""

from __future__ import annotations

import logging

from papo_llm.engines.base import ChatEngine, ChatMessage, Completion, CompletionFailed
from papo_llm.settings import LlmSettings

logger = logging.getLogger(__name__)


def make_engine(settings: LlmSettings) -> ChatEngine:
    """The engine `settings.engine` names, with the choice and the reason for it logged."""
    engine: ChatEngine
    if settings.engine == "local":
        try:
            from papo_llm.engines.local import LocalChatEngine
        except ImportError as error:
            raise RuntimeError(
                f"the local llm engine needs torch and transformers ({error}): install papo-llm[local], "
                "or set PAPO_LLM_API_KEY (or PAPO_LLM_BASE_URL) to use a model server"
            ) from error
        engine = LocalChatEngine.from_settings(settings)
    else:
        from papo_llm.engines.openai import OpenAIChatEngine

        engine = OpenAIChatEngine.from_settings(settings)
    logger.info(
        f"llm engine: {settings.engine}, model {engine.model} ({_why(settings)})",
        extra={"engine": settings.engine, "model": engine.model},
    )
    return engine


def _why(settings: LlmSettings) -> str:
    if settings.llm_engine is not None:
        return "PAPO_LLM_ENGINE"
    if settings.engine == "local":
        return "no PAPO_LLM_API_KEY or OPENAI_API_KEY and no custom PAPO_LLM_BASE_URL"
    return "an API key or a custom PAPO_LLM_BASE_URL is set"


__all__ = ["ChatEngine", "ChatMessage", "Completion", "CompletionFailed", "make_engine"]
