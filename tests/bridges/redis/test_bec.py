"""The bridge's `bec` layout, read by BEC's own client library (bec_lib), against the real servers.

The shipped stack writes both layouts; BEC's `RedisConnector` finds the devices under the names
`ophyd_tango.connect` gives them: `x` (member), `aerotech`, `pilatus`, `oav` (aliases).
"""

import json
import threading
from types import SimpleNamespace
from urllib.parse import urlsplit

import numpy as np
import pytest

from bridges.redis._bec import (
    device_config_message,
    device_config_update_message,
    device_info_message,
    device_message,
    file_message,
    preview_message,
    progress_message,
)
from bridges.redis._bec_device import BEC_DEVICE_NAMES, BEC_POSITIONER_NAMES
from ophyd_tango import TangoDevice
from tango_servers.stack.waiting import wait_until

from .conftest import start_pilatus_files

bec_lib = pytest.importorskip("bec_lib", reason="bec_lib is a test dependency (pip install bec_lib)")
from bec_lib import messages  # noqa: E402
from bec_lib.device import Device as BecDeviceProxy  # noqa: E402
from bec_lib.device import Positioner  # noqa: E402
from bec_lib.devicemanager import DeviceManagerBase  # noqa: E402
from bec_lib.endpoints import MessageEndpoints  # noqa: E402
from bec_lib.redis_connector import RedisConnector  # noqa: E402
from bec_lib.serialization import MsgpackSerialization  # noqa: E402

AXIS, CTRL, PILATUS, OAV = "sim/aerotech/x", "sim/aerotech/ctrl", "sim/pilatus/1", "sim/oav/1"


# -- the encoding, byte for byte against bec_lib's --------------------------------------------
def test_messages_are_byte_for_byte_what_bec_lib_writes():
    signals = {"x": {"value": 1.5, "timestamp": 2.0}, "x_count": {"value": 3, "timestamp": 2.5}}
    assert device_message(signals) == MsgpackSerialization.dumps(messages.DeviceMessage(signals=signals))
    assert progress_message(0.25, 1.0, False) == MsgpackSerialization.dumps(
        messages.ProgressMessage(value=0.25, max_value=1.0, done=False)
    )
    event = {"file_path": "/d/a.h5", "file_type": "h5", "hinted_location": {"data": "entry_0000/measurement/data"}}
    expected = messages.FileMessage(
        file_path="/d/a.h5",
        done=True,
        successful=True,
        device_name="pilatus",
        hinted_h5_entries={"data": "entry_0000/measurement/data"},
    )
    assert file_message({**event, "done": True, "success": True}, "pilatus") == MsgpackSerialization.dumps(expected)
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    ours = MsgpackSerialization.loads(preview_message("oav", "image", image, 5.0))
    assert isinstance(ours, messages.DevicePreviewMessage)
    assert (ours.device, ours.signal, ours.timestamp) == ("oav", "image", 5.0)
    np.testing.assert_array_equal(ours.data, image)
    reference = messages.DevicePreviewMessage(device="oav", signal="image", data=image, timestamp=5.0)
    assert preview_message("oav", "image", image, 5.0) == MsgpackSerialization.dumps(reference)
    info = {"device_base_class": "positioner", "device_class": "TangoDevice_automation1axis", "signals": {}}
    assert device_info_message("x", info) == MsgpackSerialization.dumps(
        messages.DeviceInfoMessage(device="x", info=info)
    )
    config = [{"name": "x", "deviceClass": "ophyd_tango.TangoDevice", "enabled": True, "readoutPriority": "baseline"}]
    assert device_config_message(config) == MsgpackSerialization.dumps(
        messages.AvailableResourceMessage(resource=config)
    )
    assert device_config_update_message("add", {"x": config[0]}) == MsgpackSerialization.dumps(
        messages.DeviceConfigMessage(action="add", config={"x": config[0]})
    )


def test_signal_names_bec_reserves_are_bec_lib_s():
    public = {name for name in dir(BecDeviceProxy) if not name.startswith("_")}
    assert public == BEC_DEVICE_NAMES
    assert {name for name in dir(Positioner) if not name.startswith("_")} - public == BEC_POSITIONER_NAMES


# -- against the real servers -----------------------------------------------------------------
@pytest.fixture(scope="module")
def connector(stack):
    if not stack.redis_url:
        pytest.skip("the session stack runs no redis-server")
    url = urlsplit(stack.redis_url)
    connector = RedisConnector(f"{url.hostname}:{url.port}", password=url.password, socket_timeout=5.0)
    wait_until(
        lambda: connector.get(MessageEndpoints.device_readback("x")) is not None,
        60,
        message="the bridge to write BEC's readback of x",
    )
    yield connector
    connector.shutdown()


def test_bec_reads_an_axis_readback_named_after_the_device(stack, connector):
    axis = stack.proxy(AXIS)
    target = round(axis.position + 0.25, 3)
    axis.position = target
    wait_until(
        lambda: abs(connector.get(MessageEndpoints.device_readback("x")).signals["x"]["value"] - target) < 1e-6,
        30,
        message="x at its target in BEC's readback",
    )
    reading = connector.get(MessageEndpoints.device_readback("x"))
    assert isinstance(reading, messages.DeviceMessage)
    assert reading.signals["x"]["timestamp"] > 0
    assert isinstance(reading.signals["x"]["value"], float)
    read = connector.get(MessageEndpoints.device_read("x"))
    assert isinstance(read, messages.DeviceMessage) and "x" in read.signals


def test_bec_follows_aerotech_program_progress(stack, connector):
    seen: list[messages.ProgressMessage] = []
    done = threading.Event()

    def on_progress(message_object, **_) -> None:
        seen.append(message_object.value)
        if message_object.value.done and message_object.value.value >= 1.0:
            done.set()

    connector.register(MessageEndpoints.device_progress("aerotech"), cb=on_progress)
    try:
        stack.proxy(CTRL).RunProgram("Dwell(0.3)\nDwell(0.3)")
        assert done.wait(20), f"no finished ProgressMessage; saw {seen}"
    finally:
        connector.unregister(MessageEndpoints.device_progress("aerotech"), cb=on_progress)
    assert all(isinstance(m, messages.ProgressMessage) and m.max_value == 1.0 for m in seen)
    assert any(not m.done and 0.0 <= m.value < 1.0 for m in seen), "progress while running"
    last = connector.get(MessageEndpoints.device_progress("aerotech"))
    assert isinstance(last, messages.ProgressMessage) and last.done


def test_bec_gets_the_pilatus_file_event_as_a_file_message(stack, connector, request):
    pilatus = stack.proxy(PILATUS)
    files = start_pilatus_files(pilatus, "bec_", request)

    def closed() -> messages.FileMessage | None:
        message = connector.get(MessageEndpoints.file_event("pilatus"))
        ok = message is not None and message.file_path.startswith(files) and message.done
        return message if ok else None

    message = wait_until(closed, 20, message="the Pilatus file to be closed")
    server_event = json.loads(pilatus.file_event)  # the dataset path is the server's, not ours
    assert isinstance(message, messages.FileMessage)
    assert message.file_path == server_event["file_path"]
    assert message.successful is True and message.device_name == "pilatus" and message.file_type == "h5"
    assert message.hinted_h5_entries == server_event["hinted_location"]


def test_bec_gets_throttled_oav_previews(stack, connector):
    endpoint = MessageEndpoints.device_preview("oav", "image")
    preview = wait_until(lambda: connector.get_last(endpoint, "data"), 20, message="an OAV preview")
    assert isinstance(preview, messages.DevicePreviewMessage)
    assert (preview.device, preview.signal) == ("oav", "image")
    image = stack.proxy(OAV).image
    assert preview.data.shape == image.shape and preview.data.dtype == image.dtype
    entries = connector.xrange(endpoint, "-", "+")
    assert 1 <= len(entries) <= 10, "previews are capped (preview_maxlen)"
    stamps = [entry["data"].timestamp for entry in entries]
    assert stamps == sorted(stamps)


def test_bec_follows_the_progress_of_an_axis_move(stack, connector):
    axis = stack.proxy(AXIS)
    seen: list[messages.ProgressMessage] = []
    done = threading.Event()

    def on_progress(message_object, **_) -> None:
        seen.append(message_object.value)
        if seen[-1].done and any(not m.done for m in seen):
            done.set()

    connector.register(MessageEndpoints.device_progress("x"), cb=on_progress)
    try:
        distance = max(0.5, 0.5 * axis.velocity)  # about half a second of motion
        axis.position = axis.position + distance if axis.position < 0 else axis.position - distance
        assert done.wait(30), f"no move from running to done; saw {seen}"
    finally:
        connector.unregister(MessageEndpoints.device_progress("x"), cb=on_progress)
    running = [m for m in seen if not m.done]
    assert all(0.0 <= m.value < 1.0 and m.max_value == 1.0 for m in running)
    assert seen[-1].value == 1.0


# -- BEC's device manager lists the bridged devices, with ophyd_tango's read sets -----------
@pytest.fixture(scope="module")
def device_manager(connector):
    """bec_lib's DeviceManagerBase loading the session from Redis, as BEC's clients and GUIs do."""
    wait_until(
        lambda: (
            {"x", "aerotech", "pilatus", "oav"}
            <= {entry["name"] for entry in getattr(connector.get(MessageEndpoints.device_config()), "resource", [])}
        ),
        60,
        message="BEC's device config to list the stack's devices",
    )
    manager = DeviceManagerBase(SimpleNamespace(connector=connector, _service_name="test"))
    manager.initialize(connector.host)
    return manager


def _reading_names(device: TangoDevice) -> set[str]:
    """What ophyd_tango's read() reads, less images (BEC carries those as previews)."""
    described = device.describe()
    return {name for name in device.read() if len(described[name]["shape"]) < 2}


def test_bec_device_manager_builds_the_axis_as_a_positioner(stack, device_manager, connector):
    x = device_manager.devices["x"]
    assert isinstance(x, Positioner)
    signals = x._info["signals"]
    # `position` is a Positioner's own (`x.position`): the signal is `position_attr`, as in ophyd_tango
    assert signals["position_attr"]["obj_name"] == "x" and signals["position_attr"]["kind_str"] == "hinted"
    assert signals["velocity"]["kind_str"] == "config"
    assert x._info["hints"] == {"fields": ["x"]}
    assert x._info["describe"]["x"]["units"] == stack.proxy(AXIS).get_attribute_config("position").unit
    assert x._config["deviceConfig"] == {"trl": AXIS}
    reading = x.read(cached=True)  # bec_lib's own read of info/devices/readback/x
    assert abs(reading["x"]["value"] - stack.proxy(AXIS).position) < 1e-6
    assert x.position_attr.get(cached=True) == reading["x"]["value"]
    configuration = wait_until(
        lambda: connector.get(MessageEndpoints.device_read_configuration("x")),
        20,
        message="the configuration of x",
    )
    assert configuration.signals["x_velocity"]["value"] == stack.proxy(AXIS).velocity


@pytest.mark.parametrize(("name", "device"), [("x", AXIS), ("pilatus", PILATUS), ("oav", OAV), ("aerotech", CTRL)])
def test_bec_reads_what_ophyd_tango_reads(stack, device_manager, connector, name, device):
    bec_device = device_manager.devices[name]
    assert isinstance(bec_device, BecDeviceProxy)
    ophyd_device = TangoDevice(stack.trl(device), name=name)
    expected = _reading_names(ophyd_device)
    read_kinds = {"hinted", "normal"}
    listed = {s["obj_name"] for s in bec_device._info["signals"].values() if s["kind_str"] in read_kinds}
    assert expected <= listed, "BEC's device info lists every signal read() reads"
    assert set(bec_device._info["hints"]["fields"]) == set(ophyd_device.hints["fields"])

    def complete() -> set[str] | None:
        message = connector.get(MessageEndpoints.device_readback(name))
        names = set(message.signals) if message is not None else set()
        return names if names >= expected else None

    if expected:
        assert wait_until(complete, 20, message=f"{name}'s whole reading in BEC") == expected
    else:  # a controller reads nothing, as its roles say (configuration only)
        assert connector.get(MessageEndpoints.device_readback(name)) is None


def test_a_bridge_leaves_bec_s_device_config_alone_when_told(start_feed_stack, private_redis):
    """`bec_device_config` false, where a BEC config service owns `info/devices/config`: the
    bridge writes its devices' info and readings, and never that key nor its update channel."""
    client = private_redis.client()
    updates = client.pubsub()
    updates.subscribe(MessageEndpoints.device_config_update().endpoint)
    feed = start_feed_stack(redis_url=private_redis.url, layout=["bec"], bec_device_config=["false"])
    infos = wait_until(
        lambda: client.keys(f"{MessageEndpoints.device_info('*').endpoint}"), 30, message="a BEC device info"
    )
    name = infos[0].decode().rsplit("/", 1)[-1]
    wait_until(lambda: client.exists(MessageEndpoints.device_read(name).endpoint), 30, message=f"a reading of {name}")
    assert str(feed.bridge.state()) != "FAULT"
    assert not client.exists(MessageEndpoints.device_config().endpoint)
    published = [m for m in iter(lambda: updates.get_message(timeout=0.2), None) if m["type"] == "message"]
    assert published == []
