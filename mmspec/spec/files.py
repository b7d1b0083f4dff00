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
