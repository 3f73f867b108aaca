"""Locating and running the ffmpeg executable.

The default executable is the static ffmpeg build shipped in the ``imageio-ffmpeg`` wheel
(libx264, AAC, the ``segment`` muxer and the ``select`` filter are all in it), so a pip
install is all the platform needs. ``MEDIA_ASSETS_FFMPEG`` overrides it with any other
ffmpeg >= 5.1 (``-fps_mode`` appeared in 5.1).
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .limits import TimeLimitError


class FFmpegError(RuntimeError):
    """ffmpeg exited non-zero. ``stderr_tail`` holds the last lines of its log."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str):
        self.returncode = returncode
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        self.stderr_tail = "\n".join(lines[-15:])
        super().__init__(f"ffmpeg exited with status {returncode}: {lines[-1] if lines else 'no output'}")
        self.args_list = list(args)


class FFmpegInterruptedError(RuntimeError):
    """ffmpeg stopped for a reason outside its input: killed by a signal (the OOM killer's
    SIGKILL, a container stop) or out of a resource (disk, memory, an I/O error). An
    infrastructure failure: retried, never reported as bad input. ``returncode`` is the exit
    status (negative: the signal), ``stderr_tail`` the last lines of ffmpeg's log."""

    def __init__(self, message: str, returncode: int, stderr_tail: str):
        super().__init__(message)
        self.returncode, self.stderr_tail = returncode, stderr_tail


class FFmpegTimeoutError(TimeLimitError):
    """ffmpeg ran past its wall-clock limit and was killed (a stalled read, a starved worker):
    an infrastructure failure, retried."""

    def __init__(self, limit_s: float):
        super().__init__(f"ffmpeg still running after its wall-clock limit of {limit_s:,.1f} s; killed (retried)")
        self.limit_s = limit_s


# errno values ffmpeg reports as its exit status (AVERROR(e) & 0xff = 256 - e) when the machine,
# not the input, ran out: disk, quota, memory, or the device failed
_RESOURCE_ERRNOS = {errno.ENOSPC: "no space left on the scratch disk", errno.EDQUOT: "disk quota exceeded",
                    errno.ENOMEM: "out of memory", errno.EIO: "I/O error on the scratch disk"}
_RESOURCE_MESSAGES = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
                      "Cannot allocate memory": errno.ENOMEM, "Input/output error": errno.EIO}


def ffmpeg_failure(args: Sequence[str], returncode: int, stderr: str) -> Exception:
    """The exception for an ffmpeg that exited with ``returncode`` (non-zero) and log ``stderr``:
    :class:`FFmpegInterruptedError` when the evidence says infrastructure (killed by a signal,
    or an exit status or log line of disk, memory or I/O exhaustion), else :class:`FFmpegError`
    (the input could not be decoded)."""
    err = FFmpegError(args, returncode, stderr)
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return FFmpegInterruptedError(f"ffmpeg was killed by signal {name} (out of memory, or the worker was stopped); "
                                      "not the input's fault, retried", returncode, err.stderr_tail)
    code = next((e for text, e in _RESOURCE_MESSAGES.items() if text in stderr), None)
    if code is None and 256 - returncode in _RESOURCE_ERRNOS:
        code = 256 - returncode
    if code is not None:
        return FFmpegInterruptedError(f"ffmpeg stopped: {_RESOURCE_ERRNOS[code]} (exit status {returncode}); not the input's fault, "
                                      "retried", returncode, err.stderr_tail)
    return err


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
        FFmpegError: non-zero exit status, with the tail of ffmpeg's log (the input).
        FFmpegInterruptedError: killed by a signal, or out of disk, memory or I/O (infrastructure).
        FFmpegTimeoutError: still running after ``timeout_s`` seconds; it was killed.
    """
    cmd = _command(args)
    try:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FFmpegTimeoutError(timeout_s) from None
    if proc.returncode != 0:
        raise ffmpeg_failure(cmd, proc.returncode, proc.stderr.decode("utf-8", "replace"))
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


def run_ffmpeg_streaming(args: Sequence[str], watchers: Sequence, poll_s: float = 0.2, timeout_s: float | None = None) -> None:
    """Run ffmpeg like :func:`run_ffmpeg` while ``watchers`` hand its finished outputs on, so
    work on them (embedding, uploads) overlaps the decode and the encode.

    Each watcher has ``poll(finished: bool)`` (:class:`FileBatches`,
    :class:`media_assets.kernels.frames.LabelingStream`): polled every ``poll_s`` seconds while
    ffmpeg runs, and once with ``finished=True`` as soon as it exited with status 0. Each poll
    lists the watched folders, CPU time taken from an encoder that keeps every core busy; a
    fifth of a second keeps that small and still hands each output on well before the next.

    Raises:
        FFmpegError, FFmpegInterruptedError: as :func:`run_ffmpeg`.
        FFmpegTimeoutError: still running after ``timeout_s`` seconds (it is killed).
        Whatever a watcher raises (ffmpeg is killed first).
    """
    cmd = _command(args)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            while proc.poll() is None:
                if deadline is not None and time.monotonic() > deadline:
                    raise FFmpegTimeoutError(timeout_s)
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
            raise ffmpeg_failure(cmd, proc.returncode, err.read().decode("utf-8", "replace"))
    for watcher in watchers:
        watcher.poll(True)
