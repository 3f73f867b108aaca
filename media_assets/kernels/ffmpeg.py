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


class FileBatches:
    """Finished files of one ffmpeg output, handed on while ffmpeg still writes the next ones.

    Files matching ``pattern`` (a glob) in ``folder`` are taken in name order (ffmpeg's
    image2 and segment muxers number them); the newest is held back while ffmpeg runs, as it
    may still be being written (the segment muxer closes a clip, faststart rewrite included,
    before it opens the next). Each run of at least ``batch_size`` finished files is handed to
    ``on_batch`` once; the rest when ffmpeg has exited.
    """

    def __init__(self, folder: str | os.PathLike, pattern: str, on_batch: Callable[[list[Path]], None], batch_size: int = 8):
        self.folder, self.pattern, self.on_batch, self.batch_size = Path(folder), pattern, on_batch, batch_size
        self.handed = 0

    def poll(self, finished: bool) -> None:
        """Hand what is ready; ``finished``: ffmpeg exited successfully, every file is whole."""
        files = sorted(self.folder.glob(self.pattern))
        ready = files if finished else files[:-1]
        if len(ready) - self.handed >= (1 if finished else self.batch_size):
            self.on_batch(ready[self.handed :])
            self.handed = len(ready)


def run_ffmpeg_streaming(args: Sequence[str], watchers: Sequence, poll_s: float = 0.2) -> None:
    """Run ffmpeg like :func:`run_ffmpeg` while ``watchers`` hand its finished outputs on, so
    work on them (embedding, uploads) overlaps the decode and the encode.

    Each watcher has ``poll(finished: bool)`` (:class:`FileBatches`,
    :class:`media_assets.kernels.frames.LabelingStream`): polled every ``poll_s`` seconds while
    ffmpeg runs, and once with ``finished=True`` as soon as it exited with status 0. Each poll
    lists the watched folders, CPU time taken from an encoder that keeps every core busy; a
    fifth of a second keeps that small and still hands each output on well before the next.

    Raises:
        FFmpegError: non-zero exit status, with the tail of ffmpeg's log.
        Whatever a watcher raises (ffmpeg is killed first).
    """
    cmd = _command(args)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            while proc.poll() is None:
                for watcher in watchers:
                    watcher.poll(False)
                try:
                    proc.wait(timeout=poll_s)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if proc.poll() is None:  # a watcher raised: stop decoding
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            err.seek(0)
            raise FFmpegError(cmd, proc.returncode, err.read().decode("utf-8", "replace"))
    for watcher in watchers:
        watcher.poll(True)
