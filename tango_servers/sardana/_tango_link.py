"""What every controller here needs to talk to our Tango servers: lazy proxies and state mapping.

The controller modules are loaded by the Pool from its PoolPath as top-level modules, so the
code they share lives here, in an ordinary package module, and is imported by absolute name.
"""

import threading

import tango
from sardana import State

# Generous: a loaded machine (or a real detector opening a file) can take seconds to answer.
PROXY_TIMEOUT_MS = 10000

_STATES = {
    tango.DevState.ON: State.On,
    tango.DevState.OFF: State.Off,
    tango.DevState.STANDBY: State.On,
    tango.DevState.MOVING: State.Moving,
    tango.DevState.RUNNING: State.Moving,
    tango.DevState.FAULT: State.Fault,
    tango.DevState.ALARM: State.Alarm,
    tango.DevState.DISABLE: State.Disable,
    tango.DevState.INIT: State.Init,
    tango.DevState.UNKNOWN: State.Unknown,
}


def sardana_state(state: tango.DevState) -> int:
    """The Sardana element state for a Tango device state (STANDBY is an idle axis: On)."""
    return _STATES.get(state, State.Unknown)


class DeviceLink:
    """One DeviceProxy to one of our devices, created on first use and re-created after errors.

    The Pool may start before the device server answers, and the server may restart while the
    Pool runs: a link never raises at construction, only when it is used.
    """

    def __init__(self, name: str, timeout_ms: int = PROXY_TIMEOUT_MS) -> None:
        self.name = name
        self._timeout_ms = timeout_ms
        self._proxy: tango.DeviceProxy | None = None
        self._lock = threading.Lock()

    @property
    def proxy(self) -> tango.DeviceProxy:
        with self._lock:
            if self._proxy is None:
                proxy = tango.DeviceProxy(self.name)
                proxy.set_timeout_millis(self._timeout_ms)
                self._proxy = proxy
            return self._proxy

    def state(self) -> tango.DevState:
        return self.proxy.state()

    def read(self, attribute: str):
        return self.proxy.read_attribute(attribute).value

    def write(self, attribute: str, value) -> None:
        self.proxy.write_attribute(attribute, value)

    def command(self, name: str, *args):
        return self.proxy.command_inout(name, *args)


def describe_error(exc: Exception) -> str:
    """The first line a user can act on from a DevFailed (or any exception)."""
    if isinstance(exc, tango.DevFailed) and exc.args:
        return exc.args[0].desc.strip()
    return str(exc)
