"""Settings from the environment: ``str``/``int`` fields bound as ``dg.EnvVar`` in the code
location (read by the run at run time, shown by name in the UI), other fields parsed at load."""

from __future__ import annotations

import dagster as dg
import pytest

from media_assets.definitions import build_resources
from media_assets.resources.env import resource_from_env
from media_assets.resources.video import VideoConversionSettings


def test_code_location_binds_env_vars_read_at_run_time(monkeypatch):
    monkeypatch.setenv("MEDIA_ASSETS_VIDEO_SOURCE_BUCKET", "avi-at-load")
    monkeypatch.setenv("MEDIA_ASSETS_VIDEO_EVERY_N_FRAMES", "5")
    monkeypatch.setenv("MEDIA_ASSETS_VIDEO_CLIP_S", "60.5")
    settings = build_resources(as_env_vars=True)["video_settings"]

    @dg.asset
    def seen(video_settings: VideoConversionSettings) -> dict:
        return {"bucket": video_settings.source_bucket, "every": video_settings.every_n_frames, "clip_s": video_settings.clip_s}

    monkeypatch.setenv("MEDIA_ASSETS_VIDEO_SOURCE_BUCKET", "avi-at-run")  # the run's environment wins
    monkeypatch.setenv("MEDIA_ASSETS_VIDEO_EVERY_N_FRAMES", "7")
    result = dg.materialize([seen], resources={"video_settings": settings})
    assert result.output_for_node("seen") == {"bucket": "avi-at-run", "every": 7, "clip_s": 60.5}


def test_unset_variables_keep_defaults_and_bad_values_name_the_field(monkeypatch):
    assert resource_from_env(VideoConversionSettings, "MEDIA_ASSETS_VIDEO_", environ={}, as_env_vars=True) == VideoConversionSettings()
    with pytest.raises(Exception, match="clip_s"):
        resource_from_env(VideoConversionSettings, "MEDIA_ASSETS_VIDEO_", environ={"MEDIA_ASSETS_VIDEO_CLIP_S": "long"}, as_env_vars=True)


def test_seed_gets_plain_values(monkeypatch):
    monkeypatch.setenv("MEDIA_ASSETS_VIDEO_SOURCE_BUCKET", "my-avi")
    assert build_resources()["video_settings"].source_bucket == "my-avi"
