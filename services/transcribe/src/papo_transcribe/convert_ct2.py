"""Turn a CTranslate2 Whisper folder (what faster-whisper reads) back into a Hugging Face Whisper folder.

No registry package ships Hugging Face-format Whisper weights, but several ship CTranslate2 ones; this is the
inverse of ctranslate2's `WhisperLoader`, so the transformers engine runs offline on the same checkpoints.

    python -m papo_transcribe.convert_ct2 SRC DST
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path
from typing import Any, BinaryIO

from papo_transcribe.hf_whisper_config import count_layers, write_hf_metadata

# CTranslate2's dtype codes in model.bin (version 6): f32, i8, i16, i32, f16, bf16.
_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}


def _read(stream: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    return struct.unpack(fmt, stream.read(size))[0]


def _read_string(stream: BinaryIO) -> str:
    length = _read(stream, "<H")  # includes the trailing NUL
    return stream.read(length)[:-1].decode()


def read_ct2_variables(model_bin: Path) -> dict[str, Any]:
    """Every variable of a CTranslate2 model.bin as a torch tensor, with aliases resolved."""
    import torch

    variables: dict[str, Any] = {}
    with model_bin.open("rb") as stream:
        version = _read(stream, "<I")
        if version < 5:
            raise ValueError(f"{model_bin}: unsupported CTranslate2 model version {version}")
        spec = _read_string(stream)
        if spec != "WhisperSpec":
            raise ValueError(f"{model_bin}: not a Whisper model (spec {spec!r})")
        _read(stream, "<I")  # spec revision
        for _ in range(_read(stream, "<I")):
            name = _read_string(stream)
            shape = [_read(stream, "<I") for _ in range(_read(stream, "<B"))]
            dtype = getattr(torch, _DTYPES[_read(stream, "<B")])
            raw = bytearray(stream.read(_read(stream, "<I")))
            variables[name] = torch.frombuffer(raw, dtype=dtype).reshape(shape) if raw else torch.empty(0)
        for _ in range(_read(stream, "<I")):
            alias, target = _read_string(stream), _read_string(stream)
            variables[alias] = variables[target]
    return variables


def _weight(variables: dict[str, Any], prefix: str) -> Any:
    """A linear weight in floating point; int8/int16 weights carry a per-row scale to divide by."""
    weight = variables[f"{prefix}/weight"]
    scale = variables.get(f"{prefix}/weight_scale")
    if scale is not None and not weight.is_floating_point():
        return weight.float() / scale.float().reshape(-1, *([1] * (weight.dim() - 1)))
    return weight


def _attention(out: dict[str, Any], hf: str, variables: dict[str, Any], ct2: str, *, cross: bool) -> None:
    """Split CTranslate2's fused projections back into q, k, v (k has no bias in Whisper)."""
    if cross:
        q_weight, q_bias = _weight(variables, f"{ct2}/linear_0"), variables[f"{ct2}/linear_0/bias"]
        k_weight, v_weight = _weight(variables, f"{ct2}/linear_1").chunk(2)
        v_bias = variables[f"{ct2}/linear_1/bias"].chunk(2)[1]
        out_name = f"{ct2}/linear_2"
    else:
        q_weight, k_weight, v_weight = _weight(variables, f"{ct2}/linear_0").chunk(3)
        q_bias, _, v_bias = variables[f"{ct2}/linear_0/bias"].chunk(3)
        out_name = f"{ct2}/linear_1"
    out.update(
        {
            f"{hf}.q_proj.weight": q_weight, f"{hf}.q_proj.bias": q_bias,
            f"{hf}.k_proj.weight": k_weight,
            f"{hf}.v_proj.weight": v_weight, f"{hf}.v_proj.bias": v_bias,
            f"{hf}.out_proj.weight": _weight(variables, out_name), f"{hf}.out_proj.bias": variables[f"{out_name}/bias"],
        }
    )  # fmt: skip


def _norm(out: dict[str, Any], hf: str, variables: dict[str, Any], ct2: str) -> None:
    out[f"{hf}.weight"], out[f"{hf}.bias"] = variables[f"{ct2}/gamma"], variables[f"{ct2}/beta"]


def _linear(out: dict[str, Any], hf: str, variables: dict[str, Any], ct2: str) -> None:
    out[f"{hf}.weight"], out[f"{hf}.bias"] = _weight(variables, ct2), variables[f"{ct2}/bias"]


def to_hf_state_dict(variables: dict[str, Any]) -> dict[str, Any]:
    """The `WhisperForConditionalGeneration` state dict, float16, with `proj_out` tied to `embed_tokens`."""
    out: dict[str, Any] = {}
    for side in ("encoder", "decoder"):
        out[f"model.{side}.embed_positions.weight"] = variables[f"{side}/position_encodings/encodings"]
        _norm(out, f"model.{side}.layer_norm", variables, f"{side}/layer_norm")
        for index in range(count_layers(variables, side)):
            hf, ct2 = f"model.{side}.layers.{index}", f"{side}/layer_{index}"
            _attention(out, f"{hf}.self_attn", variables, f"{ct2}/self_attention", cross=False)
            _norm(out, f"{hf}.self_attn_layer_norm", variables, f"{ct2}/self_attention/layer_norm")
            if side == "decoder":
                _attention(out, f"{hf}.encoder_attn", variables, f"{ct2}/attention", cross=True)
                _norm(out, f"{hf}.encoder_attn_layer_norm", variables, f"{ct2}/attention/layer_norm")
            _linear(out, f"{hf}.fc1", variables, f"{ct2}/ffn/linear_0")
            _linear(out, f"{hf}.fc2", variables, f"{ct2}/ffn/linear_1")
            _norm(out, f"{hf}.final_layer_norm", variables, f"{ct2}/ffn/layer_norm")
    for conv in ("conv1", "conv2"):
        _linear(out, f"model.encoder.{conv}", variables, f"encoder/{conv}")
    out["model.decoder.embed_tokens.weight"] = variables["decoder/embeddings/weight"]
    return {name: tensor.half().contiguous() for name, tensor in out.items()}


def convert(source: Path, destination: Path) -> Path:
    """Write a Hugging Face Whisper folder (weights, config, generation config, tokenizer, feature
    extractor) converted from the CTranslate2 folder `source`. Returns `destination`."""
    from safetensors.torch import save_file

    variables = read_ct2_variables(source / "model.bin")
    ct2_config = json.loads((source / "config.json").read_text())
    destination.mkdir(parents=True, exist_ok=True)
    state = to_hf_state_dict(variables)
    save_file(state, str(destination / "model.safetensors"), metadata={"format": "pt"})
    write_hf_metadata(variables, ct2_config, source / "tokenizer.json", destination)
    return destination


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="CTranslate2 Whisper folder (model.bin, config.json, ...)")
    parser.add_argument("destination", type=Path, help="Hugging Face folder to write")
    args = parser.parse_args(argv)
    print(convert(args.source, args.destination))


if __name__ == "__main__":
    main()
