"""Resources of the audio pipeline: settings, the speech recognizer, the audio tokenizer."""

import threading
from typing import Literal

import dagster as dg
import numpy as np

from ..kernels.asr import FasterWhisperRecognizer, OpenAIWhisperRecognizer
from ..kernels.audio_tokens import EncodecTokenizer, mulaw_encode
from ..kernels.limits import GIB, AudioLimits, time_limit_s
from ..storage.tables import ParquetTables

_CACHE: dict[tuple, object] = {}
_CACHE_LOCK = threading.Lock()


def _cached(key: tuple, build):
    """One model per configuration per process."""
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


class AudioSettings(dg.ConfigurableResource):
    """Buckets and limits of the audio pipeline (``MEDIA_ASSETS_AUDIO_<FIELD>``).

    Attributes:
        source_bucket / source_prefix: every object under them is an audio object
            (``audio``; any folder depth; ``FolderName`` is the key's parent folder).
        dataset_bucket / dataset_prefix: where the hive-partitioned Parquet goes (``audio-dataset``).
            That prefix holds the dataset and nothing else, so every Parquet reader can take it
            with one glob.
        work_bucket / work_prefix: where the pipeline's own intermediates go (per-day
            transcript and token tables, the dataset's manifests): ``media-assets-work``,
            ``audio/``. Never inside the dataset prefix.
        chunk_s: seconds decoded and transcribed at a time (memory bound for long files).
        empty_text_warn_share: warn when more than this share of a day's .flac files has
            empty text.
        max_runs_per_tick: cap on run requests per sensor evaluation (polling).
        events_queue_url: SQS queue of S3 ``ObjectCreated`` notifications for the watched prefix
            (S3 -> SQS or EventBridge -> SQS); set, the sensor reads it instead of listing (event
            mode, see :mod:`media_assets.defs.object_sensor`); ``None`` = polling.
        asr_batch_files: short files (<= 30 s) decoded and handed to the recognizer together
            (each still in its own Whisper window).
        min_speech_s / max_s_per_word: a file with at least ``min_speech_s`` seconds of VAD
            speech and no text, or fewer than one word per ``max_s_per_word`` seconds of
            speech, is flagged ``suspect`` (lost speech; see ``kernels.asr.suspect_reasons``).
        silence_dbfs: text on audio quieter than this (dBFS) is flagged ``text_on_silence``.
        max_speech_loss_share: the ``speech_not_lost`` check of ``transcripts`` fails when more
            than this share of a day's speech files is flagged for lost speech (0.02).
        max_source_bytes / max_source_duration_s: bounds of an untrusted audio object (bytes,
            from the listing, before the download; seconds, from the header, before decoding):
            4 GiB and 12 h (:mod:`media_assets.kernels.limits`). A file over one gets an
            ``error`` row naming the bound and is not decoded; the object is kept.
        asr_time_base_s / asr_time_per_media_s: wall-clock limit of decoding and transcribing
            one file (or one batch of short files), ``base + per_media * duration`` seconds:
            ffmpeg is killed at it and the step fails as infrastructure (retried). 1 s per
            second of audio is ~10x slower than Whisper base runs on 2 CPU cores.
    """

    source_bucket: str = "audio"
    source_prefix: str = ""
    dataset_bucket: str = "audio-dataset"
    dataset_prefix: str = ""
    work_bucket: str = "media-assets-work"
    work_prefix: str = "audio/"
    chunk_s: float = 600.0
    empty_text_warn_share: float = 0.5
    max_runs_per_tick: int = 1000
    events_queue_url: str | None = None
    asr_batch_files: int = 32
    min_speech_s: float = 1.0
    max_s_per_word: float = 3.0
    silence_dbfs: float = -55.0
    max_speech_loss_share: float = 0.02
    max_source_bytes: int = 4 * GIB
    max_source_duration_s: float = 43_200.0
    asr_time_base_s: float = 120.0
    asr_time_per_media_s: float = 1.0

    def limits(self) -> AudioLimits:
        """The source bounds as :class:`~media_assets.kernels.limits.AudioLimits`."""
        return AudioLimits(max_bytes=self.max_source_bytes, max_duration_s=self.max_source_duration_s)

    def asr_time_limit_s(self, duration_s: float) -> float:
        """Wall-clock limit, seconds, of decoding and transcribing ``duration_s`` seconds of audio."""
        return time_limit_s(duration_s, base_s=self.asr_time_base_s, per_media_s=self.asr_time_per_media_s)

    def work_key(self, name: str, day: str, suffix: str = ".parquet") -> str:
        """Key in ``work_bucket`` of one day's intermediate: ``<work_prefix><name>/<day><suffix>``.

        Raises:
            ValueError: the work location lies inside the dataset prefix (readers globbing
                the dataset would pick the intermediates up).
        """
        if self.work_bucket == self.dataset_bucket and self.work_prefix.startswith(self.dataset_prefix):
            raise ValueError(
                f"work location {self.work_bucket}/{self.work_prefix} is inside the dataset prefix "
                f"{self.dataset_bucket}/{self.dataset_prefix}: set MEDIA_ASSETS_AUDIO_WORK_BUCKET or _WORK_PREFIX"
            )
        return f"{self.work_prefix}{name}/{day}{suffix}"


class SpeechRecognizerResource(dg.ConfigurableResource):
    """Whisper (``MEDIA_ASSETS_ASR_<FIELD>``).

    Attributes:
        backend: ``faster-whisper`` (default) or ``openai-whisper``.
        model: empty = bundled Whisper ``base`` (offline, WER 0.063 on the real read-speech set,
            benchmarks/README.md); ``bundled:tiny.en`` = the fast preset (about 2x faster, WER 0.095);
            else a local model folder / checkpoint, or a hub name such as ``small`` or
            ``large-v3`` (downloads at first use: production only).
        language: ISO 639-1 code of the audio (``en``); empty = detected per file.
        compute_type: CTranslate2 compute type (``int8`` on CPU, ``float16`` on GPU).
        beam_size: beam width (5, Whisper's default).
        cpu_threads: CTranslate2 threads (0 = all cores).
        vad_filter: Silero VAD: measure speech, skip silent files, trim non-speech.
        batch_size: Whisper windows per forward pass (one window per short file).
        long_form: files over 30 s: ``sequential`` (Whisper's own long-form algorithm; WER 0.061
            at 13x real time on the 10 min benchmark file, 2 cores) or ``batched``
            (``BatchedInferencePipeline`` over VAD chunks: 18x but WER 0.086 there; for GPUs).
    """

    backend: str = "faster-whisper"
    model: str = ""
    language: str = "en"
    compute_type: str = "int8"
    beam_size: int = 5
    cpu_threads: int = 0
    vad_filter: bool = True
    batch_size: int = 4
    long_form: Literal["sequential", "batched"] = "sequential"

    def recognizer(self):
        """The recognizer, loaded once per process.

        Raises:
            ValueError: unknown backend, or openai-whisper without a model.
        """
        if self.backend == "faster-whisper":
            return _cached(("fw", self.model, self.language, self.compute_type, self.beam_size, self.cpu_threads, self.vad_filter, self.batch_size),
                           lambda: FasterWhisperRecognizer(self.model or None, language=self.language or None, compute_type=self.compute_type,
                                                           beam_size=self.beam_size, cpu_threads=self.cpu_threads, vad_filter=self.vad_filter,
                                                           batch_size=self.batch_size))
        if self.backend == "openai-whisper":
            if not self.model:
                raise ValueError("openai-whisper needs `model`: a checkpoint path (see media-assets convert-whisper) or a model name")
            return _cached(("ow", self.model, self.language, self.beam_size),
                           lambda: OpenAIWhisperRecognizer(self.model, language=self.language or None, beam_size=self.beam_size or None))
        raise ValueError(f"unknown ASR backend {self.backend!r}: expected 'faster-whisper' or 'openai-whisper'")


class AudioTokenizerResource(dg.ConfigurableResource):
    """Waveform -> int16 tokens (``MEDIA_ASSETS_TOKENIZER_<FIELD>``).

    Attributes:
        tokenizer: ``mulaw`` (default; ITU-T G.711 mu-law, tokens in [0, 255]) or ``encodec``
            (EnCodec codes at 24 kHz, Defossez et al. 2022, frame-major).
        mulaw_sample_rate: Hz the audio is resampled to before mu-law (8000, as telephony).
        encodec_model_dir: local snapshot of an EnCodec model (``facebook/encodec_24khz``
            layout); required with ``encodec``, never downloaded.
        bandwidth_kbps: EnCodec target bandwidth in kbit/s (1.5, 3, 6, 12 or 24).
        n_codebooks: keep only the first this many codebooks (``None``: all the bandwidth gives).
    """

    tokenizer: str = "mulaw"
    mulaw_sample_rate: int = 8_000
    encodec_model_dir: str = ""
    bandwidth_kbps: float = 6.0
    n_codebooks: int | None = None

    @property
    def sample_rate(self) -> int:
        return self.mulaw_sample_rate if self.tokenizer == "mulaw" else 24_000

    def tokenize(self, audio: np.ndarray) -> np.ndarray:
        """``(n,) int16`` tokens of mono float samples at :attr:`sample_rate` Hz.

        Raises:
            TypeError / ValueError: the input breaks the contract (1-D float ndarray).
            ValueError: unknown tokenizer, or ``encodec`` without ``encodec_model_dir``.
        """
        if self.tokenizer == "mulaw":
            return mulaw_encode(audio)
        if self.tokenizer == "encodec":
            if not self.encodec_model_dir:
                raise ValueError("encodec needs encodec_model_dir: a local facebook/encodec_24khz snapshot")
            model = _cached(("encodec", self.encodec_model_dir, self.bandwidth_kbps, self.n_codebooks),
                            lambda: EncodecTokenizer(self.encodec_model_dir, self.bandwidth_kbps, self.n_codebooks))
            return model.encode(audio)
        raise ValueError(f"unknown tokenizer {self.tokenizer!r}: expected 'mulaw' or 'encodec'")


@dg.io_manager(required_resource_keys={"object_store", "audio_settings"},
               description="The audio pipeline's per-day tables (transcripts, tokens) as Parquet in "
               "`<work_bucket>/<work_prefix><table>/<day>.parquet` (Dagster's UPathIOManager: local folder or s3://).")
def audio_tables_io_manager(init_context) -> ParquetTables:
    """:class:`~media_assets.storage.tables.ParquetTables` rooted at the audio work location of
    the bound ``object_store`` and ``audio_settings``.

    Raises:
        ValueError: the work location lies inside the dataset prefix (``AudioSettings.work_key``).
    """
    settings = init_context.resources.audio_settings
    settings.work_key("transcripts", "check")  # refuses a work location inside the dataset prefix
    return ParquetTables(base_path=init_context.resources.object_store.upath(settings.work_bucket, settings.work_prefix),
                         names={"transcripts": "transcripts", "audio_tokens": "tokens"})
