"""What every controller here needs to talk to our Tango servers: lazy proxies and state mapping.

The proxies come from the shared subscription engine (`ophyd_tango.core`): one per device for
the whole Pool, with one timeout.

The controller modules are loaded by the Pool from its PoolPath as top-level modules, so the
code they share lives here, in an ordinary package module, and is imported by absolute name.
"""

import tango
from sardana import State

from ophyd_tango.core.subscription import TangoSubscriber, write_attribute

# Generous: a loaded machine (or a real detector opening a file) can take seconds to answer.
PROXY_TIMEOUT = 10.0

_subscriber = TangoSubscriber(timeout=PROXY_TIMEOUT)

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


def axis_device(devices, axis: int) -> str:
    """The Tango device of controller axis `axis` (1-based) in a controller's `Devices` property."""
    devices = list(devices)
    if not 1 <= axis <= len(devices):
        raise ValueError(f"axis {axis} has no Tango device: the controller's Devices property lists {len(devices)}")
    return devices[axis - 1]


class DeviceLink:
    """One of our devices, its proxy created on first use.

    The Pool may start before the device server answers, and the server may restart while the
    Pool runs: a link never raises at construction, only when it is used.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def proxy(self) -> tango.DeviceProxy:
        return _subscriber.proxy(self.name)

    def state(self) -> tango.DevState:
        return self.proxy.state()

    def read(self, attribute: str):
        return self.proxy.read_attribute(attribute).value

    def write(self, attribute: str, value) -> None:
        write_attribute(self.proxy, attribute, value)

    def command(self, name: str, *args):
        return self.proxy.command_inout(name, *args)
