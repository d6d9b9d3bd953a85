"""Where the server may write: data roots, file-name parts and index formats. No Tango here.

Every file the server creates lies directly in `saving_directory`, and that directory (resolved,
symbolic links followed) lies inside one of the data roots. A prefix, suffix or index format
cannot name another directory. An existing file is replaced only when it is a plain file with a
single name (a symbolic or hard link could point the replacement at a file outside the roots).
"""

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

INDEX_FORMAT = re.compile(r"%[-+ 0#]*\d*l{0,2}[diu]")
MAX_FILE_NUMBER = 2**31 - 2
"""Largest file number: saving_next_number (a DevLong, as in LimaCCDs) stays readable after it."""


class UnsafePath(ValueError):
    """A saving setting that would write outside the data roots; the message names the setting."""


def check_name_part(setting: str, value: str) -> str:
    """A prefix or suffix: refused when it holds a path separator, `..` or a NUL."""
    if "/" in value or "\\" in value or ".." in value or "\0" in value:
        raise UnsafePath(f"{setting} {value!r} may not contain '/', '\\', '..' or NUL: files go into saving_directory")
    return value


def check_index_format(value: str) -> str:
    """A printf index format with exactly one integer conversion, e.g. %04d (Lima's default)."""
    if len(INDEX_FORMAT.findall(value)) != 1 or value.replace("%%", "").count("%") != 1:
        raise UnsafePath(f"saving_index_format {value!r} needs exactly one integer conversion such as %04d")
    check_name_part("saving_index_format", value)
    return value


def format_index(index_format: str, number: int) -> str:
    """The index part of a file name; a negative number is written as 0, as Lima does."""
    return index_format % max(0, number)


def resolve_roots(roots: Sequence[str]) -> tuple[Path, ...]:
    """The data roots, resolved; empty entries dropped."""
    return tuple(Path(os.path.realpath(r)) for r in roots if r)


def inside_root(directory: str, roots: Sequence[Path]) -> Path:
    """`directory` resolved, or UnsafePath when it is relative or lies outside every root."""
    listed = ", ".join(str(r) for r in roots) or "(none configured)"
    if not directory or not os.path.isabs(directory):
        raise UnsafePath(f"saving_directory {directory!r} must be an absolute path inside a data root: {listed}")
    resolved = Path(os.path.realpath(directory))
    if not any(resolved == root or root in resolved.parents for root in roots):
        raise UnsafePath(
            f"saving_directory {directory} (resolved: {resolved}) is outside the data roots: {listed} "
            "(device property data_roots)"
        )
    return resolved


def replaceable(path: Path) -> bool:
    """Whether an existing `path` may be replaced: a plain file with one name, not a link."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return True
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1
