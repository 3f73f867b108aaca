"""The work of the ``labeling_frames`` asset once ffmpeg has sampled: drop dead frames, upload
the rest, re-check them, commit the manifest, and the UI preview. No asset is defined here
(the frames come from the video's decode pass, `media_assets.defs.video.decode`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
from PIL import Image

from ...kernels.ffmpeg import FFmpegError
from ...kernels.frames import DeadFrameThresholds, RepeatFinder, SampledFrames, classify_dead_frames, jpeg_luma_thumbnail, sample_frames
from ...kernels.probe import MediaError, probe
from ...resources.video import VideoConversionSettings
from ...storage import ObjectStore, listed_children
from ..common import contact_sheet_markdown, input_failure, object_error, read_manifest, spread, write_manifest
from ..output_set import OutputSet, OutputSetUploads
from .clips import verified_clips

DEAD_FRAME_CHECK = "no_dead_frame_kept"
SHOWN_PER_REASON = 4  # dropped frames of each reason (black, blank, frozen) in the UI's preview


def _clearly_dead(t: DeadFrameThresholds) -> DeadFrameThresholds:
    """Thresholds for the re-check on decoded JPEGs: halfway stricter, so a frame that passed
    by a hair on ffmpeg's thumbnail is not flagged because PIL's decode differs by a little."""
    return DeadFrameThresholds(
        black_pixel_luma=t.black_pixel_luma,
        black_pixel_share=(1 + t.black_pixel_share) / 2,
        blank_luma_std=t.blank_luma_std / 2,
        frozen_mean_abs_diff=t.frozen_mean_abs_diff / 2,
    )


def _small(path: Path, width: int = 160) -> Image.Image:
    """A ``width`` px copy of the JPEG at ``path`` (kept in memory: the file is deleted)."""
    with Image.open(path) as img:
        img.draft("RGB", (width, width))
        small = img.convert("RGB")
    small.thumbnail((width, width))
    return small


def _reasons(dropped: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in dropped.items() if n) or "none"


def frames_from_clips(store: ObjectStore, settings: VideoConversionSettings, key: str, tmp: Path) -> Iterator[SampledFrames]:
    """The labeling frames of source ``key`` sampled from its verified clips, one clip at a time
    (each on the source's frame grid: its first frame's source index is in the manifest).

    Raises:
        dg.Failure: no clips manifest, or a clip cannot be decoded (input failures).
    """
    for clip in verified_clips(store, settings, key)["clips"]:
        local = store.download(settings.mp4_bucket, clip["key"], tmp / f"clip_{clip['index']}.mp4")
        try:
            frames = sample_frames(local, tmp / f"frames_{clip['index']}", every_n=settings.every_n_frames, start_index=clip["first_frame_index"],
                                   timeout_s=settings.ffmpeg_time_limit_s(probe(local)))
        except (MediaError, FFmpegError) as err:
            raise input_failure(f"cannot sample frames: {object_error(settings.mp4_bucket + '/' + clip['key'], err, local)}",
                                ffmpeg_log=getattr(err, "stderr_tail", "")) from err
        local.unlink()
        yield frames


class LabelingUploads(OutputSetUploads):
    """The labeling frames of one source: each batch handed to :meth:`add` (during the decode
    pass: the pass's labeling ``on_batch``; or from the clips) is judged (black, blank,
    frozen: `media_assets.kernels.frames`), its live frames uploaded to
    ``labeling_bucket/<video>/<frame index>.jpg`` and re-decoded for the ``no_dead_frame_kept``
    check; :meth:`finish` commits the frames manifest last and gives the ``labeling_frames``
    result. A context manager over an :class:`~media_assets.defs.output_set.OutputSet`:
    leaving it before :meth:`finish` removes what it uploaded; after the commit, frames of an
    earlier materialization that are not in this one are removed.
    """

    def __init__(self, context: dg.AssetExecutionContext, store: ObjectStore, settings: VideoConversionSettings, key: str):
        self.context, self.store, self.settings, self.key = context, store, settings, key
        self.prefix = settings.video_prefix(key)
        self.manifest_key = settings.manifest_key(key, "frames")
        previous = read_manifest(store, settings.mp4_bucket, self.manifest_key)
        self.thresholds = settings.dead_frame_thresholds()
        self.kept: list[tuple[Path, int]] = []
        self.recheck_thumbs: list[np.ndarray] = []
        self.dropped = {"black": 0, "blank": 0, "frozen": 0}
        self.dropped_tiles: list[tuple[Image.Image, str]] = []
        self.n_sampled = 0
        self._last_kept = None
        self.repeats = RepeatFinder(settings.frame_repeat_max_bits)
        self.repeat_of: dict[int, int] = {}  # frame index -> the distinct frame it repeats
        self.repeat_tiles: list[tuple[Image.Image, str]] = []
        self._distinct_paths: dict[int, Path] = {}
        self.out = OutputSet(store, settings.labeling_bucket, context.log, concurrency=settings.upload_concurrency,
                             previous=(previous or {}).get("frame_keys", []),
                             leftovers=listed_children(store, settings.labeling_bucket, self.prefix, ".jpg", numbered=True))

    def add(self, frames: SampledFrames) -> None:
        """Judge the next frames of the timeline, start uploading the live ones, drop the rest."""
        self.n_sampled += len(frames.paths)
        reasons = classify_dead_frames(frames.thumbnails, self.thresholds, previous_kept=self._last_kept)
        for path, idx, thumb, reason in zip(frames.paths, frames.frame_indices, frames.thumbnails, reasons):
            if reason:
                self.dropped[reason] += 1
                if self.dropped[reason] <= SHOWN_PER_REASON:  # a few of each reason for the UI
                    self.dropped_tiles.append((_small(path), f"#{int(idx)} {reason}"))
                path.unlink()
                continue
            if self._is_repeat(path, int(idx), thumb) and self.settings.frame_repeats == "drop":
                path.unlink()  # not sent to labeling, so not the "previous kept" frame of the frozen test
                continue
            self._last_kept = thumb
            self.kept.append((path, int(idx)))
            self.out.upload(path, f"{self.prefix}/{int(idx)}.jpg", "image/jpeg")
            self.recheck_thumbs.append(jpeg_luma_thumbnail(path))  # the JPEG as uploaded, decoded again

    def _is_repeat(self, path: Path, idx: int, thumb: np.ndarray) -> bool:
        """Record whether frame ``idx`` repeats an earlier distinct frame (a few pairs are kept
        as tiles for the UI)."""
        original = self.repeats.repeat_of(thumb, idx)
        if original is None:
            self._distinct_paths[idx] = path
            return False
        self.repeat_of[idx] = original
        if len(self.repeat_of) <= SHOWN_PER_REASON:
            self.repeat_tiles += [(_small(path), f"#{idx} repeats"), (_small(self._distinct_paths[original]), f"#{original}")]
        return True

    def finish(self, check: bool = True) -> dg.MaterializeResult:
        """Wait for the uploads, commit the frames manifest, and return the ``labeling_frames``
        result (with the ``no_dead_frame_kept`` check when ``check``: none of the uploaded
        JPEGs, decoded again, is dead by thresholds halfway stricter than the judgement's)."""
        self.out.wait()
        thumbs = np.stack(self.recheck_thumbs) if self.recheck_thumbs else np.zeros((0, 36, 64), np.uint8)
        recheck = [r for r in classify_dead_frames(thumbs, _clearly_dead(self.thresholds)) if r]
        kept_indices = [i for _, i in self.kept]
        kept_tiles = [(p, f"#{i} kept") for p, i in spread(self.kept, 2 * SHOWN_PER_REASON)]
        n_dropped = sum(self.dropped.values())
        preview = (contact_sheet_markdown(kept_tiles, f"kept: {len(self.kept)} of {self.n_sampled} sampled frames", total=len(self.kept))
                   + "\n\n" + contact_sheet_markdown(self.dropped_tiles, f"dropped: {n_dropped} ({_reasons(self.dropped)})",
                                                       total=n_dropped, suffix=", a few of each reason")
                   + "\n\n" + contact_sheet_markdown(self.repeat_tiles, f"repeats: {len(self.repeat_of)} ({self.settings.frame_repeats}), each "
                                                       "beside the frame it repeats" if self.repeat_of else "repeats",
                                                       total=2 * len(self.repeat_of), suffix=", the first few" if self.repeat_of else ""))
        uploaded = list(self.out.written)
        manifest = {
            "source_key": self.key, "frame_keys": uploaded, "frame_indices": kept_indices,
            "dropped": self.dropped, "n_sampled": self.n_sampled,
            "repeat_of": {str(i): o for i, o in self.repeat_of.items()}, "repeats": self.settings.frame_repeats,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(), "run_id": self.context.run.run_id,
        }
        self.out.commit(lambda: write_manifest(self.store, self.settings.mp4_bucket, self.manifest_key, manifest))
        checks = [dg.AssetCheckResult(asset_key="labeling_frames", check_name=DEAD_FRAME_CHECK, passed=not recheck,
                                      metadata={"frames_checked": len(self.kept), "dead_found": len(recheck)})] if check else []
        return dg.MaterializeResult(
            asset_key="labeling_frames",
            metadata={
                "frames_sampled": self.n_sampled,
                "frames_kept": len(uploaded),
                "frames_dropped": sum(self.dropped.values()),
                "dropped_black": self.dropped["black"],
                "dropped_blank": self.dropped["blank"],
                "dropped_frozen": self.dropped["frozen"],
                "distinct_frames": len(self.repeats.frame_indices),
                "repeat_frames": len(self.repeat_of),
                "repeats": self.settings.frame_repeats,
                "manifest": dg.MetadataValue.path(f"{self.settings.mp4_bucket}/{self.manifest_key}"),  # lists every frame key
                "frames": dg.MetadataValue.md(preview),
            },
            check_results=checks,
        )
