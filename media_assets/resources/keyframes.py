"""Settings of the key-frame pipeline, where a video's key-frame outputs live, and the IO
manager of its ``keyframe_embeddings`` table."""

from dataclasses import dataclass
from typing import Literal

import dagster as dg

from ..storage import ObjectNotFoundError, listed_children
from ..storage.tables import ParquetTables, read_parquet_bytes


@dataclass(frozen=True)
class VideoSource:
    """Where one partition's video comes from and where its key-frame outputs go.

    ``kind`` is ``direct`` (one uploaded video object) or ``converted`` (the clips of
    ``mp4_clips``); outputs go to ``out_bucket`` under ``<out_prefix>/<folder>/<stem>/``.
    """

    kind: str
    bucket: str
    key: str
    out_bucket: str
    out_prefix: str
    stem: str

    def _folder(self, folder: str) -> str:
        return f"{self.out_prefix}/{folder}" if self.out_prefix else folder

    def out_key(self, folder: str, name: str) -> str:
        return f"{self._folder(folder)}/{self.stem}/{name}"

    def sample_key(self, index: int) -> str:
        """``<prefix>/samples/<stem>/<index>.jpg``: sample ``index`` (the frame at ``index / fps`` s)."""
        return self.out_key("samples", f"{index}.jpg")

    def embeddings_key(self) -> str:
        """``<prefix>/embeddings/<stem>.parquet``, the ``keyframe_embeddings`` table, its file
        name made readable by every reader with :func:`table_file_stem`."""
        return f"{self._folder('embeddings')}/{table_file_stem(self.stem)}.parquet"


# pyarrow.dataset (and Hugging Face datasets, built on it) skips files whose name starts with
# "." or "_" (its ignore_prefixes); DuckDB and polars read them: the readers would disagree
_HIDDEN_PREFIXES = {".": "%2E", "_": "%5F"}


def table_file_stem(stem: str) -> str:
    """``stem`` as the name of a table file every Parquet reader reads: ``%`` written ``%25``
    and a leading ``.`` or ``_`` written ``%2E`` / ``%5F`` (percent-encoding, so two stems never
    share a file): ``.hidden`` -> ``%2Ehidden``, ``_x`` -> ``%5Fx``, ``bikes`` -> ``bikes``.
    Only the last path segment is a file name; folders are kept."""
    folder, slash, name = stem.rpartition("/")
    name = name.replace("%", "%25")
    if name[:1] in _HIDDEN_PREFIXES:
        name = _HIDDEN_PREFIXES[name[0]] + name[1:]
    return folder + slash + name


class KeyframeSettings(dg.ConfigurableResource):
    """Configuration of ``keyframe_embeddings`` and ``key_frames``; every field can be set
    from the environment as ``MEDIA_ASSETS_KEYFRAMES_<FIELD>``.

    Attributes:
        direct_bucket / direct_prefix / direct_suffixes: where ``new_video_sensor`` looks for
            directly uploaded videos (``media``, ``video_in/``, ``.mp4``).
        output_bucket / converted_prefix: outputs for videos converted from AVI go to
            ``<output_bucket>/<converted_prefix>selected_frames/<video>/`` (``media``, ``converted/``).
            Direct uploads get theirs next to the video: ``<bucket>/<key's folder>/selected_frames/<stem>/``.
        fps / width / height: sampling (1 frame/s at 1024x576, the original's).
        skip_bidir: decode without B-frames (~30 % faster decoding, a sample may be a few frames
            early; the shot analysis then sees too few frames to find every cut: off by default).
            Applies when stored videos are sampled; the decode pass of a converted AVI decodes
            every frame for the encoder anyway.
        shot_analysis: find hard cuts and flashes from every frame of the same decode, and
            check camera motion between candidate key frames of one shot (default on).
        difference_threshold: cosine threshold; ``None`` = the embedder's calibrated default.
        mode: ``confirmed`` (default), ``last_kept`` or ``consecutive`` (the original rule);
            see :mod:`media_assets.kernels.keyframes`.
        max_wait: samples a candidate may take to settle (``confirmed`` mode).
        repeats: what happens to a key frame that repeats an earlier key frame of the same
            video (cosine similarity >= ``repeat_threshold`` against any earlier one:
            :func:`media_assets.kernels.keyframes.mark_repeats`): ``keep`` (default, the
            original's key frames, each repeat flagged in the metadata and the manifest) or
            ``drop`` (only distinct views are written).
        repeat_threshold: cosine similarity at or above which a key frame repeats an earlier
            one, of the same video or (``key_frame_vectors``) of another; ``None`` = the
            selection threshold (``difference_threshold``).
        vectors_prefix: where in ``output_bucket`` the corpus's key-frame vector table
            (LanceDB, :mod:`media_assets.storage.vectors`) lives (``vectors/``).
        max_runs_per_tick: cap on run requests per sensor evaluation (polling).
        events_queue_url: SQS queue of S3 ``ObjectCreated`` notifications for the watched prefix
            (S3 -> SQS or EventBridge -> SQS); set, the sensor reads it instead of listing (event
            mode, see :mod:`media_assets.defs.object_sensor`); ``None`` = polling.
        transfer_concurrency: parallel uploads/copies.
    """

    direct_bucket: str = "media"
    direct_prefix: str = "video_in/"
    direct_suffixes: list[str] = [".mp4"]
    output_bucket: str = "media"
    converted_prefix: str = "converted/"
    fps: float = 1.0
    width: int = 1024
    height: int = 576
    skip_bidir: bool = False
    shot_analysis: bool = True
    difference_threshold: float | None = None
    mode: Literal["confirmed", "last_kept", "consecutive"] = "confirmed"
    max_wait: int = 3
    repeats: Literal["keep", "drop"] = "keep"
    repeat_threshold: float | None = None
    vectors_prefix: str = "vectors/"
    max_runs_per_tick: int = 1000
    events_queue_url: str | None = None
    transfer_concurrency: int = 8

    def thresholds(self, embedder_default: float) -> tuple[float, float]:
        """``(selection, repeat)`` cosine thresholds: ``difference_threshold``, else the
        embedder's calibrated ``embedder_default``; ``repeat_threshold``, else the selection one."""
        selection = self.difference_threshold if self.difference_threshold is not None else embedder_default
        return selection, self.repeat_threshold if self.repeat_threshold is not None else selection

    def is_direct(self, key: str) -> bool:
        return key.startswith(self.direct_prefix) and key.lower().endswith(tuple(s.lower() for s in self.direct_suffixes))

    def source_for(self, partition_key: str, video_prefix_of) -> VideoSource:
        """Resolve a ``videos`` partition key: ``s3://bucket/key`` (one explicit video, as the
        original's ``S3_URI``), a direct upload key under ``direct_prefix``, or else a source AVI
        key whose clips ``mp4_clips`` made (``video_prefix_of(key)`` names its folder)."""
        if partition_key.startswith("s3://"):
            bucket, _, key = partition_key[5:].partition("/")
            return self._direct(bucket, key)
        if self.is_direct(partition_key):
            return self._direct(self.direct_bucket, partition_key)
        return VideoSource("converted", "", partition_key, self.output_bucket, self.converted_prefix.strip("/"), video_prefix_of(partition_key))

    @staticmethod
    def _direct(bucket: str, key: str) -> "VideoSource":
        folder, _, name = key.rpartition("/")
        stem = name.rsplit(".", 1)[0] if "." in name else name
        return VideoSource("direct", bucket, key, bucket, folder, stem)


def listed_samples(store, src: VideoSource) -> list[str]:
    """Keys of every sample JPEG in ``src``'s samples folder (committed or left by a killed run)."""
    return listed_children(store, src.out_bucket, src.out_key("samples", ""), ".jpg", numbered=True)


def keyframe_manifest_key(src: VideoSource) -> str:
    """Key (in ``src.out_bucket``) of the ``key_frames`` manifest of one video, written last."""
    return f".manifests/{src.out_key('selected_frames', 'manifest.json')}"


class KeyframeTables(ParquetTables):
    """:class:`~media_assets.storage.tables.ParquetTables` for ``keyframe_embeddings``: partition
    ``P`` is stored at ``<src.out_bucket>/<src.embeddings_key()>`` of ``P``'s
    :class:`VideoSource` (``media/converted/embeddings/<video>.parquet`` for a converted AVI,
    ``<bucket>/<folder>/embeddings/<stem>.parquet`` next to a direct upload), the documented
    locations, which are not one folder per asset.

    Args:
        object_store: the bound ``ObjectStoreResource`` (gives local or ``s3://`` paths).
        keyframe_settings / video_settings: resolve a partition key to its :class:`VideoSource`.
    """

    def __init__(self, object_store, keyframe_settings: KeyframeSettings, video_settings):
        super().__init__(base_path=object_store.upath(keyframe_settings.output_bucket))
        self._object_store, self._ks, self._video = object_store, keyframe_settings, video_settings

    def get_path_for_partition(self, context, path, partition: str):
        src = self._ks.source_for(partition, self._video.video_prefix)
        return self._object_store.upath(src.out_bucket, src.embeddings_key().removesuffix(self.extension))

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        """Store the table: the commit point of the partition's samples
        (:func:`~media_assets.defs.keyframes.embeddings.commit_embeddings` uploads them first).
        If storing fails, every sample the stored table does not refer to is removed before the
        error propagates (the previous set stays whole). The rollback is done here because
        Dagster leaves the asset's generator suspended at its ``yield`` after a failed store;
        only garbage collection closes it, at no fixed time."""
        try:
            super().handle_output(context, obj)
        except BaseException:
            self._remove_unreferenced_samples(context)
            raise

    def _remove_unreferenced_samples(self, context: dg.OutputContext) -> None:
        src = self._ks.source_for(context.asset_partition_key, self._video.video_prefix)
        store = self._object_store.get_store()
        try:
            try:
                stored = read_parquet_bytes(store.get_bytes(src.out_bucket, src.embeddings_key()))
                referenced = {src.sample_key(i) for i in stored["frame_index"].to_pylist()}
            except ObjectNotFoundError:
                referenced = set()  # no table yet: no sample is referenced
            for key in [k for k in listed_samples(store, src) if k not in referenced]:
                store.delete(src.out_bucket, key)
        except Exception as err:  # noqa: BLE001 - the rollback must not mask the storing error
            context.log.warning(f"could not roll back the samples of {src.key} ({err}); the next commit removes them")


@dg.io_manager(required_resource_keys={"object_store", "keyframe_settings", "video_settings"},
               description="`keyframe_embeddings` as Parquet at `<prefix>/embeddings/<video>.parquet` next to each "
               "video's samples (Dagster's UPathIOManager: local folder or s3://).")
def keyframe_tables_io_manager(init_context) -> KeyframeTables:
    """:class:`KeyframeTables` over the bound ``object_store``, ``keyframe_settings`` and ``video_settings``."""
    r = init_context.resources
    return KeyframeTables(r.object_store, r.keyframe_settings, r.video_settings)
