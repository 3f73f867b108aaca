"""Locating and running the ffmpeg executable.

The default executable is the static ffmpeg build shipped in the ``imageio-ffmpeg`` wheel
(libx264, AAC, the ``segment`` muxer and the ``select`` filter are all in it), so a pip
install is all the platform needs. ``MEDIA_ASSETS_FFMPEG`` overrides it with any other
ffmpeg >= 5.1 (``-fps_mode`` appeared in 5.1).
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Sequence


class FFmpegError(RuntimeError):
    """ffmpeg exited non-zero. ``stderr_tail`` holds the last lines of its log."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str):
        self.returncode = returncode
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        self.stderr_tail = "\n".join(lines[-15:])
        super().__init__(f"ffmpeg exited with status {returncode}: {lines[-1] if lines else 'no output'}")
        self.args_list = list(args)


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable (``MEDIA_ASSETS_FFMPEG`` or the imageio-ffmpeg binary)."""
    override = os.environ.get("MEDIA_ASSETS_FFMPEG")
    if override:
        return override
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: Sequence[str], *, capture_stdout: bool = False, timeout_s: float | None = None) -> bytes:
    """Run ``ffmpeg -hide_banner -nostdin -y <args>``; return stdout (if captured).

    Raises:
        FFmpegError: non-zero exit status, with the tail of ffmpeg's log.
        subprocess.TimeoutExpired: the process ran longer than ``timeout_s`` seconds.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", *args]
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise FFmpegError(cmd, proc.returncode, proc.stderr.decode("utf-8", "replace"))
    return proc.stdout if capture_stdout else b""
