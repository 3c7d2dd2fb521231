"""The Hugging Face side files of a converted Whisper model: model config, generation config (without
`lang_to_id`/`task_to_id` the language cannot be forced), tokenizer and feature extractor."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_TIMESTAMPS = 1501
"""`<|0.00|>` to `<|30.00|>`: the tokens after `<|notimestamps|>` that CTranslate2's tokenizer.json omits."""


def count_layers(variables: dict[str, Any], side: str) -> int:
    """How many transformer layers one side (`encoder` or `decoder`) of a CTranslate2 Whisper model has."""
    pattern = re.compile(rf"^{side}/layer_(\d+)/")
    return len({match[1] for name in variables if (match := pattern.match(name))})


def _token_ids(tokenizer_json: Path) -> dict[str, int]:
    return {token["content"]: token["id"] for token in json.loads(tokenizer_json.read_text())["added_tokens"]}


def write_hf_metadata(
    variables: dict[str, Any], ct2_config: dict[str, Any], tokenizer_json: Path, destination: Path
) -> None:
    """Write config.json, generation_config.json, the tokenizer and preprocessor_config.json."""
    import transformers

    hf: Any = transformers  # loosely typed library: its constructors take **kwargs

    ids = _token_ids(tokenizer_json)
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    vocab_size, d_model = variables["decoder/embeddings/weight"].shape
    num_mel_bins = variables["encoder/conv1/weight"].shape[1]
    # English-only checkpoints have one token fewer; their tokenizers still list the language tokens.
    multilingual = vocab_size >= 51865
    suppress = list(ct2_config.get("suppress_ids", []))
    begin_suppress = list(ct2_config.get("suppress_ids_begin", [220, eot]))
    config = hf.WhisperConfig(
        vocab_size=int(vocab_size),
        num_mel_bins=int(num_mel_bins),
        d_model=int(d_model),
        encoder_layers=count_layers(variables, "encoder"),
        decoder_layers=count_layers(variables, "decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"].item()),
        decoder_attention_heads=int(variables["decoder/num_heads"].item()),
        encoder_ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(variables["decoder/position_encodings/encodings"].shape[0]),
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        # Suppression lives in the generation config only: transformers warns when both carry it.
        suppress_tokens=None,
        begin_suppress_tokens=None,
        tie_word_embeddings=True,
        architectures=["WhisperForConditionalGeneration"],
    )
    config.save_pretrained(destination)

    language_ids = set(ct2_config.get("lang_ids", []))
    languages = {token: token_id for token, token_id in ids.items() if token_id in language_ids}
    generation = hf.GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=config.max_target_positions,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        alignment_heads=[list(pair) for pair in ct2_config.get("alignment_heads", [])],
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids.get("<|startofprev|>"),
        max_initial_timestamp_index=50,
        return_timestamps=False,
        is_multilingual=multilingual,
    )
    if multilingual:
        generation.lang_to_id = languages
        generation.task_to_id = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
    generation.save_pretrained(destination)

    special = "<|endoftext|>"
    tokenizer = hf.WhisperTokenizer(
        tokenizer_file=str(tokenizer_json),
        unk_token=special,
        bos_token=special,
        eos_token=special,
        pad_token=special,
    )
    tokenizer.add_tokens([f"<|{index * 0.02:.2f}|>" for index in range(_TIMESTAMPS)])
    if len(tokenizer) != vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's vocabulary has {vocab_size}")
    tokenizer.save_pretrained(destination)
    hf.WhisperFeatureExtractor(feature_size=int(num_mel_bins)).save_pretrained(destination)
