"""The one Definitions object of the platform: every pipeline's defs plus shared resources.

Resources are built from environment variables when this module loads (see
``media_assets.storage.resource`` and ``media_assets.resources.env``), so the same code runs
on the embedded local store and on S3.
"""

from __future__ import annotations

import dagster as dg

# the pipeline packages, not their Definitions objects: Dagster loads the one Definitions
# object found at this module's scope (`defs`) and refuses a module with several
from .defs import audio, keyframes, labels, video
from .defs.run_watchdog import run_worker_watchdog
from .resources.audio import AudioSettings, AudioTokenizerResource, SpeechRecognizerResource
from .resources.embedder import ImageEmbedderResource
from .resources.keyframes import KeyframeSettings
from .resources.step_functions import StepFunctionsResource
from .resources.labels import LabelCorrectionSettings
from .resources.reconcile import ReconcileSettings
from .resources.env import resource_from_env
from .resources.events import EventQueueResource
from .resources.video import VideoConversionSettings
from .storage import object_store_from_env


# every resource configured from the environment: (resource key, class, variable prefix); field
# ``foo`` of a class is set by ``<prefix>FOO`` (docs/configuration.md is generated from this table)
RESOURCE_ENV: list[tuple[str, type[dg.ConfigurableResource], str]] = [
    ("video_settings", VideoConversionSettings, "MEDIA_ASSETS_VIDEO_"),
    ("label_settings", LabelCorrectionSettings, "MEDIA_ASSETS_LABELS_"),
    ("keyframe_settings", KeyframeSettings, "MEDIA_ASSETS_KEYFRAMES_"),
    ("image_embedder", ImageEmbedderResource, "MEDIA_ASSETS_EMBEDDER_"),
    ("step_functions", StepFunctionsResource, "MEDIA_ASSETS_SFN_"),
    ("audio_settings", AudioSettings, "MEDIA_ASSETS_AUDIO_"),
    ("speech_recognizer", SpeechRecognizerResource, "MEDIA_ASSETS_ASR_"),
    ("audio_tokenizer", AudioTokenizerResource, "MEDIA_ASSETS_TOKENIZER_"),
    ("reconcile_settings", ReconcileSettings, "MEDIA_ASSETS_RECONCILE_"),
    # region and endpoint default to boto3's own (AWS_REGION, AWS_ENDPOINT_URL), as the object store's
    ("event_queue", EventQueueResource, "MEDIA_ASSETS_EVENTS_"),
]


def build_resources(as_env_vars: bool = False) -> dict:
    """Resource instances configured from the current environment.

    ``as_env_vars=True`` (the code location): ``str``/``int`` settings set in the environment are
    bound as ``dg.EnvVar`` and read by each run at run time (see ``resources.env``); ``False``
    (the ``seed`` command, outside Dagster): plain values."""
    return {"object_store": object_store_from_env(),
            **{key: resource_from_env(cls, prefix, as_env_vars=as_env_vars) for key, cls, prefix in RESOURCE_ENV}}


def build_definitions() -> dg.Definitions:
    """All pipelines merged, with resources bound (re-reads the environment).

    Runs use Dagster's in-process executor: each run is already its own process (the run
    launcher starts one per run), and a process per step re-imported the models and ffmpeg
    helpers for every asset: a 10 s AVI's run took 23.2 s with the multiprocess executor and
    3.6 s in process (`media-assets process` on one sample video). Parallelism comes from the
    run queue (`max_concurrent_runs`), limits per resource from the pools."""
    return dg.Definitions.merge(video.defs, keyframes.defs, audio.defs, labels.defs,
                                dg.Definitions(sensors=[run_worker_watchdog], resources=build_resources(as_env_vars=True),
                                               executor=dg.in_process_executor))


defs = build_definitions()
