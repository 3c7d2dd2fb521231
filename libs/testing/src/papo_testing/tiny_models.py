"""Tiny chat models built in a test, offline: plumbing checks for code that runs Hugging Face models."""

from __future__ import annotations

from pathlib import Path

TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_WORDS = ("papo", "<unk>", "<|im_start|>", "<|im_end|>", "system", "user", "assistant", "oi", "hello")


def build_tiny_chat_model(folder: Path, *, first_token: str = "papo") -> Path:
    """A randomly initialised one-layer Llama and a word-level tokenizer with a ChatML template, saved
    like a hub model. Its final norm is zeroed, so every logit is 0 and greedy decoding always picks token
    id 0, `first_token`: the answer is that word repeated (or nothing, when it is the end-of-turn token)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = [first_token, *(word for word in TINY_WORDS if word != first_token)]
    vocab = {word: index for index, word in enumerate(words)}
    specials = ["<unk>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<|im_start|>", eos_token="<|im_end|>"
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=vocab["<|im_start|>"],
        eos_token_id=vocab["<|im_end|>"],
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.norm.weight.zero_()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
