"""Where the server may write: file-name parts and index formats. No Tango here.

Every file the server creates lies directly in `saving_directory`, and that directory (resolved,
symbolic links followed) lies inside one of the data roots (`tango_servers.common.data_roots`,
the check every server shares). A prefix, suffix or index format cannot name another directory.
An existing file is replaced or appended to only when it is a plain file with a single name (a
symbolic or hard link could point the write at a file outside the roots).
"""

import re
import stat
from pathlib import Path

from ..common.data_roots import OutsideDataRoots

INDEX_FORMAT = re.compile(r"%[-+ 0#]*\d*l{0,2}[diu]")
MAX_FILE_NUMBER = 2**31 - 2
"""Largest file number: saving_next_number (a DevLong, as in LimaCCDs) stays readable after it."""


class UnsafePath(OutsideDataRoots):
    """A file-name part that would name another directory; the message names the setting."""


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


def replaceable(path: Path) -> bool:
    """Whether an existing `path` may be replaced or appended to: a plain file with one name, not a link."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return True
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1
