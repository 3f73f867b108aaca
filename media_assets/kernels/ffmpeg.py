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
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path


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


def _command(args: Sequence[str]) -> list[str]:
    """``ffmpeg -hide_banner -nostdin -y -loglevel error <args>``: quiet, never prompting."""
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", *args]


def run_ffmpeg(args: Sequence[str], *, capture_stdout: bool = False, timeout_s: float | None = None) -> bytes:
    """Run ``ffmpeg -hide_banner -nostdin -y <args>``; return stdout (if captured).

    Raises:
        FFmpegError: non-zero exit status, with the tail of ffmpeg's log.
        subprocess.TimeoutExpired: the process ran longer than ``timeout_s`` seconds.
    """
    cmd = _command(args)
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


def run_ffmpeg_streaming(args: Sequence[str], watch_dir: str | os.PathLike, pattern: str,
                         on_batch: Callable[[list[Path]], None] | None, batch_size: int = 8) -> None:
    """Run ffmpeg like :func:`run_ffmpeg`, handing finished output files to ``on_batch`` while
    it still runs, so work on them (embedding, upload) overlaps the decode.

    Files matching ``pattern`` in ``watch_dir`` are taken in name order (ffmpeg's image2
    muxer numbers them), the newest held back as it may still be being written; each run of
    at least ``batch_size`` finished files is handed once, the rest after ffmpeg exits.

    Raises:
        FFmpegError: non-zero exit status, with the tail of ffmpeg's log.
        Whatever ``on_batch`` raises (ffmpeg is killed first).
    """
    cmd = _command(args)
    watch_dir = Path(watch_dir)
    handed = 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            while proc.poll() is None:
                if on_batch is not None:
                    ready = sorted(watch_dir.glob(pattern))[:-1]
                    if len(ready) - handed >= batch_size:
                        on_batch(ready[handed:])
                        handed = len(ready)
                        continue
                time.sleep(0.02)
        finally:
            if proc.poll() is None:  # on_batch raised: stop decoding
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            err.seek(0)
            raise FFmpegError(cmd, proc.returncode, err.read().decode("utf-8", "replace"))
    rest = sorted(watch_dir.glob(pattern))[handed:]
    if on_batch is not None and rest:
        on_batch(rest)
