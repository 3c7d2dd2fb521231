"""One generation with a loaded chat model: its chat template, bounded new tokens, a deadline."""

from __future__ import annotations

import time
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from papo_common.errors import DependencyUnavailable
from papo_llm.engines.base import ChatMessage, Completion, CompletionFailed
from papo_llm.engines.model_loader import LoadedModel


class GenerationTimedOut(DependencyUnavailable):
    """The completion outlasted its deadline, waiting for the model or generating. Not permanent: a less
    busy replica, or this one later, may well answer in time."""


class _Deadline(StoppingCriteria):
    """Stops generating once the deadline has passed, and remembers that it did."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.reached = False

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        self.reached = time.monotonic() >= self.deadline
        return torch.full((input_ids.shape[0],), self.reached, dtype=torch.bool, device=input_ids.device)


def generate_reply(
    loaded: LoadedModel,
    messages: list[ChatMessage],
    *,
    model_name: str,
    max_tokens: int,
    temperature: float,
    deadline: float,
    timeout_seconds: float,
) -> Completion:
    """Answer `messages` (blocking: run it on a worker thread). Greedy at temperature 0, sampled otherwise;
    usage is counted with the model's tokenizer. `GenerationTimedOut` when `deadline` (monotonic) passes
    before or during generation; `CompletionFailed` when the answer has no text."""
    if time.monotonic() >= deadline:
        raise GenerationTimedOut(f"waited over {timeout_seconds:g}s for the model")
    tokenizer = loaded.tokenizer
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    ).to(loaded.device)
    prompt_tokens = int(inputs["input_ids"].shape[1])
    stop = _Deadline(deadline)
    sampling: dict[str, Any] = (
        {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    )
    with torch.inference_mode():
        output = loaded.model.generate(
            **inputs,
            max_new_tokens=max_tokens,
            stopping_criteria=StoppingCriteriaList([stop]),
            pad_token_id=tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id,
            **sampling,
        )
    if stop.reached:
        raise GenerationTimedOut(f"generation outlasted {timeout_seconds:g}s")
    new_tokens = output[0, prompt_tokens:]
    text = tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
    if not text:
        raise CompletionFailed("the local model answered with no text")
    return Completion(
        text=text, model=model_name, prompt_tokens=prompt_tokens, completion_tokens=int(new_tokens.shape[0])
    )
