"""The state directory of a stack and the `state.json` the supervisor keeps in it."""

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
LOCK_FILE = "up.lock"
DATABASE_FILE = "tango_database.db"
MARKER_ENV = "TANGO_SUITE_STATE_DIR"


class StackBusy(RuntimeError):
    """Another `tango-suite up` is starting the stack in this state directory."""


def default_state_dir() -> Path:
    """`$TANGO_SUITE_HOME`, else `~/.local/state/tango-suite`."""
    home = os.environ.get("TANGO_SUITE_HOME")
    return Path(home) if home else Path.home() / ".local" / "state" / "tango-suite"


@dataclass(frozen=True)
class StackState:
    """Paths inside one stack's state directory, and atomic access to its state file."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def database_file(self) -> Path:
        return self.root / DATABASE_FILE

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def supervisor_log(self) -> Path:
        return self.log_dir / "supervisor.log"

    def log_file(self, component: str) -> Path:
        return self.log_dir / f"{component.replace('/', '-')}.log"

    def ensure(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def starting(self) -> Iterator[None]:
        """Hold the state directory's start-up lock; StackBusy when another process holds it."""
        with open(self.root / LOCK_FILE, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "unknown"
                raise StackBusy(
                    f"the stack in {self.root} is being started by another 'tango-suite up' (pid {holder})"
                ) from None
            lock.truncate(0)
            lock.write(str(os.getpid()))
            lock.flush()
            try:
                yield
            finally:
                lock.truncate(0)
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict[str, Any] | None:
        """The last state the supervisor wrote, or None when there is none."""
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            # Torn or foreign file: treat as stale state.
            return {}

    def write(self, state: dict[str, Any]) -> None:
        """Replace state.json atomically; owner-only, since it holds the Redis client URL."""
        tmp = self.state_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def clear(self) -> None:
        self.state_file.unlink(missing_ok=True)
