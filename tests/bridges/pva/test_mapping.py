"""Unit tests of the Tango -> PVAccess normative type mapping (no servers involved)."""

import io
import struct

import numpy as np
import pytest
import tango
from p4p import Value
from PIL import Image
from tango import AttrDataFormat, AttrQuality, AttrWriteType, CmdArgType

from bridges.pva.mapping import attribute_mapping, decode_encoded_image, severity_of
from ophyd_tango.core.quality import Severity
from ophyd_tango.core.subscription import AttributeUpdate
from ophyd_tango.core.types import STATE_LABELS, AttributeType

DEVICE = "test/target/1"
STAMP = 1_700_000_000.123456


def attr(name, data_type, data_format=AttrDataFormat.SCALAR, writable=AttrWriteType.READ, **kw):
    return AttributeType(name=name, data_type=data_type, data_format=data_format, writable=writable, **kw)


def update(name, value, quality=AttrQuality.ATTR_VALID, error=None, timestamp=STAMP):
    return AttributeUpdate(DEVICE, name, value, quality, timestamp, error)


TEMPERATURE = attr(
    "temperature",
    CmdArgType.DevDouble,
    writable=AttrWriteType.READ_WRITE,
    unit="K",
    format="%6.3f",
    description="Sample temperature",
    min_value=0.0,
    max_value=500.0,
    min_alarm=10.0,
    max_alarm=400.0,
    min_warning=20.0,
    max_warning=350.0,
)


def test_double_scalar_is_ntscalar_with_display_control_and_value_alarm():
    mapping = attribute_mapping(DEVICE, TEMPERATURE)
    assert mapping.normative_type == "epics:nt/NTScalar:1.0"
    initial = mapping.initial()
    assert initial["display.units"] == "K"
    assert initial["display.precision"] == 3
    assert initial["display.description"] == "Sample temperature"
    assert (initial["display.limitLow"], initial["display.limitHigh"]) == (0.0, 500.0)
    assert (initial["control.limitLow"], initial["control.limitHigh"]) == (0.0, 500.0)
    alarm = initial["valueAlarm"]
    assert alarm["active"] is True
    assert (alarm.lowAlarmLimit, alarm.lowWarningLimit, alarm.highWarningLimit, alarm.highAlarmLimit) == (
        10.0,
        20.0,
        350.0,
        400.0,
    )
    assert (alarm.lowAlarmSeverity, alarm.highWarningSeverity) == (Severity.MAJOR, Severity.MINOR)
    # nothing from Tango yet: INVALID, and the message says so
    assert initial["alarm.severity"] == Severity.INVALID
    assert "waiting" in initial["alarm.message"]


def test_update_posts_value_alarm_and_tango_timestamp_only():
    value = attribute_mapping(DEVICE, TEMPERATURE).update(update("temperature", 295.5))
    assert value["value"] == 295.5
    assert value["alarm.severity"] == 0 and value["alarm.message"] == ""
    assert value["timeStamp.secondsPastEpoch"] == 1_700_000_000
    assert value["timeStamp.nanoseconds"] == pytest.approx(123_456_000, abs=1000)
    # metadata is not re-sent with every update
    assert value.changedSet() >= {"value", "alarm.severity", "timeStamp.secondsPastEpoch"}
    assert not any(name.startswith(("display", "control", "valueAlarm")) for name in value.changedSet())


@pytest.mark.parametrize(
    ("quality", "severity", "word"),
    [
        (AttrQuality.ATTR_VALID, 0, ""),
        (AttrQuality.ATTR_CHANGING, 0, "CHANGING"),
        (AttrQuality.ATTR_WARNING, 1, "WARNING"),
        (AttrQuality.ATTR_ALARM, 2, "ALARM"),
        (AttrQuality.ATTR_INVALID, 3, "INVALID"),
    ],
)
def test_quality_maps_to_severity_with_a_message(quality, severity, word):
    got_severity, _status, message = severity_of(update("temperature", 1.0, quality))
    assert got_severity == severity
    assert word in message


def test_invalid_quality_without_value_keeps_last_value_and_turns_invalid():
    value = attribute_mapping(DEVICE, TEMPERATURE).update(update("temperature", None, AttrQuality.ATTR_INVALID))
    assert "value" not in value.changedSet()
    assert value["alarm.severity"] == 3


def test_error_is_invalid_and_says_disconnected_when_the_device_is_gone():
    gone = update("temperature", None, AttrQuality.ATTR_INVALID, error="API_CantConnectToDevice: connection refused")
    value = attribute_mapping(DEVICE, TEMPERATURE).update(gone)
    assert value["alarm.severity"] == 3
    assert "disconnected" in value["alarm.message"] and DEVICE in value["alarm.message"]
    failed = update("temperature", None, AttrQuality.ATTR_INVALID, error="HW_Error: sensor unplugged")
    severity, _, message = severity_of(failed)
    assert severity == 3 and "sensor unplugged" in message and "disconnected" not in message


@pytest.mark.parametrize(
    ("data_type", "code", "sample"),
    [
        (CmdArgType.DevBoolean, "?", True),
        (CmdArgType.DevUChar, "B", 200),
        (CmdArgType.DevShort, "h", -3),
        (CmdArgType.DevUShort, "H", 60000),
        (CmdArgType.DevLong, "i", -70000),
        (CmdArgType.DevULong, "I", 4_000_000_000),
        (CmdArgType.DevLong64, "l", -(2**40)),
        (CmdArgType.DevULong64, "L", 2**63),
        (CmdArgType.DevFloat, "f", 1.5),
        (CmdArgType.DevDouble, "d", 2.25),
        (CmdArgType.DevString, "s", "text"),
    ],
)
def test_every_scalar_type_keeps_its_width(data_type, code, sample):
    mapping = attribute_mapping(DEVICE, attr("x", data_type))
    assert mapping.type["value"] == code
    assert mapping.update(update("x", sample))["value"] == sample


def test_string_scalar_has_units_and_description_but_no_limits():
    mapping = attribute_mapping(DEVICE, attr("label", CmdArgType.DevString, description="A free text"))
    initial = mapping.initial()
    assert initial["display.description"] == "A free text"
    assert "control" not in initial and "valueAlarm" not in initial


def test_enum_is_ntenum_with_labels():
    mode = attr("mode", CmdArgType.DevEnum, enum_labels=("IDLE", "ACQUIRING", "FAULT"))
    mapping = attribute_mapping(DEVICE, mode)
    assert mapping.normative_type == "epics:nt/NTEnum:1.0"
    assert mapping.initial()["value.choices"] == ["IDLE", "ACQUIRING", "FAULT"]
    assert mapping.update(update("mode", 2))["value.index"] == 2


def test_state_is_ntenum_with_the_state_names():
    mapping = attribute_mapping(DEVICE, attr("State", CmdArgType.DevState))
    assert mapping.initial()["value.choices"] == list(STATE_LABELS)
    posted = mapping.update(update("State", tango.DevState.MOVING))
    assert STATE_LABELS[posted["value.index"]] == "MOVING"


def test_spectrum_is_ntscalararray():
    profile = attr("profile", CmdArgType.DevDouble, AttrDataFormat.SPECTRUM, max_dim_x=16, unit="counts")
    mapping = attribute_mapping(DEVICE, profile)
    assert mapping.normative_type == "epics:nt/NTScalarArray:1.0"
    posted = mapping.update(update("profile", np.arange(5.0)))
    np.testing.assert_array_equal(posted["value"], np.arange(5.0))
    strings = attribute_mapping(DEVICE, attr("names", CmdArgType.DevString, AttrDataFormat.SPECTRUM, max_dim_x=4))
    assert strings.initial()["value"] == []  # an empty list, not an unset field
    assert strings.update(update("names", ["a", "b"]))["value"] == ["a", "b"]


def test_image_is_ntndarray_with_dimensions_and_counting_unique_id():
    image = attr("frame", CmdArgType.DevUShort, AttrDataFormat.IMAGE, max_dim_x=64, max_dim_y=48)
    mapping = attribute_mapping(DEVICE, image)
    assert mapping.normative_type == "epics:nt/NTNDArray:1.0"
    frame = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64)
    first = mapping.update(update("frame", frame))
    second = mapping.update(update("frame", frame + 1))
    assert [d.size for d in first["dimension"]] == [64, 48]  # x (columns) first, as areaDetector
    assert (first["uniqueId"], second["uniqueId"]) == (1, 2)
    assert first["value"].dtype == np.uint16
    np.testing.assert_array_equal(first["value"].reshape(48, 64), frame)
    assert first["dataTimeStamp.secondsPastEpoch"] == 1_700_000_000
    # a failed read does not count as a frame
    mapping.update(update("frame", None, AttrQuality.ATTR_INVALID, error="API_CantConnectToDevice: gone"))
    assert mapping.update(update("frame", frame))["uniqueId"] == 3


def gray16(frame):
    rows, cols = frame.shape
    return struct.pack(">HH", cols, rows) + frame.astype(">u2").tobytes()


def test_encoded_gray16_and_jpeg_decode_to_pixels():
    frame = (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 300) % 65535
    pixels, color_mode, number = decode_encoded_image("GRAY16", gray16(frame))
    np.testing.assert_array_equal(pixels, frame)
    assert pixels.dtype == np.uint16 and color_mode == 0 and number is None
    rgb = np.zeros((8, 6, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG")
    pixels, color_mode, _ = decode_encoded_image("JPEG_RGB", out.getvalue())
    assert pixels.shape == (8, 6, 3) and color_mode == 2
    with pytest.raises(ValueError, match="LZ4"):
        decode_encoded_image("LZ4", b"1234")


def video_image(pixels, mode, frame_number):
    """Lima's VIDEO_IMAGE, as the OAV server writes it (little-endian pixels)."""
    height, width = pixels.shape[:2]
    header = struct.pack("!IHHqiiHHHH", 0x5644454F, 1, mode, frame_number, width, height, 0, 32, 0, 0)
    return header + pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()


def test_lima_video_image_decodes_with_its_frame_number_as_unique_id():
    mono = np.arange(4 * 5, dtype=np.uint8).reshape(4, 5)
    pixels, color_mode, number = decode_encoded_image("VIDEO_IMAGE", video_image(mono, 0, 41))
    np.testing.assert_array_equal(pixels, mono)
    assert (color_mode, number) == (0, 41)
    y16 = np.arange(6, dtype=np.uint16).reshape(2, 3) * 1000
    np.testing.assert_array_equal(decode_encoded_image("VIDEO_IMAGE", video_image(y16, 1, 1))[0], y16)
    bgr = np.zeros((2, 3, 3), dtype=np.uint8)
    bgr[..., 0] = 200  # blue
    pixels, color_mode, _ = decode_encoded_image("VIDEO_IMAGE", video_image(bgr, 8, 2))
    assert color_mode == 2 and pixels[0, 0].tolist() == [0, 0, 200]
    mapping = attribute_mapping(DEVICE, attr("video_last_image", CmdArgType.DevEncoded))
    posted = mapping.update(update("video_last_image", ("VIDEO_IMAGE", video_image(mono, 0, 41))))
    assert posted["uniqueId"] == 41 and [d.size for d in posted["dimension"]] == [5, 4]
    with pytest.raises(ValueError, match="truncated"):
        decode_encoded_image("VIDEO_IMAGE", video_image(mono, 0, 1)[:-3])


def test_encoded_attribute_is_ntndarray_and_an_unknown_format_is_invalid():
    mapping = attribute_mapping(DEVICE, attr("encoded_frame", CmdArgType.DevEncoded))
    assert mapping.normative_type == "epics:nt/NTNDArray:1.0"
    frame = np.arange(6, dtype=np.uint16).reshape(2, 3)
    posted = mapping.update(update("encoded_frame", ("GRAY16", gray16(frame))))
    assert [d.size for d in posted["dimension"]] == [3, 2]
    unknown = mapping.update(update("encoded_frame", ("WEIRD", b"\0\0")))
    assert unknown["alarm.severity"] == 3 and "WEIRD" in unknown["alarm.message"]


def put(mapping, value):
    """A Value as a PVA client's put delivers it: the PV's type with the value field changed."""
    request = Value(mapping.type, {})
    if mapping.normative_type == "epics:nt/NTEnum:1.0":
        request["value.index"] = value
    else:
        request["value"] = value
    return mapping.from_put(request)


def test_puts_are_type_checked_before_reaching_tango():
    assert put(attribute_mapping(DEVICE, TEMPERATURE), 12.5) == 12.5
    mode = attribute_mapping(DEVICE, attr("mode", CmdArgType.DevEnum, enum_labels=("IDLE", "FAULT")))
    assert put(mode, 1) == 1
    with pytest.raises(ValueError, match="out of range"):
        put(mode, 5)
    with pytest.raises(TypeError, match="State"):
        put(attribute_mapping(DEVICE, attr("State", CmdArgType.DevState)), 0)
    image = attribute_mapping(DEVICE, attr("frame", CmdArgType.DevUShort, AttrDataFormat.IMAGE, max_dim_x=4))
    with pytest.raises(TypeError, match="image"):
        image.from_put(Value(image.type, {}))
    with pytest.raises(ValueError, match="value"):
        attribute_mapping(DEVICE, TEMPERATURE).from_put(Value(attribute_mapping(DEVICE, TEMPERATURE).type, {}))
    spectrum = attribute_mapping(
        DEVICE, attr("profile", CmdArgType.DevShort, AttrDataFormat.SPECTRUM, AttrWriteType.READ_WRITE, max_dim_x=2)
    )
    with pytest.raises(ValueError, match="does not fit"):
        put(spectrum, [1, 2, 3])
