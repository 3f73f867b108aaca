"""The work of the ``mp4_clips`` asset around the encode: upload each clip as ffmpeg finishes it,
verify the clips, commit the manifest, and the materialization's metadata. No asset is defined here (the
clips come from the video's decode pass, `media_assets.defs.video.decode`)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from ...kernels.probe import MediaInfo
from ...kernels.transcode import VerificationError, expected_duration_s, verify_clips
from ...resources.video import VideoConversionSettings
from ...storage import ObjectInfo, ObjectStore, listed_children
from ..common import input_failure, read_manifest, write_manifest
from ..output_set import OutputSet, OutputSetUploads

CLIP_CHECK = "clip_durations_match_source"

CLIP_TABLE = dg.TableSchema(columns=[
    dg.TableColumn("clip", "string"), dg.TableColumn("start_s", "float"), dg.TableColumn("duration_s", "float"),
    dg.TableColumn("frames", "int"), dg.TableColumn("size_bytes", "int"), dg.TableColumn("codecs", "string"),
    dg.TableColumn("uri", "string")])


def verified_clips(store: ObjectStore, settings: VideoConversionSettings, key: str) -> dict:
    """The committed clips manifest of source ``key`` (for outputs decoded from the clips).

    Raises:
        dg.Failure: no clips were committed for ``key`` (input failure naming the asset to run).
    """
    manifest = read_manifest(store, settings.mp4_bucket, settings.manifest_key(key, "clips"))
    if manifest is None:
        raise input_failure(f"no verified clips for {key!r}: materialize mp4_clips for this partition first")
    return manifest


def clips_result(manifest: dict, settings: VideoConversionSettings, store: ObjectStore, check: bool = True, **extra) -> dg.MaterializeResult:
    """The ``mp4_clips`` materialization of a committed clips manifest: one table row per clip
    (with its ``file://``/``s3://`` URI), the first clip as a link, plottable totals (seconds,
    bytes) for the Plots tab, and the duration check (when ``check``: it is selected)."""
    clips = manifest["clips"]
    rows = [dg.TableRecord({"clip": Path(c["key"]).name, "start_s": round(c.get("start_s", 0.0), 3), "duration_s": round(c["duration_s"], 3),
                            "frames": c.get("n_frames", 0), "size_bytes": c["size_bytes"],
                            "codecs": f"{c['video_codec']}/{c['audio_codec'] or 'none'}", "uri": store.uri(settings.mp4_bucket, c["key"])})
            for c in clips]
    total = sum(c["duration_s"] for c in clips)
    expected = manifest["source"]["expected_duration_s"]
    checks = [dg.AssetCheckResult(
        asset_key="mp4_clips", check_name=CLIP_CHECK, passed=abs(total - expected) <= settings.duration_tolerance_s,
        metadata={"clips_total_s": round(total, 3), "source_s": round(expected, 3), "tolerance_s": settings.duration_tolerance_s},
    )] if check else []
    return dg.MaterializeResult(
        asset_key="mp4_clips",
        metadata={
            "clips": dg.MetadataValue.table(rows, schema=CLIP_TABLE),
            "first_clip": dg.MetadataValue.url(store.uri(settings.mp4_bucket, clips[0]["key"])) if clips else "none",
            "clip_keys": [c["key"] for c in clips],
            "n_clips": len(clips),
            "clips_total_s": dg.MetadataValue.float(round(total, 3)),
            "clips_total_bytes": dg.MetadataValue.int(sum(c["size_bytes"] for c in clips)),
            "codec": "h264/" + (clips[0]["audio_codec"] or "none"),
            "source_duration_s": round(expected, 3),
            "manifest": dg.MetadataValue.url(store.uri(settings.mp4_bucket, settings.manifest_key(manifest["source"]["key"], "clips"))),
            **extra,
        },
        check_results=checks,
    )


class ClipUploads(OutputSetUploads):
    """The clips of one source, uploaded to ``mp4_bucket/<video>/`` as the encoder finishes each
    one (:meth:`add`, the ``on_clip`` of the decode pass) and committed by :meth:`commit` after
    the pass. A context manager over an :class:`~media_assets.defs.output_set.OutputSet`:
    leaving it without a commit removes what it uploaded; after the commit, clips of the
    previous manifest or of a killed run that this set does not rewrite are removed.
    """

    def __init__(self, context: dg.AssetExecutionContext, store: ObjectStore, settings: VideoConversionSettings, key: str,
                 previous: dict | None):
        self.context, self.store, self.settings = context, store, settings
        self.prefix = settings.video_prefix(key)
        self.out = OutputSet(store, settings.mp4_bucket, context.log, previous=[c["key"] for c in (previous or {}).get("clips", [])],
                             leftovers=listed_children(store, settings.mp4_bucket, self.prefix, ".mp4"), concurrency=2)
        self._uploads: dict[str, object] = {}  # clip file name -> upload future

    def add(self, paths: list[Path]) -> None:
        """Start uploading the finished clip files ``paths`` (not yet verified)."""
        for path in paths:
            if path.name not in self._uploads:
                self._uploads[path.name] = self.out.upload(path, f"{self.prefix}/{path.name}", "video/mp4")

    def commit(self, source: ObjectInfo, info: MediaInfo, paths: list[Path]) -> dict:
        """Verify the encoded ``paths`` against the source (probe: streams, durations), upload
        any not uploaded yet, check every stored size, and commit the clips manifest last;
        returns the manifest.

        Raises:
            dg.Failure: verification failed (input failure naming the clip; the source is kept).
            VerificationError: a stored clip's size differs from the file written (retried).
        """
        key, settings = source.key, self.settings
        try:
            verified = verify_clips(paths, info, max_duration_s=settings.max_duration_s, clip_s=settings.clip_s, tolerance_s=settings.duration_tolerance_s)
        except VerificationError as err:
            raise input_failure(f"{source.bucket}/{key}: {err}. The source object is kept.", source=f"{source.bucket}/{key}", error=type(err).__name__) from err
        self.add([clip.path for clip in verified])
        self.out.wait()
        entries, first_frame = [], 0
        for clip in verified:
            head = self._uploads[clip.path.name].result()
            if head.size != clip.size_bytes:
                raise VerificationError(f"{settings.mp4_bucket}/{head.key}: stored {head.size} bytes, wrote {clip.size_bytes}")
            entries.append({
                "key": head.key, "index": clip.index, "start_s": clip.start_s, "duration_s": clip.duration_s,
                "n_frames": clip.n_frames, "first_frame_index": first_frame, "size_bytes": clip.size_bytes,
                "video_codec": clip.video_codec, "audio_codec": clip.audio_codec, "etag": head.etag,
            })
            first_frame += clip.n_frames
        manifest = {
            "source": {"bucket": source.bucket, "key": key, "etag": source.etag, "size_bytes": source.size,
                       "duration_s": info.duration_s, "expected_duration_s": expected_duration_s(info),
                       "frame_rate": info.video.frame_rate if info.video else None},
            "clips": entries,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "run_id": self.context.run.run_id,
        }
        self.out.commit(lambda: write_manifest(self.store, settings.mp4_bucket, settings.manifest_key(key, "clips"), manifest))
        return manifest
