"""PVI: each bridged device's `{DEVICE}:PVI` structure, read by p4p and by ophyd-async's own
PviDeviceConnector (the client the structure is for)."""

import asyncio

import pytest
import tango
from ophyd_async.core import Device, SignalR, SignalRW, SignalW, TriggerableCommand
from ophyd_async.epics.core import PviDeviceConnector
from ophyd_async.epics.core._pvi_connector import SignalDetails
from p4p.client.thread import RemoteError
from tango import AttrDataFormat, AttrWriteType, CmdArgType

from bridges.pva.pvi import attribute_access, pvi_value
from ophyd_tango.core.types import AttributeType
from tango_servers.stack.waiting import wait_until

from .conftest import PREFIX, TARGET

TIMEOUT = 10.0
AXIS = "sim/aerotech/x"
BRIDGE = "sys/bridge/pva"


@pytest.mark.parametrize(
    ("writable", "access", "signal"),
    [
        (AttrWriteType.READ, "r", SignalR),
        (AttrWriteType.WRITE, "w", SignalW),
        (AttrWriteType.READ_WRITE, "rw", SignalRW),
        (AttrWriteType.READ_WITH_WRITE, "rw", SignalRW),
    ],
)
def test_tango_access_becomes_the_pvi_mode_ophyd_async_reads(writable, access, signal):
    attr = AttributeType(name="x", data_type=CmdArgType.DevDouble, data_format=AttrDataFormat.SCALAR, writable=writable)
    assert attribute_access(attr) == access
    value = pvi_value("Tango device a/b/c", {"x": {access: "A:B:C:x"}})
    entry = value.value.todict()["x"]
    assert SignalDetails.from_entry(entry).signal_type is signal  # ophyd-async's own parsing


def test_pvi_lists_attributes_by_access_and_void_commands_as_x(pva, target):
    pvi = pva.get(PREFIX + "PVI", timeout=TIMEOUT)  # a plain structure: p4p does not unwrap it
    entries = pvi.value.todict()
    assert entries["temperature"] == {"rw": PREFIX + "temperature"}
    assert entries["counter"] == {"r": PREFIX + "counter"}
    assert entries["State"] == {"r": PREFIX + "State"}
    assert entries["Bump"] == {"x": PREFIX + "Bump"}
    assert entries["NewFrame"] == {"x": PREFIX + "NewFrame"}  # an output is fine, an input is not
    assert "SetStateTo" not in entries and "SetProfile" not in entries
    attributes = {name for name in target.get_attribute_list()}
    commands = {c.cmd_name for c in target.command_list_query() if c.in_type == tango.DevVoid} - {"State", "Status"}
    assert set(entries) == attributes | commands
    assert pvi.display.description == f"Tango device {TARGET}"
    command = pva.get(PREFIX + "Bump", timeout=TIMEOUT).raw
    assert command.getID() == "epics:nt/NTScalar:1.0" and command.value is False


def test_a_put_to_an_x_entry_runs_the_command_only_when_allowed(pva, target):
    start = int(target.counter)
    pva.put(PREFIX + "Bump", True, timeout=TIMEOUT)
    assert int(target.counter) == start + 1  # the put completes after the Tango command
    frame = int(target.read_attribute("frame").value[0][0])
    with pytest.raises(RemoteError, match=r"read-only: add 'test/target/1/NewFrame' to put_allowlist"):
        pva.put(PREFIX + "NewFrame", True, timeout=TIMEOUT)
    with pytest.raises(RemoteError, match="put 1"):
        pva.put(PREFIX + "Bump", False, timeout=TIMEOUT)
    assert int(target.read_attribute("frame").value[0][0]) == frame
    assert int(target.counter) == start + 1


class Axis(Device):
    """What an ophyd-async user declares; PVI fills in the rest."""

    position: SignalRW[float]
    velocity: SignalRW[float]


async def _connect(prefix: str) -> Axis:
    axis = Axis(connector=PviDeviceConnector(prefix))
    await axis.connect(timeout=TIMEOUT)
    return axis


def test_ophyd_async_pvi_device_reads_and_moves_a_bridged_axis(stack, monkeypatch):
    if not stack.pva:
        pytest.skip("the default stack runs no PVA bridge")
    for key, value in stack.pva.items():
        monkeypatch.setenv(key, value)  # ophyd-async's p4p context reads the environment
    bridge = stack.proxy(BRIDGE)
    proxy = stack.proxy(AXIS)
    wait_until(lambda: "SIM:AEROTECH:X:PVI" in (bridge.pvi_names or ()), 60.0, message="the axis PVI PV")
    target = round(float(proxy.position) + 0.5, 3)

    async def refused() -> float:
        axis = await _connect("SIM:AEROTECH:X:")
        assert isinstance(axis.State, SignalR) and not isinstance(axis.State, SignalRW)  # filled from PVI
        assert isinstance(axis.Stop, TriggerableCommand)  # a Tango command, an x entry
        with pytest.raises(Exception, match=r"read-only: add 'sim/aerotech/x/Stop' to put_allowlist"):
            await axis.Stop.trigger(timeout=TIMEOUT)
        with pytest.raises(Exception, match=r"read-only: add 'sim/aerotech/x/position' to put_allowlist"):
            await axis.position.set(target, timeout=TIMEOUT)
        return await axis.position.get_value()

    assert asyncio.run(refused()) == pytest.approx(float(proxy.position), abs=1e-6)

    bridge.put_property({"put_allowlist": [f"{AXIS}/position", f"{AXIS}/Stop"]})
    try:
        bridge.Init()

        async def moves() -> float:
            axis = await _connect("SIM:AEROTECH:X:")
            await axis.position.set(target, timeout=TIMEOUT)
            deadline = asyncio.get_running_loop().time() + 30.0
            while abs(await axis.position.get_value() - target) > 1e-6:
                assert asyncio.get_running_loop().time() < deadline, "the axis did not reach its target"
                await asyncio.sleep(0.1)  # polling with a deadline: the position PV reads the readback
            await axis.Stop.trigger(timeout=TIMEOUT)  # runs the Tango command (at rest: nothing to stop)
            return await axis.position.get_value()

        assert asyncio.run(moves()) == pytest.approx(target, abs=1e-6)
        assert float(proxy.position) == pytest.approx(target, abs=1e-6)
    finally:
        bridge.delete_property("put_allowlist")
        bridge.Init()
