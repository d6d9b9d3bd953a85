"""TangoTest, Tango's own C++ test device (Debian's tango-test), as a device nobody here wrote:
every attribute type it has, its commands, its default read set, plans over it and discovery
on a database that also holds our own test devices."""

import warnings

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.callbacks import LiveTable
from bluesky.plans import count, scan
from ophyd import Kind

from ophyd_tango import TangoDevice, TangoDeviceError, connect
from tango_servers.stack.waiting import wait_until

FAILING_AT_CONNECT = {"no_value": "API_AttrValueNotSet", "throw_exception": "exception test"}


@pytest.fixture(scope="module")
def tg_test(tango_test):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        device = TangoDevice(tango_test.trl, name="tg_test")
    # only the device's own warnings: the garbage collector may add a ResourceWarning of other tests
    device.connect_warnings = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return device


@pytest.fixture
def documents():
    collected = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: collected.append((name, doc)))
    return RE, collected


def events(collected):
    return [doc for name, doc in collected if name == "event"]


# ---- types ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("long64_scalar", -(2**62) + 3),
        ("ulong64_scalar", 2**63 + 7),
        ("uchar_scalar", 250),
        ("short_scalar", -1234),
        ("ushort_scalar", 65000),
        ("long_scalar", -2_000_000_000),
        ("ulong_scalar", 4_000_000_000),
        ("float_scalar", 1.5),
        ("double_scalar", -204.45),
        ("boolean_scalar", True),
        ("string_scalar", "hello TangoTest"),
    ],
)
def test_scalar_writes_round_trip_with_faithful_types(tg_test, attribute, value):
    signal = tg_test.signal(attribute)
    signal.put(value)
    # TangoTest's read value of a read-write scalar drifts; its set value is what was written.
    written = tg_test.proxy.read_attribute(attribute).w_value
    assert written == value
    read = signal.get()
    expected = {bool: "boolean", str: "string", float: "number", int: "integer"}[type(value)]
    assert signal.describe()[signal.name]["dtype"] == expected
    assert isinstance(
        read, {"boolean": bool | np.bool_, "string": str, "number": float, "integer": int | np.integer}[expected]
    )


def test_large_unsigned_integers_stay_exact(tg_test):
    tg_test.ulong64_scalar.put(2**64 - 1)
    assert tg_test.proxy.read_attribute("ulong64_scalar").w_value == 2**64 - 1
    with pytest.raises((TypeError, ValueError), match="ulong64_scalar"):
        tg_test.ulong64_scalar.put(-1)
    with pytest.raises((TypeError, ValueError), match="uchar_scalar"):
        tg_test.uchar_scalar.put(256)


def test_state_is_a_label_and_switch_states_changes_it(tg_test):
    assert tg_test.state.get() == "RUNNING"
    assert "FAULT" in tg_test.state.enum_strs
    try:
        tg_test.SwitchStates()
        wait_until(lambda: tg_test.state.get() == "FAULT", 10, message="TangoTest in FAULT")
        tg_test.SwitchStates()
        wait_until(lambda: tg_test.state.get() == "RUNNING", 10, message="TangoTest back in RUNNING")
    finally:
        if tg_test.proxy.state().name != "RUNNING":
            tg_test.SwitchStates()


def test_state_changes_reach_a_subscriber(tg_test):
    seen = []
    cid = tg_test.state.subscribe(lambda value, **_: seen.append(value), run=False)
    try:
        tg_test.SwitchStates()
        wait_until(lambda: "FAULT" in seen, 15, message="a FAULT update from TangoTest")
        tg_test.SwitchStates()
        wait_until(lambda: seen[-1] == "RUNNING", 15, message="a RUNNING update from TangoTest")
    finally:
        tg_test.state.unsubscribe(cid)
        if tg_test.proxy.state().name != "RUNNING":
            tg_test.SwitchStates()


def test_spectra_and_images(tg_test):
    strings = tg_test.string_spectrum_ro.get()
    assert isinstance(strings, list) and strings and all(isinstance(s, str) for s in strings)
    tg_test.string_spectrum.put(["a", "bc", "def"])
    assert list(tg_test.proxy.read_attribute("string_spectrum").w_value) == ["a", "bc", "def"]
    wave = tg_test.wave.get()
    assert wave.dtype == np.float64 and wave.ndim == 1
    for attribute, dtype in (
        ("double_image_ro", np.float64),
        ("uchar_image_ro", np.uint8),
        ("long64_image_ro", np.int64),
    ):
        image = tg_test.signal(attribute).get()
        assert image.dtype == dtype and image.ndim == 2, attribute
        assert tg_test.signal(attribute).describe()[tg_test.signal(attribute).name]["shape"] == list(image.shape)
    text = tg_test.string_image_ro.get()
    assert all(isinstance(s, str) for row in text for s in row)


def test_commands(tg_test):
    assert tg_test.commands.DevDouble(2.5) == 2.5
    assert tg_test.commands.DevLong64(-(2**40)) == -(2**40)
    assert tg_test.commands.DevString("echo") == "echo"
    assert list(tg_test.commands.DevVarDoubleArray([1.0, 2.0])) == [1.0, 2.0]
    longs, strings = tg_test.commands.DevVarLongStringArray([[1, 2], ["a", "b"]])
    assert list(longs) == [1, 2] and list(strings) == ["a", "b"]
    assert tg_test.DevVoid() is None
    with pytest.raises(TypeError, match="DevVoid takes no argument"):
        tg_test.DevVoid(1)


# ---- the default read set ----------------------------------------------------------------------
def test_default_read_set(tg_test):
    read = set(tg_test.read_attrs)
    configuration = set(tg_test.configuration_attrs)
    assert {"short_scalar_ro", "wave", "double_spectrum_ro", "string_spectrum_ro", "long64_spectrum_ro"} <= read
    assert {"double_scalar", "ampli", "long64_scalar", "string_spectrum"} <= configuration
    left_out = {"double_image_ro", "string_image", "ushort_image_ro", "state", "status", *FAILING_AT_CONNECT}
    assert not left_out & (read | configuration)
    assert all(tg_test.signal(name).kind == Kind.omitted for name in left_out)


def test_one_warning_names_the_attributes_that_failed_at_connect(tg_test):
    assert len(tg_test.connect_warnings) == 1
    message = tg_test.connect_warnings[0]
    for name, reason in FAILING_AT_CONNECT.items():
        assert f"{name} ({reason})" in message
    assert "sys/tg_test/1" in message


def test_count_of_the_whole_device(tg_test, documents, validate_documents):
    RE, collected = documents
    RE(count([tg_test], 2))
    validate_documents(collected)
    rows = events(collected)
    assert len(rows) == 2
    assert {"tg_test_short_scalar_ro", "tg_test_wave"} <= set(rows[0]["data"])
    assert "tg_test_no_value" not in rows[0]["data"]
    descriptor = next(doc for name, doc in collected if name == "descriptor")
    assert "tg_test_double_scalar" in descriptor["configuration"]["tg_test"]["data"]


def test_the_seed_count_with_live_table(tg_test, documents, capsys):
    RE, collected = documents
    tg_test.double_scalar.name = "double_scalar"  # the seed's data key
    try:
        RE(count([tg_test.double_scalar], 10, 1), LiveTable(["double_scalar"]))
    finally:
        tg_test.double_scalar.name = "tg_test_double_scalar"
    rows = events(collected)
    assert len(rows) == 10 and all(isinstance(row["data"]["double_scalar"], float) for row in rows)
    table = capsys.readouterr().out
    assert "double_scalar" in table and table.count("|") > 10 * 3


def test_scan_over_ampli(tg_test, documents):
    RE, collected = documents
    RE(scan([tg_test.wave], tg_test.ampli, 0.0, 4.0, 5))
    rows = events(collected)
    assert [row["data"]["tg_test_ampli"] for row in rows] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert all(len(row["data"]["tg_test_wave"]) == 256 for row in rows)


def test_read_set_overrides(tango_test):
    chosen = TangoDevice(tango_test.trl, name="chosen", read=["double_scalar", "long64_scalar"])
    assert sorted(chosen.read()) == ["chosen_double_scalar", "chosen_long64_scalar"]
    narrowed = TangoDevice(tango_test.trl, name="narrowed", read_attrs=["short_scalar_ro"])
    assert list(narrowed.read()) == ["narrowed_short_scalar_ro"]
    hinted = TangoDevice(tango_test.trl, name="hinted", readback="double_scalar")
    assert hinted.hints == {"fields": ["hinted_double_scalar"]}


def test_a_named_failing_attribute_fails_the_run_naming_it(tango_test, documents):
    RE, _ = documents
    chosen = TangoDevice(tango_test.trl, name="chosen", read=["double_scalar", "throw_exception"])
    with pytest.raises(TangoDeviceError, match="sys/tg_test/1/throw_exception: exception test"):
        RE(count([chosen], 1))


def test_an_attribute_failing_mid_run_fails_the_run_naming_it(nodb_server, documents):
    RE, collected = documents
    server = nodb_server("flaky_server.py", "Flaky", "test/flaky/1")
    flaky = TangoDevice(server.trl, name="flaky")

    def break_after_first(name, doc):
        if name == "event":
            flaky.Break()

    RE.subscribe(break_after_first)
    with pytest.raises(TangoDeviceError, match=r"test/flaky/1/reading: .*switched off"):
        RE(count([flaky], 3))
    assert len(events(collected)) == 1


# ---- discovery -----------------------------------------------------------------------------------
def test_connect_by_pattern_names_the_foreign_device(tango_test):
    devices = connect("sys/tg_test/*", tango_host=tango_test.tango_host)
    assert list(devices) == ["tg_test_1"]
    assert devices["tg_test_1"].tango_class == "TangoTest"


def test_connect_into_a_namespace_never_shadows(tango_test, test_stack):
    namespace = {"count": count}
    connect("*/*/*", tango_host=test_stack.tango_host, into=namespace)
    assert namespace["count"] is count
    assert {"zoo", "lima", "motor_1", "motor_2", "stage_1", "tg_test_1"} <= set(namespace)
    assert namespace["motor_1"].tango_class == "Motor" and namespace["tg_test_1"].tango_class == "TangoTest"
    # A later connect never rebinds a name that already holds another device.
    ours = namespace["tg_test_1"]
    again = connect("sys/tg_test/*", tango_host=test_stack.tango_host, into=namespace)
    assert list(again) == ["tg_test_1"] and namespace["tg_test_1"] is again["tg_test_1"] is not ours
    clash = {"tg_test_1": namespace["zoo"]}
    with pytest.warns(UserWarning, match="tg_test_1 is taken"):
        connect("sys/tg_test/*", tango_host=test_stack.tango_host, into=clash)
    assert clash["tg_test_1"] is namespace["zoo"] and clash["sys_tg_test_1"].tango_class == "TangoTest"


def test_read_follows_kinds_changed_after_connection(tango_test):
    device = TangoDevice(tango_test.trl, name="changing", read=["short_scalar_ro"])
    assert list(device.read()) == ["changing_short_scalar_ro"]
    device.double_scalar.kind = Kind.normal
    assert sorted(device.read()) == ["changing_double_scalar", "changing_short_scalar_ro"]
    device.read_attrs = ["double_scalar"]
    assert list(device.read()) == ["changing_double_scalar"]


def test_a_declared_read_set_is_not_probed_at_connection(tango_test):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chosen = TangoDevice(tango_test.trl, name="chosen", read=["short_scalar_ro"], configuration=["ampli"])
    assert not [w for w in caught if "left out" in str(w.message)]
    assert chosen.configuration_attrs == ["ampli"] and chosen.no_value.kind == Kind.omitted
