"""The image-embedder resource: Bedrock Titan Multimodal (production) or a local CNN (offline)."""

import concurrent.futures
import threading
from pathlib import Path

import boto3
import botocore.config
import dagster as dg
import numpy as np
from pydantic import PrivateAttr

from ..kernels.image_embedding import (
    TITAN_MODEL_ID,
    MobileNetV2Embedder,
    parse_titan_response,
    titan_request_body,
)

# Calibrated cosine thresholds (see benchmarks/keyframes_quality.py): Titan keeps the original
# 0.9; MobileNetV2's pooled features are post-ReLU (non-negative), so unrelated frames already
# score well above 0 and the threshold sits higher.
DEFAULT_THRESHOLDS = {"titan": 0.9, "local": 0.85}

_LOCAL_MODELS: dict[tuple, MobileNetV2Embedder] = {}
_LOCAL_LOCK = threading.Lock()


def local_model(model_path: str | None = None, threads: int | None = None) -> MobileNetV2Embedder:
    """The local model, loaded once per process (cached by configuration)."""
    key = (model_path, threads)
    with _LOCAL_LOCK:
        if key not in _LOCAL_MODELS:
            _LOCAL_MODELS[key] = MobileNetV2Embedder(model_path, threads=threads)
        return _LOCAL_MODELS[key]


class ImageEmbedderResource(dg.ConfigurableResource):
    """Embeds JPEG frames; ``embed_jpegs(paths) -> (n, dimension) float32`` L2-normalised.

    Attributes:
        backend: ``local`` (MobileNetV2 ONNX from a PyPI wheel, onnxruntime on CPU, 1280-d;
            the offline default) or ``titan`` (Bedrock ``amazon.titan-embed-image-v1``).
        titan_dimension: Titan ``outputEmbeddingLength``: 256, 384 or 1024.
        region_name / endpoint_url: Bedrock runtime client settings.
        max_attempts: botocore ``adaptive`` retry mode attempts (ThrottlingException, 5xx).
        max_concurrency: Titan requests in flight at once.
        local_model_path: local backend ``.onnx`` (``None`` = the wheel's MobileNetV2).
        local_threads: onnxruntime threads (``None`` = all cores).
        batch_size: local backend frames per forward pass.
    """

    backend: str = "local"
    titan_dimension: int = 1024
    region_name: str | None = None
    endpoint_url: str | None = None
    max_attempts: int = 8
    max_concurrency: int = 8
    local_model_path: str | None = None
    local_threads: int | None = None
    batch_size: int = 16

    _client = PrivateAttr(default=None)

    @property
    def dimension(self) -> int:
        return self.titan_dimension if self.backend == "titan" else MobileNetV2Embedder.dimension

    def default_threshold(self) -> float:
        """The calibrated ``difference_threshold`` for this backend."""
        return DEFAULT_THRESHOLDS[self.backend]

    def bedrock_client(self):
        if self._client is None:
            self._client = boto3.client(
                "bedrock-runtime",
                region_name=self.region_name,
                endpoint_url=self.endpoint_url,
                config=botocore.config.Config(retries={"mode": "adaptive", "max_attempts": self.max_attempts}, max_pool_connections=max(10, self.max_concurrency)),
            )
        return self._client

    def _titan_one(self, path: Path) -> np.ndarray:
        response = self.bedrock_client().invoke_model(
            modelId=TITAN_MODEL_ID,
            body=titan_request_body(Path(path).read_bytes(), self.titan_dimension),
            contentType="application/json",
            accept="application/json",
        )
        return parse_titan_response(response["body"].read(), self.titan_dimension)

    def embed_jpegs(self, paths: list[Path]) -> np.ndarray:
        """``(n, dimension) float32`` L2-normalised embeddings of the JPEG files.

        Raises:
            ValueError: unknown backend.
            botocore.exceptions.ClientError: Bedrock refused (e.g. AccessDeniedException), after
                botocore's retries for throttling and transient errors.
            EmbeddingError: Bedrock answered with an unusable body.
        """
        if self.backend == "local":
            return local_model(self.local_model_path, self.local_threads).embed_jpegs(paths, self.batch_size)
        if self.backend != "titan":
            raise ValueError(f"unknown embedder backend {self.backend!r}: expected 'local' or 'titan'")
        with concurrent.futures.ThreadPoolExecutor(self.max_concurrency) as pool:
            futures = [pool.submit(self._titan_one, p) for p in paths]
            try:
                vectors = [f.result() for f in futures]
            except BaseException:
                for f in futures:  # one refusal stops the rest: no point paying for them
                    f.cancel()
                raise
        emb = np.stack(vectors) if vectors else np.zeros((0, self.titan_dimension), np.float32)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return (emb / np.maximum(norms, 1e-12)).astype(np.float32)
