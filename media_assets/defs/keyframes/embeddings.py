"""The work of the ``keyframe_embeddings`` asset, shared by the video's single decode pass
(`media_assets.defs.video.decode`) and the pass that samples clips or a direct upload alone:
embedding samples while ffmpeg decodes, sampling stored videos, and committing the table.
No asset is defined here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import botocore.exceptions
import dagster as dg
import numpy as np
import pyarrow as pa

from ...kernels.ffmpeg import FFmpegError
from ...kernels.frames import DeadFrameThresholds, dead_reason, jpeg_luma_thumbnail
from ...kernels.image_embedding import EmbeddingError
from ...kernels.keyframes import Samples, analysis_rate_for, extract_samples
from ...kernels.limits import LimitExceededError
from ...kernels.probe import MediaError
from ...resources.embedder import ImageEmbedderResource
from ...resources.keyframes import KeyframeSettings, VideoSource, listed_samples
from ...resources.video import VideoConversionSettings
from ...storage import ObjectNotFoundError, ObjectStore, safe_local_name
from ..common import download_bounded_video, input_failure, object_error
from ..output_set import OutputSet
from ..video.clips import verified_clips

BEDROCK_REFUSALS = ("AccessDeniedException", "ValidationException", "ResourceNotFoundException", "UnrecognizedClientException")


def embedding_failure(video: str, err: Exception) -> Exception:
    """The exception to raise for an embedding error of ``video``: an input failure (not
    retried) for a corrupt sample or a refusal by Bedrock that retrying cannot fix, else
    ``err`` itself (throttling, network: retried by the asset's retry policy)."""
    if isinstance(err, EmbeddingError):
        return input_failure(f"{video}: {err}")
    if isinstance(err, botocore.exceptions.ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        if code in BEDROCK_REFUSALS:
            return input_failure(
                f"{video}: Bedrock refused InvokeModel ({code}: {err.response['Error'].get('Message', '')}); check the IAM "
                "permission bedrock:InvokeModel and model access to amazon.titan-embed-image-v1 in this region"
            )
    return err


class SampleEmbedder:
    """The ``on_batch`` callback of a sampling pass: embeds each batch of sample JPEGs (and
    judges it black/blank) while ffmpeg keeps decoding.

    With ``defer_errors`` an embedding error stops further embedding but not the decode, and
    is kept in ``error`` (the single pass commits the clips and labeling frames before
    failing the key frames); otherwise it is raised and stops the decode.
    """

    def __init__(self, embedder: ImageEmbedderResource, defer_errors: bool = False):
        self.embedder, self.defer_errors = embedder, defer_errors
        self.chunks: list[np.ndarray] = []
        self.dead: list[str | None] = []
        self.seconds = 0.0
        self.error: Exception | None = None

    def __call__(self, batch: list[Path]) -> None:
        if self.error is not None:
            return
        t0 = time.perf_counter()
        try:
            self.chunks.append(self.embedder.embed_jpegs(batch))
        except (EmbeddingError, botocore.exceptions.ClientError) as err:
            if not self.defer_errors:
                raise
            self.error = err
            return
        self.dead.extend(_dead(p) for p in batch)
        self.seconds += time.perf_counter() - t0

    def embeddings(self) -> np.ndarray:
        """``(n_samples, d) float32``, L2-normalised."""
        return np.concatenate(self.chunks)


def _dead(path: Path) -> str | None:
    return dead_reason(jpeg_luma_thumbnail(path), None, DeadFrameThresholds())


def _stored_videos(store: ObjectStore, src: VideoSource, video: VideoConversionSettings, fps: float) -> list[tuple[str, str, int]]:
    """``(bucket, key, first sample index)`` of each stored file to sample, in timeline order:
    the direct upload, or the verified clips of a converted video."""
    if src.kind == "direct":
        return [(src.bucket, src.key, 0)]
    return [(video.mp4_bucket, c["key"], int(round(c["start_s"] * fps))) for c in verified_clips(store, video, src.key)["clips"]]


def sample_stored(store: ObjectStore, src: VideoSource, video: VideoConversionSettings, ks: KeyframeSettings,
                  embed: SampleEmbedder, tmp: Path) -> list[Samples]:
    """Sample (and embed, through ``embed``) the stored video(s) of ``src``, one file at a time.

    Raises:
        dg.Failure: a file is missing or cannot be decoded (input failure), or embedding failed.
    """
    parts = []
    try:
        limits = video.limits()
        for n, (bucket, key, start) in enumerate(_stored_videos(store, src, video, ks.fps)):
            local = tmp / f"in_{n}_{safe_local_name(key, '.mp4')}"
            try:
                local, info = download_bounded_video(store, bucket, key, local, limits)
                if info.video is None:
                    raise MediaError(f"{key}: no video stream")
                rate = analysis_rate_for(info.video.frame_rate, ks.fps) if ks.shot_analysis else None
                parts.append(extract_samples(local, tmp / f"s_{n}", fps=ks.fps, width=ks.width, height=ks.height, start_index=start,
                                             skip_bidir=ks.skip_bidir, on_batch=embed, batch_size=embed.embedder.batch_size,
                                             analysis_rate=rate, timeout_s=video.ffmpeg_time_limit_s(info)))
            except ObjectNotFoundError as err:
                raise input_failure(f"source video {bucket}/{key} does not exist") from err
            except (MediaError, FFmpegError) as err:
                message = f"{err}. The source object is kept." if isinstance(err, LimitExceededError) else object_error(f"{bucket}/{key}", err, local)
                raise input_failure(message, ffmpeg_log=getattr(err, "stderr_tail", "")) from err
            local.unlink()
    except (EmbeddingError, botocore.exceptions.ClientError) as err:
        raise embedding_failure(src.key, err) from err
    return parts


def _table(src: VideoSource, indices, timestamps, dead, shot, flash, emb: np.ndarray) -> pa.Table:
    d = emb.shape[1]
    return pa.table({
        "video": pa.array([src.key] * len(indices), pa.string()),
        "frame_index": pa.array(indices, pa.int64()),
        "timestamp_s": pa.array(timestamps, pa.float64()),
        "dead": pa.array(dead, pa.string()),
        "shot": pa.array(shot, pa.int32()),
        "flash": pa.array(flash, pa.bool_()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), d),
    })


def commit_embeddings(context: dg.AssetExecutionContext, store: ObjectStore, src: VideoSource, ks: KeyframeSettings,
                      parts: list[Samples], embed: SampleEmbedder, started: float) -> Iterator[dg.Output]:
    """Upload the samples of ``parts`` (files of one video in timeline order), then yield the
    embeddings table as the ``keyframe_embeddings`` output: Dagster has the ``keyframe_tables``
    IO manager store it while this generator waits at the ``yield`` (the commit point);
    samples of an earlier set that this one does not rewrite are removed only after that.
    If an upload fails, the new samples are rolled back here. If storing the table fails,
    the IO manager rolls them back itself (:class:`~media_assets.resources.keyframes.KeyframeTables`):
    Dagster does not resume or close this generator then, and the close that garbage collection
    brings later removes nothing.

    Raises:
        dg.Failure: no decodable frame, or the deferred embedding error of ``embed``.
    """
    if embed.error is not None:
        raise embedding_failure(src.key, embed.error) from embed.error
    paths, indices, shot, flash, hard_cuts = [], [], [], [], 0
    for samples in parts:
        paths += samples.paths
        indices += samples.indices.tolist()
        if samples.shots is None:
            shot += [None] * len(samples.paths)
            flash += [False] * len(samples.paths)
        else:  # a clip boundary is no cut: the first shot of a clip continues the last one
            shot += (samples.shots.shot + (shot[-1] if shot else 0)).tolist()
            flash += samples.shots.flash.tolist()
            hard_cuts += len(samples.shots.cuts_s)
    if not paths:
        raise input_failure(f"{src.key}: no decodable video frame")
    emb = embed.embeddings()
    table = _table(src, indices, [i / ks.fps for i in indices], embed.dead, shot, flash, emb)
    # every sample already in the folder counts as the previous set: kept if this attempt
    # fails (the previous table refers to them), removed after the commit unless rewritten
    existing = listed_samples(store, src)
    with OutputSet(store, src.out_bucket, context.log, previous=existing, concurrency=ks.transfer_concurrency) as out:
        for p, i in zip(paths, indices):
            out.upload(p, src.sample_key(i), "image/jpeg")
        out.wait()
        wall = time.perf_counter() - started
        output = dg.Output(table, output_name="keyframe_embeddings", metadata={
            "source": src.key if src.kind == "converted" else f"{src.bucket}/{src.key}",
            "frames_sampled": len(paths),
            "dead_samples": sum(d is not None for d in embed.dead),
            "hard_cuts": hard_cuts,
            "flash_samples": sum(flash),
            "embedding_backend": embed.embedder.backend,
            "embedding_dim": int(emb.shape[1]),
            "embed_s": round(embed.seconds, 3),  # embedding time, overlapped with decoding
            "video_s_per_wall_s": round(len(paths) / ks.fps / max(wall, 1e-9), 2),
        })
        try:
            yield output
        except GeneratorExit:  # never resumed: the table was not stored, or the run went away
            out.abandon()
            raise
        out.committed_elsewhere()
