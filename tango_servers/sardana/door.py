"""Run Sardana macros through a Door's Tango interface (no Taurus, no spock).

    door = Door("tango://127.0.0.1:10000/door/tango_suite/1")
    run = door.run("ascan", "omega", 0, 10, 20, 0.1)   # blocks until the macro ends
    run.ok, run.output, run.result
    running = door.start("timescan", 100, 0.1)         # returns at once
    door.abort()                                       # AbortMacro on the Door
    running.wait(10)

A run ends when the Door's `MacroStatus` reports the macro's id as finished, stopped, aborted or
failed; `Output`, `Info`, `Warning` and `Error` lines pushed in between belong to that run.
"""

import contextlib
import functools
import json
import re
import threading
from dataclasses import dataclass, field

import tango

from ophyd_tango.core.errors import error_description
from tango_servers.stack.waiting import wait_until

ENDED = ("finish", "stop", "abort", "exception")
LOG_ATTRIBUTES = ("Output", "Info", "Warning", "Error")
EVENT_ATTRIBUTES = ("State", "MacroStatus", *LOG_ATTRIBUTES)


class MacroError(RuntimeError):
    """A macro ended in error, or could not be started; the message carries the Door's words."""


@dataclass
class MacroRun:
    """One macro run on a Door: its id, how it ended and the lines it printed."""

    macro: list[str]
    id: str = ""
    state: str = "start"
    started: bool = False
    outcome: str | None = None  # how MacroStatus said it ended; final once the Door leaves RUNNING
    lines: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in LOG_ATTRIBUTES})
    result: list[str] = field(default_factory=list)
    _ended: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def ok(self) -> bool:
        return self.state == "finish"

    @property
    def output(self) -> list[str]:
        return self.lines["Output"]

    @property
    def errors(self) -> list[str]:
        return self.lines["Error"]

    @property
    def text(self) -> str:
        """Everything the macro printed, in one string (for messages and assertions)."""
        return "\n".join(line for name in LOG_ATTRIBUTES for line in self.lines[name])

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def wait(self, timeout: float) -> "MacroRun":
        """Block until the macro ends; TimeoutError if it is still running after `timeout` s."""
        if not self._ended.wait(timeout):
            raise TimeoutError(f"macro {' '.join(self.macro)} still running after {timeout:g} s")
        return self


class Door:
    """A client of one Door device: start macros, wait for them, stop or abort them."""

    def __init__(self, name: str, timeout: float = 3.0, busy_timeout: float = 10.0) -> None:
        self.name = name
        self.busy_timeout = busy_timeout
        self.proxy = tango.DeviceProxy(name)
        self.proxy.set_timeout_millis(int(timeout * 1000))
        self._lock = threading.Lock()
        self._current: MacroRun | None = None
        self._primed: set[str] = set()
        self._door_state = tango.DevState.UNKNOWN
        self._event_ids: list[int] = []
        for attribute in EVENT_ATTRIBUTES:
            # Right after a MacroServer restart the first connections can be refused for a moment.
            (event_id,) = wait_until(
                functools.partial(self._subscribe, attribute),
                busy_timeout,
                interval=0.2,
                message=f"events of {name}/{attribute}",
            )
            self._event_ids.append(event_id)

    def _subscribe(self, attribute: str) -> list[int]:
        """A change-event subscription to `attribute`, its id in a list (an id of 0 is still a success)."""
        return [self.proxy.subscribe_event(attribute, tango.EventType.CHANGE_EVENT, self._on_event)]

    def close(self) -> None:
        for event_id in self._event_ids:
            with contextlib.suppress(tango.DevFailed):
                self.proxy.unsubscribe_event(event_id)
        self._event_ids = []

    def __enter__(self) -> "Door":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, *macro: object) -> MacroRun:
        """Start a macro (name then parameters) and return its run at once."""
        words = [str(word) for word in macro]
        run = MacroRun(words)
        # The Door leaves RUNNING a moment after the previous macro's end was announced.
        wait_until(
            lambda: self.proxy.state() != tango.DevState.RUNNING,
            self.busy_timeout,
            message=f"{self.name} to finish its previous macro",
        )
        # Holding the lock across RunMacro makes status events wait until the run knows its id.
        with self._lock:
            if self._current is not None and not self._current.ended:
                raise MacroError(f"{self.name} is already running {' '.join(self._current.macro)}")
            try:
                reply = self.proxy.command_inout("RunMacro", words)
            except tango.DevFailed as exc:
                raise MacroError(f"{self.name} refused {' '.join(words)}: {error_description(exc)}") from exc
            match = re.search(r'\bid="([^"]+)"', reply[0] if reply else "")
            run.id = match.group(1) if match else ""
            self._current = run
            self._door_state = tango.DevState.RUNNING
        return run

    def run(self, *macro: object, timeout: float = 60.0, check: bool = True) -> MacroRun:
        """Run a macro to its end. With `check`, a macro that did not finish raises MacroError."""
        run = self.start(*macro)
        try:
            run.wait(timeout)
        except TimeoutError:
            self.abort()
            raise
        if check and not run.ok:
            detail = "\n".join(run.errors) or run.text
            raise MacroError(f"{' '.join(run.macro)} ended with '{run.state}':\n{detail}")
        return run

    def abort(self) -> None:
        """Abort the running macro (motions stopped, acquisitions aborted)."""
        self.proxy.command_inout("AbortMacro")

    def stop(self) -> None:
        """Stop the running macro at the next point where it checks (gentler than abort)."""
        self.proxy.command_inout("StopMacro")

    def state(self) -> tango.DevState:
        return self.proxy.state()

    # -- events ------------------------------------------------------------------------------
    # A run ends in two steps: MacroStatus names its outcome (or, for refused parameters, an
    # Error line arrives without any status), then the Door's State leaves RUNNING. The Door
    # pushes the error report between the two, so waiting for State keeps it in the run.
    def _on_event(self, event: tango.EventData) -> None:
        attribute = event.attr_name.rsplit("/", 1)[-1].lower()
        name = next((a for a in EVENT_ATTRIBUTES if a.lower() == attribute), attribute)
        if name not in self._primed:
            # The first event repeats the last value, from before we subscribed.
            self._primed.add(name)
            return
        if event.err or event.attr_value is None or event.attr_value.value is None:
            return
        value = event.attr_value.value
        with self._lock:
            if name == "State":
                self._door_state = value
            run = self._current
            if run is None or run.ended:
                return
            if name == "MacroStatus":
                self._on_status(run, value)
            elif name != "State":
                run.lines[name].extend(str(line) for line in value)
                if name == "Error" and value and not run.started and run.outcome is None:
                    run.outcome = "exception"
            self._maybe_end(run)

    def _on_status(self, run: MacroRun, value: tuple[str, bytes]) -> None:
        _, payload = value
        if not payload:
            return
        for status in json.loads(payload):
            # Only the top-level macro's status ends the run (hooks and sub-macros have other ids).
            if status.get("id") != run.id:
                continue
            if status.get("state") == "start":
                run.started = True
                self._door_state = tango.DevState.RUNNING
            elif status.get("state") in ENDED:
                run.outcome = status["state"]

    def _maybe_end(self, run: MacroRun) -> None:
        if run.outcome is None or self._door_state == tango.DevState.RUNNING:
            return
        run.state = run.outcome
        try:
            run.result = list(self.proxy.read_attribute("Result").value or ())
        except tango.DevFailed:
            run.result = []
        run._ended.set()
