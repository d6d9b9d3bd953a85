"""`TangoDevice`: an ophyd Device whose structure and roles come from the Tango server."""

from __future__ import annotations

import contextlib
import difflib
import logging
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ophyd import Component, Device, Kind
from ophyd.device import DEVICE_INSTANCE_ATTRS, DEVICE_RESERVED_ATTRS
from ophyd.status import DeviceStatus, Status
from tango import CmdArgType

from ._acquisition import AcquisitionLogic, FileStream
from ._link import DeviceLink, TangoDeviceError
from ._motion import MoveLogic, MoveStatus
from ._signal import TangoSignal
from .core._private import install_lazy_device_tuple
from .core.errors import is_unreachable
from .core.names import identifier
from .core.roles import ROLE_KEYS, Roles, choose_roles, declares_read_set, default_kind, signal_kinds

__all__ = ["DEFAULT_TIMEOUT", "TangoCommand", "TangoCommands", "TangoDevice"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 3.0
# Names a signal or command method must not take from the device (ophyd API and ours).
_OPHYD_KINDS = {"normal", "hinted", "config", "omitted"}
_HIDDEN_COMMANDS = {"state", "status", "init"}


class TangoCommand:
    """A Tango command: call it with its argument (if any); returns what the command returns."""

    def __init__(self, link: DeviceLink, name: str, info: Any):
        self._link = link
        self.name = name
        self.info = info

    @property
    def __doc__(self) -> str:  # type: ignore[override]  # built on demand: reading CommandInfo fields is slow
        info = self.info
        return (
            f"Tango command {info.cmd_name}({info.in_type.name}: {info.in_type_desc}) "
            f"-> {info.out_type.name}: {info.out_type_desc}"
        )

    def __call__(self, argument: Any = None) -> Any:
        if argument is not None and self.info.in_type == CmdArgType.DevVoid:
            raise TypeError(f"command {self.name} takes no argument")
        return self._link.command(self.name, argument)

    def __repr__(self) -> str:
        return f"<TangoCommand {self._link.key}/{self.name}>"


class TangoCommands:
    """`dev.commands.<Name>(arg)`: every command of the device, by its Tango name
    (case-insensitively)."""

    def __init__(self, link: DeviceLink):
        self._commands = {name: TangoCommand(link, name, info) for name, info in link.commands.items()}
        self._lower = {name.lower(): command for name, command in self._commands.items()}

    def __getattr__(self, name: str) -> TangoCommand:
        try:
            return self._lower[name.lower()]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._commands), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise AttributeError(f"no command {name!r}{hint}") from None

    def __dir__(self) -> list[str]:
        return list(self._commands)

    def __iter__(self):
        return iter(self._commands)

    def __len__(self) -> int:
        return len(self._commands)


def _unreadable_defaults(link: DeviceLink, roles: Roles) -> list[str]:
    """The attributes of the default read set that fail to read now, with one warning naming
    them (and why); [] when the roles name the read set themselves."""
    if declares_read_set(roles):
        return []
    candidates = [atype.name for atype in link.types.values() if default_kind(atype) != "omitted"]
    failures = link.failing(candidates) if candidates else {}
    if failures:
        listed = ", ".join(f"{name} ({reason})" for name, reason in failures.items())
        warnings.warn(
            f"{link.key}: left out of read() and read_configuration(), failed to read at connection: {listed}; "
            f"name them in TangoDevice(..., read=[...]) to read them anyway",
            stacklevel=3,  # the line that built the TangoDevice
        )
    return list(failures)


_class_cache: dict[Any, type] = {}
_class_lock = threading.Lock()


class TangoDevice(Device):
    """An ophyd Device built from what a Tango device declares, at connection time.

    One signal per attribute (lower-case python names; `signal.tango_attribute` keeps Tango's),
    `state` and `status` among them; commands as `dev.commands.<Name>(arg)` and as methods where
    no name clashes. Roles (readback, setpoint, trigger, ...) come from conventions, the server's
    `bluesky_roles` property and `roles=`/keyword overrides; they make the device Movable
    (`set`, `stop`, `locate`), Triggerable and Stageable, and file-writing detectors emit
    StreamResource/StreamDatum documents. `read()` is one `read_attributes` round trip.
    """

    _link: DeviceLink
    _roles: Roles
    _failure: Exception | None = None  # the first error of this staging (see unstage)

    def __new__(cls, trl: str, *args: Any, timeout: float = DEFAULT_TIMEOUT, roles: Any = None, **kwargs: Any):
        link = DeviceLink.connect(trl, timeout=timeout, need_alias=kwargs.get("name") is None)
        user = _user_roles(link, roles, kwargs)
        chosen = choose_roles(link.dev_class, link.types, link.commands, link.declared_roles, user)
        klass = _device_class(cls, link, chosen, _unreadable_defaults(link, chosen))
        obj = super().__new__(klass)
        obj._link, obj._roles = link, chosen
        return obj

    def __init__(
        self,
        trl: str,
        *,
        name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        events: bool = True,
        roles: Mapping[str, Any] | Iterable[str] | None = None,
        kind: Any = None,
        read_attrs: list[str] | None = None,
        configuration_attrs: list[str] | None = None,
        parent: Any = None,
        **overrides: Any,
    ):
        self.trl = trl
        self.timeout = timeout
        self.event_kinds: tuple[str, ...] = ("change", "periodic") if events else ()
        ophyd_kind = kind if kind is None or (isinstance(kind, str) and kind in _OPHYD_KINDS) else None
        if isinstance(kind, Kind):
            ophyd_kind = kind
        default_name = self._link.alias or self._link.key.rsplit("/", 1)[-1]
        super().__init__(
            prefix="",
            name=name or default_name,
            kind=ophyd_kind,
            read_attrs=read_attrs,
            configuration_attrs=configuration_attrs,
            parent=parent,
        )
        self.commands = TangoCommands(self._link)
        taken = set(dir(type(self)))
        for command in self.commands._commands.values():
            if command.name.lower() not in _HIDDEN_COMMANDS and command.name not in taken:
                setattr(self, command.name, command)
        self._move = MoveLogic(self, self._link, self._roles) if self._roles.movable else None
        if self._move is not None and parent is None:
            self.signal(self._move.readback).name = self.name  # data key "x", as ophyd motors do
        framed = self._roles.triggered or "frame_counter" in self._roles
        self._acquisition = AcquisitionLogic(self, self._link, self._roles) if framed else None
        self._automatic_stage_sigs: set[Any] = set()
        self._stream: FileStream | None = None
        if self._acquisition is not None and self._roles.writes_files:
            self._stream = self._acquisition.stream = FileStream(self, self._link, self._roles, self._acquisition)
        self._read_names: dict[tuple[str, ...], list[str]] = {}
        self._read_set_cache: tuple[tuple[Kind, ...], list[Any], list[str]] | None = None
        weakref.finalize(self, _close_logic, self._move, self._acquisition, self._stream)

    # ---- structure -----------------------------------------------------------------------------
    @property
    def proxy(self):
        """The shared `tango.DeviceProxy` of this device."""
        return self._link.proxy

    @property
    def roles(self) -> Roles:
        """The roles chosen at connection (`roles.values`, `roles.sources`)."""
        return self._roles

    @property
    def tango_class(self) -> str:
        return self._link.dev_class

    @property
    def link(self) -> DeviceLink:
        """The device's connection: proxy, attribute types, batched reads, writes and commands."""
        return self._link

    @property
    def move_logic(self) -> MoveLogic | None:
        """How the device moves (None: not movable)."""
        return self._move

    @property
    def acquisition(self) -> AcquisitionLogic | None:
        """How the device acquires (None: not a detector)."""
        return self._acquisition

    @property
    def stream(self) -> FileStream | None:
        """The frames the device writes to files, as stream documents (None: writes none)."""
        return self._stream

    def notify(self, sub_type: str, **kwargs: Any) -> None:
        """Run the device's `sub_type` subscriptions (readback, progress) with `kwargs`."""
        self._run_subs(sub_type=sub_type, **kwargs)

    def signal(self, attribute: str) -> TangoSignal:
        """The signal of a Tango attribute, by its Tango name (any case)."""
        component = self._attribute_components.get(attribute.lower())
        if component is None:
            close = difflib.get_close_matches(attribute.lower(), list(self._attribute_components), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise AttributeError(f"{self._link.key} has no attribute {attribute!r}{hint}")
        return getattr(self, component)

    # ---- reading: one round trip per device ----------------------------------------------------
    def _names_of(self, attrs: list[str]) -> list[str]:
        key = tuple(attrs)
        names = self._read_names.get(key)
        if names is None:
            names = []
            for attr in attrs:
                signal = getattr(self, attr, None)
                if isinstance(signal, TangoSignal) and signal._link is self._link:
                    names.append(signal.tango_attribute)
            self._read_names[key] = names
        return names

    def _read_set(self) -> tuple[list[Any], list[str]]:
        """The components `read()` reads (as ophyd's walk over Kind.normal finds them) and the
        Tango names to fetch for them, recomputed only when a component's kind changed: ophyd's
        walk, with its Flag arithmetic per component, costs more than the round trip on a wide device."""
        kinds = tuple(map(self._get_kind, self.component_names))
        cached = self._read_set_cache
        if cached is None or cached[0] != kinds:
            components = [component for _, component in self._get_components_of_kind(Kind.normal)]
            attrs = [attr for attr, kind in zip(self.component_names, kinds, strict=True) if Kind.normal & kind]
            cached = self._read_set_cache = (kinds, components, self._names_of(attrs))
        return cached[1], cached[2]

    def read(self) -> dict[str, dict[str, Any]]:
        components, names = self._read_set()
        reading: dict[str, dict[str, Any]] = OrderedDict()
        try:
            with self._link.batch(names):
                for component in components:
                    reading.update(component.read())
        except TangoDeviceError as exc:
            self._failure = self._failure or exc  # what unstage() must not hide
            raise
        return reading

    def read_configuration(self) -> dict[str, dict[str, Any]]:
        with self._link.batch(self._names_of(self.configuration_attrs)):
            return super().read_configuration()

    def describe(self) -> dict[str, dict[str, Any]]:
        described = super().describe()
        if self._stream is not None:
            described.update(self._stream.describe())
        return described

    # ---- movable -------------------------------------------------------------------------------
    def _require_move(self) -> MoveLogic:
        if self._move is None:
            raise TypeError(
                f"{self.name} ({self._link.key}, class {self._link.dev_class}) is not movable: no setpoint role. "
                f"Pass setpoint=<attribute> (and readback=...) to TangoDevice to make it one."
            )
        return self._move

    # ---- triggering and staging ----------------------------------------------------------------
    def stage(self) -> list[Any]:
        self._failure = None
        if self._acquisition is not None:
            # The detector's own settings for this staging; values the user put in stage_sigs win.
            for signal, value in self._acquisition.stage_sigs().items():
                if signal not in self.stage_sigs or signal in self._automatic_stage_sigs:
                    self.stage_sigs[signal] = value
                    self._automatic_stage_sigs.add(signal)
        staged = super().stage()
        if self._acquisition is not None:
            try:
                self._acquisition.after_stage()
            except Exception:
                super().unstage()
                raise
        return staged

    def unstage(self) -> list[Any]:
        """Stop the acquisition and restore what stage() changed. When a frame of this staging
        failed, a failure while cleaning up is logged and the frame's error raised again: the
        run's reason stays the first error, never the clean-up's."""
        if self._acquisition is not None:
            self._acquisition.before_unstage()
            failure = self._acquisition.failure
            if failure is not None and is_unreachable(getattr(failure, "reason", "")) and self._original_vals:
                # Each write to a hung server would wait out Tango's retries: restore nothing.
                names = ", ".join(signal.name for signal in self._original_vals)
                logger.warning("%s: not restoring %s: %s", self.name, names, failure)
                self._original_vals.clear()
        try:
            return super().unstage()
        except Exception as exc:
            failure = self._failure or (self._acquisition.failure if self._acquisition is not None else None)
            if failure is None:
                raise
            logger.warning("%s: unstage after %s: %s", self.name, failure, exc)
            raise failure from exc
        finally:
            self._failure = None

    def trigger(self) -> Status:
        if self._acquisition is None:
            status = DeviceStatus(self)
            status.set_finished()
            return status
        return self._acquisition.trigger()

    def resume(self) -> None:
        """After the RunEngine paused: a framed detector recounts its frames (see resync)."""
        if self._acquisition is not None:
            self._acquisition.resync()
        super().resume()

    def stop(self, *, success: bool = False) -> None:
        if self._move is not None:
            self._move.stop(success)
        if self._acquisition is not None:
            self._acquisition.stop()

    def __repr__(self) -> str:
        return f"TangoDevice({self.trl!r}, name={self.name!r})  # {self._link.dev_class}, roles: {self._roles.kind}"


install_lazy_device_tuple(
    TangoDevice, Component, DEVICE_RESERVED_ATTRS | DEVICE_INSTANCE_ATTRS, marker="_attribute_components"
)


class MovableTangoDevice(TangoDevice):
    """A TangoDevice with a setpoint: bluesky Movable, Locatable and Stoppable."""

    SUB_READBACK = "readback"
    SUB_PROGRESS = "progress"
    _default_sub = SUB_READBACK

    def set(self, value: Any, *, timeout: float | None = None, **kwargs: Any) -> MoveStatus:
        """Move to `value`; the Status finishes when the device has settled at it (see MoveLogic)."""
        return self._require_move().set(value, timeout=timeout)

    def move(self, value: Any, *, wait: bool = True, timeout: float | None = None) -> MoveStatus:
        status = self.set(value, timeout=timeout)
        if wait:
            status.wait()
        return status

    @property
    def position(self) -> Any:
        """The readback's current value (read now), as ophyd positioners offer it."""
        return self.readback.get()

    @property
    def readback(self) -> TangoSignal:
        """The signal of the readback attribute."""
        return self.signal(self._require_move().readback)

    @property
    def setpoint(self) -> TangoSignal:
        """The signal of the setpoint attribute."""
        return self.signal(self._require_move().setpoint)

    def locate(self) -> dict[str, Any]:
        move = self._require_move()
        target = move.setpoint_readback
        values = self._link.read([move.readback] + ([target] if target else []))
        readback = move.readback_type.to_bluesky(values[move.readback].value)
        setpoint = values[target].value if target else None
        if setpoint is None:
            status = move.status
            setpoint = status.target if status is not None else readback
        return {"setpoint": setpoint, "readback": readback}

    @property
    def moving(self) -> bool:
        return self._require_move().moving()

    @property
    def egu(self) -> str:
        return self._require_move().readback_type.unit or ""


class StreamingTangoDevice(TangoDevice):
    """A TangoDevice writing frames to files: bluesky WritesStreamAssets."""

    _stream: FileStream

    def collect_asset_docs(self, index: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self._stream.collect_asset_docs(index)

    def get_index(self) -> int:
        return self._stream.get_index()


def _close_logic(*logics: Any) -> None:
    for logic in logics:
        if logic is not None:
            with contextlib.suppress(Exception):
                logic.close()


def _user_roles(link: DeviceLink, roles: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """roles= plus role keywords; an unknown keyword is an error naming close matches."""
    user: dict[str, Any] = {}
    if roles:
        if isinstance(roles, Mapping):
            user.update(roles)
        else:
            for entry in roles:
                key, _, value = entry.partition("=")
                user[key.strip()] = value
    known = set(ROLE_KEYS) | {entry.partition("=")[0] for entry in link.declared_roles}
    known |= {"dataset", "frames_per_file"}
    constructor = {"name", "events", "kind", "read_attrs", "configuration_attrs", "parent"}
    for key, value in kwargs.items():
        if key in constructor:
            if key == "kind" and isinstance(value, str) and value not in _OPHYD_KINDS:
                user["kind"] = value
            continue
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known | constructor), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise TypeError(f"TangoDevice got an unknown keyword {key!r}{hint} (role keys: {', '.join(ROLE_KEYS)})")
        user[key] = value
    return user


def _device_class(cls: type, link: DeviceLink, roles: Roles, unreadable: list[str]) -> type:
    """A Device subclass with one Component per attribute (cached per structure and kinds)."""
    kinds = {name: Kind[kind] for name, kind in signal_kinds(link.types, roles, unreadable).items()}
    bases: tuple[type, ...] = ()
    if roles.movable:
        bases += (MovableTangoDevice,)
    if roles.writes_files:
        bases += (StreamingTangoDevice,)
    bases = (*(b for b in bases if not issubclass(cls, b)), cls)
    key = (bases, link.dev_class, tuple(sorted((n, k.value) for n, k in kinds.items())))
    with _class_lock:
        klass = _class_cache.get(key)
        if klass is not None:
            return klass
        reserved = set(DEVICE_RESERVED_ATTRS) | set(DEVICE_INSTANCE_ATTRS)
        for base in bases:
            reserved |= set(dir(base))
        namespace: dict[str, Any] = {}
        attribute_components: dict[str, str] = {}
        for atype in link.types.values():
            ident = identifier(atype.name)
            if ident in reserved or ident in namespace:
                ident = f"{ident}_attr"
            # Lazy: a signal is built when first used, so connecting to a wide device stays cheap.
            namespace[ident] = Component(
                TangoSignal,
                tango_attribute=atype.name,
                kind=kinds[atype.name],
                lazy=True,
                doc=atype.description or atype.name,
            )
            attribute_components[atype.name.lower()] = ident
        namespace["_attribute_components"] = attribute_components
        if not (roles.triggered or "frame_counter" in roles):
            # Nothing to trigger: not bluesky Triggerable, so plans skip the trigger-and-wait.
            namespace["trigger"] = None
        namespace["__module__"] = cls.__module__
        namespace["__doc__"] = f"{cls.__name__} of Tango class {link.dev_class} (built at connection)."
        klass = type(f"{cls.__name__}_{identifier(link.dev_class)}", bases, namespace)
        _class_cache[key] = klass
        return klass
