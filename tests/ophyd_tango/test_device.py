"""TangoDevice on the TypeZoo: every type through signals, one round trip per read, commands,
events and polling, bad writes, names."""

import threading

import numpy as np
import pytest
import tango
from ophyd import Kind

from ophyd_tango import TangoDevice, TangoDeviceError, TangoSignal
from tango_servers.stack.waiting import wait_until

INTS = ["uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]
KINDS = ["bool", *INTS, "float32", "float64", "string"]


@pytest.fixture(scope="module")
def zoo(zoo_trl):
    return TangoDevice(zoo_trl, name="zoo")


def _new_value(kind, fmt, signal):
    if kind == "bool":
        scalar, items = False, [True, True, False]
    elif kind == "string":
        scalar, items = "via ophyd", ["x", "yy"]
    elif kind.startswith("float"):
        scalar, items = 0.75, [1.25, -2.5]
    else:
        info = np.iinfo(signal.tango_type.numpy_dtype)
        scalar, items = int(info.min), [int(info.max), int(info.min), 7]
    return {"scalar": scalar, "spectrum": items, "image": [items, items]}[fmt]


@pytest.mark.parametrize("fmt", ["scalar", "spectrum", "image"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_type_both_ways_through_signals(zoo, kind, fmt):
    signal = getattr(zoo, f"{kind}_{fmt}")
    assert isinstance(signal, TangoSignal) and signal.tango_attribute == f"{kind}_{fmt}"
    value = _new_value(kind, fmt, signal)
    signal.set(value).wait(5)
    back = signal.get()
    key = signal.describe()[signal.name]
    if fmt == "scalar":
        assert back == value
        assert key["shape"] == []
    else:
        assert np.array_equal(np.asarray(back), np.asarray(value))
        assert key["shape"] == list(np.shape(back))
        if kind != "string":
            assert back.dtype == signal.tango_type.numpy_dtype  # integer widths survive
    reading = signal.read()[signal.name]
    assert reading["timestamp"] > 1e9


def test_enum_state_encoded_by_label(zoo):
    zoo.enum_scalar.set("Off").wait(5)
    assert zoo.enum_scalar.get() == "Off"
    assert zoo.enum_scalar.enum_strs == ("Off", "Low", "High")
    zoo.enum_scalar.set(2).wait(5)
    assert zoo.enum_scalar.read()["zoo_enum_scalar"]["value"] == "High"
    assert zoo.state.get() == "ON" and zoo.state_scalar.get() == "MOVING"
    assert zoo.state_spectrum.get() == ["ON", "FAULT"]
    assert zoo.describe_configuration()["zoo_enum_scalar"]["choices"] == ["Off", "Low", "High"]
    zoo.encoded.set(("bin", b"\x00\x01\xff")).wait(5)
    assert zoo.encoded.get() == ("bin", b"\x00\x01\xff")


@pytest.mark.parametrize(
    "attribute, value, error, words",
    [
        ("limited", 11.0, TangoDeviceError, "API_WAttrOutsideLimit"),
        ("uint8_scalar", 256, ValueError, "does not fit"),
        ("int16_scalar", "12", TypeError, "takes an integer"),
        ("float64_scalar", "1.5", TypeError, "takes a number"),
        ("bool_scalar", 1, TypeError, "takes a bool"),
        ("enum_scalar", "Medium", ValueError, "labels: Off, Low, High"),
        ("uint16_spectrum", [1, -1], ValueError, "do not fit|does not fit"),
        ("float32_image", [1.0, 2.0], ValueError, "2-D"),
        ("state_scalar", "ON", Exception, "read-only"),
    ],
)
def test_bad_writes_raise_clearly(zoo, attribute, value, error, words):
    signal = zoo.signal(attribute)
    status = signal.set(value)
    with pytest.raises(error, match=words):
        status.wait(5)
    with pytest.raises(error, match=words):
        signal.put(value)


def test_read_is_one_round_trip(zoo, monkeypatch):
    calls = []
    original = zoo._link._call

    def counting(what, function, *args):
        calls.append((function.__name__, *args))
        return original(what, function, *args)

    monkeypatch.setattr(zoo._link, "_call", counting)
    reading = zoo.read()
    configuration = zoo.read_configuration()
    monkeypatch.undo()
    assert [c[0].endswith("read_attributes") for c in calls] == [True, True]
    calls = [c[1] for c in calls]
    assert len(calls) == 2
    assert len(calls[0]) == len(reading) >= 4
    assert len(calls[1]) == len(configuration) >= 13
    # Generic device: read-only scalars are read, writable ones are configuration, arrays omitted.
    assert zoo.ticks.kind == Kind.normal and zoo.float64_scalar.kind == Kind.config
    assert zoo.float64_image.kind == Kind.omitted


def test_value_after_write_is_never_stale(zoo):
    zoo.float64_scalar.subscribe(lambda **kw: None)  # a monitored signal too
    for value in (1.0, 2.0, 3.0):
        zoo.float64_scalar.put(value)
        assert zoo.float64_scalar.get() == value
        assert zoo.read_configuration()["zoo_float64_scalar"]["value"] == value


def test_commands_and_methods(zoo):
    assert zoo.commands.Double(1.25) == 2.5
    assert zoo.commands.double(2.0) == 4.0  # case-insensitive
    assert zoo.Sum([1, 2, 3]) == 6
    assert zoo.Echo("hi") == "hi"
    with pytest.raises(AttributeError, match="did you mean Double"):
        getattr(zoo.commands, "Doubel")  # noqa: B009
    with pytest.raises(TypeError, match="cannot be converted to type DevDouble"):
        zoo.commands.Double("not a number")


def test_signal_events_and_polling(zoo):
    got, polled = [], []
    ticked = threading.Event()
    zoo.ticks.subscribe(lambda value, **kw: (got.append(value), ticked.set()))
    start = zoo.ticks.get()
    zoo.Tick()
    wait_until(lambda: got and got[-1] == start + 1, 5, message="a tick event")
    with pytest.warns(UserWarning, match="quiet: no Tango events"):
        zoo.quiet.subscribe(lambda value, **kw: polled.append(value))
    wait_until(lambda: polled == [42.0], 5, message="a polled value")
    assert zoo._link.subscriber.attribute_types(zoo.trl)["quiet"].kind == "float"


def test_events_off_means_polling(zoo_trl):
    quiet = TangoDevice(zoo_trl, name="zoo_polled", events=False)
    got = []
    quiet.ticks.subscribe(lambda value, **kw: got.append(value))
    assert quiet.ticks._subscription.modes() == {"ticks": "polling"}
    before = quiet.ticks.get()
    quiet.Tick()
    wait_until(lambda: got and got[-1] == before + 1, 5, message="a polled tick")


def test_unknown_attribute_and_keyword(zoo, zoo_trl):
    with pytest.raises(AttributeError, match="did you mean ticks"):
        zoo.signal("tikcs")
    with pytest.raises(TypeError, match="did you mean readback"):
        TangoDevice(zoo_trl, readbak="ticks")


def test_role_overrides_make_a_movable(zoo_trl):
    dev = TangoDevice(zoo_trl, name="fake_motor", readback="float64_scalar", setpoint="float64_scalar")
    assert dev.roles.sources["setpoint"] == "user"
    assert dev.hints == {"fields": ["fake_motor"]}
    dev.set(4.5).wait(5)
    assert dev.position == 4.5
    assert dev.locate() == {"setpoint": 4.5, "readback": 4.5}


def test_unreachable_device_raises_with_its_name():
    with pytest.raises(TangoDeviceError, match="cannot connect to Tango device"):
        TangoDevice("tango://127.0.0.1:1/test/none/1#dbase=no", timeout=1.0)


def test_image_metadata_and_units(zoo):
    key = zoo.limited.describe()["zoo_limited"]
    assert key["units"] == "mm" and key["precision"] == 3
    assert zoo.limited.limits == (-10.0, 10.0)
    assert zoo.limited.metadata["tango_attribute"] == "limited"
    assert zoo.proxy.state() == tango.DevState.ON


def test_built_from_a_configuration_dictionary(zoo_trl):
    config = {"trl": zoo_trl, "name": "from_yaml", "timeout": 2.0, "events": False, "hinted": "ticks"}
    dev = TangoDevice(**config)
    assert dev.name == "from_yaml" and dev.timeout == 2.0
    assert dev.hints == {"fields": ["from_yaml_ticks"]}
