"""Where a server may write files: its configured data roots, and files created, never replaced.

A client-supplied path is checked against the roots after resolving symlinks, so neither `..`
nor a symlink inside a root that points elsewhere leads out of them. Files are written to a
hidden partial file first and then hard-linked to their name, which fails if the name exists:
readers never see half a file and an existing file is never overwritten.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

STATE_DIR_ENV = "TANGO_SUITE_STATE_DIR"  # set by `tango-suite` for every process of a stack


class OutsideDataRoots(ValueError):
    """A path, setting or argument that would write outside the data roots."""


class FileExists(ValueError):
    """The file asked for exists already: the server does not overwrite it."""


def stack_data_directory() -> Path:
    """`$TANGO_SUITE_STATE_DIR/data` under a `tango-suite` stack, else `<temp dir>/tango-suite-data`."""
    state = os.environ.get(STATE_DIR_ENV)
    return Path(state) / "data" if state else Path(tempfile.gettempdir()) / "tango-suite-data"


@dataclass(frozen=True)
class DataRoots:
    """The directories a server may write under (resolved), and the setting that names them."""

    roots: tuple[Path, ...]
    setting: str = "data_roots"

    @classmethod
    def from_setting(cls, values: Sequence[str], setting: str = "data_roots") -> DataRoots:
        """Roots from a device property; empty means the stack's data directory. Each must be absolute."""
        paths = [Path(v).expanduser() for v in values if v.strip()] or [stack_data_directory()]
        relative = [str(p) for p in paths if not p.is_absolute()]
        if relative:
            raise OutsideDataRoots(f"{setting}: {', '.join(relative)} must be absolute directories")
        return cls(tuple(p.resolve() for p in paths), setting)

    def describe(self) -> str:
        """'the data roots /a, /b (device property data_roots)', for refusals."""
        return f"the data roots {', '.join(map(str, self.roots))} (device property {self.setting})"

    def check(self, path: str | Path, what: str) -> Path:
        """`path` resolved (symbolic links followed), if it stays inside a root; else OutsideDataRoots
        naming `what`, the path and the roots. The one data-root check of every server."""
        text = str(path)
        path = Path(path)
        if not text or not path.is_absolute():
            raise OutsideDataRoots(f"{what} {text!r} must be an absolute path inside {self.describe()}")
        if ".." in path.parts:
            raise OutsideDataRoots(f"{what} {text!r} contains '..'; give a path inside {self.describe()}")
        resolved = path.resolve()
        if not any(resolved.is_relative_to(root) for root in self.roots):
            via = f" (it resolves to {resolved})" if resolved != path else ""
            raise OutsideDataRoots(f"{what} {text!r} is outside {self.describe()}{via}")
        return resolved

    def make_directory(self, directory: Path, what: str) -> Path:
        """Create `directory` (checked, and created only inside a root) and return it resolved."""
        resolved = self.check(directory, what)
        resolved.mkdir(parents=True, exist_ok=True)
        return self.check(resolved, what)  # a symlink made meanwhile would show here


def write_new_file(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file that does not exist yet: `write(file)` fills a new hidden file beside `target`
    (created exclusively, never through a symlink), which is then linked to its name.
    FileExists when `target` exists (even as a dangling symlink)."""
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
        os.chmod(partial, 0o644)  # mkstemp's 0600 would hide the file from other users
        os.link(partial, target)
    except FileExistsError:
        raise FileExists(f"{target} exists already; the server never overwrites a file: choose another name") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


def first_free_name(directory: Path, stem: str, suffix: str) -> Path:
    """`directory/stem + suffix`, or `stem_1 + suffix`, `stem_2 + suffix`... whichever is free now."""
    for n in itertools.count():
        candidate = directory / f"{stem}{f'_{n}' if n else ''}{suffix}"
        if not candidate.exists() and not candidate.is_symlink():
            return candidate
    raise AssertionError("unreachable")
