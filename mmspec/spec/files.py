"""Bounded reads of user-named files: never block on a FIFO or a device, never read without limit, and say in
words what is wrong with a path (a directory, a FIFO, a name too long, no permission)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileProblem(Exception):
    """Why a file cannot be read, in words fit for a diagnostic (`str(e)`)."""


def is_dir(path: str | Path) -> bool:
    """Whether `path` is a directory; False for any path the system refuses to examine (too long, a link loop),
    which the caller's next read then reports in words."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def kind_problem(path: str | Path) -> str | None:
    """None for a regular file (or a link to one); otherwise what the path is or why it cannot be examined."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return describe(e)
    except ValueError:  # an embedded NUL
        return "the name holds a NUL character"
    return None if stat.S_ISREG(mode) else _not_regular(mode)


def _not_regular(mode: int) -> str:
    return "not a regular file: it is " + next((what for test, what in _KINDS if test(mode)), "a special file")


def read_limited(path: str | Path, limit: int) -> bytes:
    """The bytes of regular file `path`, at most `limit + 1` of them (so a caller can tell "over the limit");
    FileProblem for anything else. Opens without blocking (a FIFO) and checks the type of what it opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise FileProblem(describe(e)) from None
    except ValueError:
        raise FileProblem("the name holds a NUL character") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise FileProblem(_not_regular(mode))
        chunks, size = [], 0
        while size <= limit:  # the reported size may be 0 or wrong (procfs): count what is read
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError as e:
        raise FileProblem(describe(e)) from None
    finally:
        os.close(fd)


_WORDS = {
    errno.ENOENT: "no such file or directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "it is a directory",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.ELOOP: "too many levels of symbolic links (a link loop?)",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "the file system is read-only",
    errno.EIO: "an input/output error",
}


def describe(e: OSError) -> str:
    """An OSError in words, without the path (the caller's diagnostic names it)."""
    return _WORDS.get(e.errno, e.strerror or type(e).__name__)


def publish_problem(dst: Path) -> str | None:
    """Why `dst` must not be replaced by a new output: a directory, or an existing read-only file (which the
    user protected on purpose); None when it may be written."""
    if is_dir(dst):
        return f"{dst} is a directory"
    try:
        mode = os.lstat(dst).st_mode
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"{dst}: {describe(e)}"
    if stat.S_ISREG(mode) and not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        return f"{dst} exists and is read-only; remove it or write elsewhere"
    return None


def publish_files(pairs: list[tuple[Path | None, Path]], staging: Path) -> None:
    """Move every `src` onto its `dst` (a `src` of None deletes `dst`) as one unit: what was at each `dst` is
    first moved aside into `staging` (same file system), and any failure or interruption -- a signal raised as
    an exception included -- puts every old file back and leaves no new one. FileProblem when a `dst` may not be
    replaced (`publish_problem`), before anything moves."""
    for _, dst in pairs:
        problem = publish_problem(dst)
        if problem:
            raise FileProblem(problem)
    done: list[tuple[Path, Path | None]] = []
    try:
        for i, (src, dst) in enumerate(pairs):
            backup = staging / f".replaced-{i}" if os.path.lexists(dst) else None
            if backup is not None:
                os.replace(dst, backup)
            done.append((dst, backup))
            if src is not None:
                os.replace(src, dst)
    except BaseException:
        for dst, backup in reversed(done):
            try:
                if backup is not None:
                    os.replace(backup, dst)
                elif os.path.lexists(dst):
                    os.unlink(dst)
            except OSError:
                pass
        raise
