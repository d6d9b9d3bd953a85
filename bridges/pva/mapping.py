"""Tango attribute -> PVAccess normative type: the PVA half of the suite's type mapping.

`ophyd_tango.core.types` knows what a Tango attribute is (kind, numpy dtype, limits, labels, write
checks); this module only decides how that looks on PVAccess:

- numeric and boolean scalars -> NTScalar with display (units, limits, precision), control and
  valueAlarm filled from the attribute configuration; strings -> string NTScalar;
- DevEnum and DevState -> NTEnum with the labels;
- spectra -> NTScalarArray;
- images and DevEncoded images (GRAY8/16, RGB24, Lima VIDEO_IMAGE, JPEG) -> NTNDArray with
  dimensions and a uniqueId: the frame number VIDEO_IMAGE carries, else a count of frames;
- Tango quality -> alarm severity (`ophyd_tango.core.quality`; an error is INVALID) with a message
  that says why; timestamps are Tango's, never the bridge's clock.

`attribute_mapping(device, info)` builds the mapping of one attribute. `initial()` is the full
structure a PV opens with (metadata, INVALID until Tango's first value); `update(update)` turns an
engine `AttributeUpdate` into the partial Value to post; `from_put(value)` checks a client's put
and returns what to write to Tango.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
from p4p import Value
from p4p.nt import NTEnum, NTNDArray, NTScalar
from tango import AttrQuality

from ophyd_tango.core import lima_video
from ophyd_tango.core.errors import is_unreachable
from ophyd_tango.core.quality import Severity, severity_of_quality
from ophyd_tango.core.subscription import AttributeUpdate
from ophyd_tango.core.types import AttributeType, attribute_type

__all__ = [
    "AlarmStatus",
    "AttributeMapping",
    "attribute_mapping",
    "decode_encoded_image",
    "severity_of",
]


class AlarmStatus(IntEnum):
    """The `alarm.status` codes of the normative types (EPICS alarm status)."""

    NO_STATUS = 0
    DEVICE = 1
    DRIVER = 2
    RECORD = 3
    DB = 4
    CONF = 5
    UNDEFINED = 6
    CLIENT = 7


# display.form choices of NTScalar (form=True); Tango's format string picks one.
_FORMS = ["Default", "String", "Binary", "Decimal", "Hex", "Exponential", "Engineering"]
# NTScalar value type codes by numpy dtype char (p4p's Type codes).
_SCALAR_CODES = {"?": "?", "b": "b", "B": "B", "h": "h", "H": "H", "i": "i", "I": "I", "l": "l", "L": "L"}
_SCALAR_CODES |= {"f": "f", "d": "d", "q": "l", "Q": "L"}


def severity_of(update: AttributeUpdate) -> tuple[Severity, AlarmStatus, str]:
    """(severity, status, message) for an update: quality decides, an error is INVALID."""
    if update.error is not None:
        if is_unreachable(update.error):
            message = f"disconnected from Tango device {update.device}: {update.error}"
        else:
            message = f"Tango read of {update.device}/{update.attribute} failed: {update.error}"
        return Severity.INVALID, AlarmStatus.DEVICE, message
    severity = severity_of_quality(update.quality)
    if update.quality == AttrQuality.ATTR_VALID:
        return severity, AlarmStatus.NO_STATUS, ""
    if update.quality == AttrQuality.ATTR_CHANGING:
        return severity, AlarmStatus.NO_STATUS, "Tango quality CHANGING"
    return severity, AlarmStatus.RECORD, f"Tango quality {update.quality.name.removeprefix('ATTR_')}"


def _stamp(timestamp: float) -> dict[str, int]:
    seconds, fraction = divmod(timestamp, 1.0)
    return {"secondsPastEpoch": int(seconds), "nanoseconds": int(fraction * 1e9), "userTag": 0}


def _alarm(severity: int, status: int, message: str) -> dict[str, Any]:
    return {"severity": int(severity), "status": int(status), "message": message}


_WAITING = _alarm(Severity.INVALID, AlarmStatus.UNDEFINED, "waiting for the first value from Tango")


@dataclass
class AttributeMapping:
    """How one Tango attribute appears as one PV. Subclasses per normative type."""

    device: str
    attr: AttributeType
    type: Any = field(init=False)  # p4p Type

    @property
    def attribute(self) -> str:
        return self.attr.name

    @property
    def normative_type(self) -> str:
        return self.type.getID()

    def initial(self) -> Value:
        """The complete first Value: metadata from the attribute config, INVALID until Tango speaks."""
        return Value(self.type, {**self._metadata(), "alarm": _WAITING})

    def update(self, update: AttributeUpdate) -> Value:
        """The partial Value to post for an engine update (value, alarm and timeStamp only)."""
        severity, status, message = severity_of(update)
        fields: dict[str, Any] = {"alarm": _alarm(severity, status, message)}
        if update.timestamp:
            fields["timeStamp"] = _stamp(update.timestamp)
        if update.error is None and update.value is not None:
            try:
                fields.update(self._value_fields(update.value, update.timestamp))
            except (TypeError, ValueError) as exc:  # e.g. a DevEncoded format we cannot decode
                fields["alarm"] = _alarm(Severity.INVALID, AlarmStatus.DRIVER, str(exc))
        return Value(self.type, fields)

    def metadata(self) -> Value | None:
        """A partial Value with the metadata only (after a configuration change), or None."""
        fields = self._metadata()
        return Value(self.type, fields) if fields else None

    def continue_from(self, previous: AttributeMapping) -> None:
        """Carry state over from the mapping this one replaces (configuration change)."""

    def from_put(self, value: Value) -> Any:
        """A client's put -> the value to write to Tango; TypeError/ValueError say what is wrong."""
        if not value.changed("value"):
            raise ValueError(f"a put to {self.device}/{self.attribute} must set the 'value' field")
        return self.attr.to_tango(self._put_value(value))

    # -- per normative type
    def _metadata(self) -> dict[str, Any]:
        return {}

    def _value_fields(self, value: Any, timestamp: float) -> dict[str, Any]:
        return {"value": value}

    def _put_value(self, value: Value) -> Any:
        return value["value"]


def _limit(number: float | None) -> float:
    return 0.0 if number is None else number


@dataclass
class ScalarMapping(AttributeMapping):
    """Numeric, boolean and string scalars, and spectra of them: NTScalar / NTScalarArray."""

    def __post_init__(self) -> None:
        code = "s" if self.attr.kind == "string" else _SCALAR_CODES[self.attr.numpy_dtype.char]
        if self.attr.kind == "state":  # a spectrum of states reads best as their names
            code = "s"
        prefix = "" if self.attr.is_scalar else "a"
        self.type = NTScalar.buildType(prefix + code, display=True, control=True, valueAlarm=True, form=True)

    @property
    def numeric(self) -> bool:
        return self.attr.kind in ("int", "float")

    def initial(self) -> Value:
        value = super().initial()
        if not self.attr.is_scalar:
            # an empty array rather than an unset field (p4p's own client still shows an empty
            # numeric array as None and cannot unwrap it; pvget and Phoebus show it empty)
            value["value"] = []
        return value

    def _metadata(self) -> dict[str, Any]:
        attr = self.attr
        display: dict[str, Any] = {"description": attr.description or attr.label or "", "units": attr.unit or ""}
        if not self.numeric:
            return {"display": display}
        precision = attr.precision
        display |= {
            "limitLow": _limit(attr.min_value),
            "limitHigh": _limit(attr.max_value),
            "precision": precision if precision is not None else 0,
            "form": {"index": _form_index(attr.format), "choices": _FORMS},
        }
        alarm_limits = (attr.min_alarm, attr.min_warning, attr.max_warning, attr.max_alarm)
        value_alarm = {
            "active": any(limit is not None for limit in alarm_limits),
            "lowAlarmLimit": _limit(attr.min_alarm),
            "lowWarningLimit": _limit(attr.min_warning),
            "highWarningLimit": _limit(attr.max_warning),
            "highAlarmLimit": _limit(attr.max_alarm),
            "lowAlarmSeverity": Severity.MAJOR if attr.min_alarm is not None else 0,
            "lowWarningSeverity": Severity.MINOR if attr.min_warning is not None else 0,
            "highWarningSeverity": Severity.MINOR if attr.max_warning is not None else 0,
            "highAlarmSeverity": Severity.MAJOR if attr.max_alarm is not None else 0,
        }
        control = {"limitLow": _limit(attr.min_value), "limitHigh": _limit(attr.max_value), "minStep": 0}
        return {"display": display, "control": control, "valueAlarm": value_alarm}

    def _value_fields(self, value: Any, timestamp: float) -> dict[str, Any]:
        if self.attr.kind == "state":
            return {"value": [str(v) for v in value]}
        if self.attr.kind == "enum" and not self.attr.is_scalar:
            return {"value": np.asarray(value, dtype=self.attr.numpy_dtype)}
        return {"value": value}

    def _put_value(self, value: Value) -> Any:
        raw = value["value"]
        if self.attr.kind == "int" and self.attr.is_scalar:
            return int(raw)
        return raw


def _form_index(fmt: str | None) -> int:
    if not fmt:
        return 0
    conversion = fmt.rstrip()[-1:]
    return {"x": 4, "X": 4, "e": 5, "E": 5, "d": 3, "s": 1}.get(conversion, 0)


@dataclass
class EnumMapping(AttributeMapping):
    """DevEnum and DevState scalars: NTEnum with the labels as choices."""

    def __post_init__(self) -> None:
        self.type = NTEnum.buildType(display=True)

    def _metadata(self) -> dict[str, Any]:
        description = self.attr.description or self.attr.label or ""
        return {"value": {"index": 0, "choices": self.attr.choices}, "display": {"description": description}}

    def metadata(self) -> Value:
        fields = self._metadata()
        fields["value"] = {"choices": fields["value"]["choices"]}  # keep the current index
        return Value(self.type, fields)

    def _value_fields(self, value: Any, timestamp: float) -> dict[str, Any]:
        return {"value.index": int(value)}

    def _put_value(self, value: Value) -> Any:
        index = value["value.index"]
        if self.attr.kind == "state":
            raise TypeError(f"{self.device}/{self.attribute} is a Tango State and cannot be written")
        return int(index)


@dataclass
class ImageMapping(AttributeMapping):
    """Images and DevEncoded images: NTNDArray; uniqueId is the frame number a Lima VIDEO_IMAGE
    carries, else the count of frames this PV published."""

    frames: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._nt = NTNDArray()
        self.type = self._nt.type

    def _metadata(self) -> dict[str, Any]:
        return {"codec": {"name": ""}, "uniqueId": 0}

    def metadata(self) -> None:
        return None  # nothing in an image's configuration shows in NTNDArray metadata

    def continue_from(self, previous: AttributeMapping) -> None:
        self.frames = getattr(previous, "frames", 0)

    def update(self, update: AttributeUpdate) -> Value:
        """The whole NTNDArray of a frame, built by p4p's `NTNDArray.wrap` (sizes, dimensions
        innermost first, ColorMode), with the frame number and Tango's timestamps and alarm."""
        if update.error is not None or update.value is None:
            return super().update(update)
        try:
            if self.attr.kind == "encoded":
                array, color_mode, frame = decode_encoded_image(*update.value)
            else:
                array, color_mode, frame = np.ascontiguousarray(update.value), 0, None
        except (TypeError, ValueError) as exc:  # e.g. a DevEncoded format we cannot decode
            fields = {"alarm": _alarm(Severity.INVALID, AlarmStatus.DRIVER, str(exc))}
            if update.timestamp:
                fields["timeStamp"] = _stamp(update.timestamp)
            return Value(self.type, fields)
        # the device's own frame number when the format carries one (Lima VIDEO_IMAGE), else ours
        self.frames = frame if frame is not None else self.frames + 1
        severity, status, message = severity_of(update)
        value = self._nt.wrap(
            array,
            attrib={"ColorMode": color_mode},
            timestamp=update.timestamp or None,
            severity=int(severity),
            message=message,
        )
        value["alarm.status"] = int(status)
        value["uniqueId"] = self.frames
        if update.timestamp:
            value["dataTimeStamp"] = _stamp(update.timestamp)
        return value

    def from_put(self, value: Value) -> Any:
        raise TypeError(f"{self.device}/{self.attribute} is an image; the bridge does not write images to Tango")


def decode_encoded_image(fmt: str, data: bytes) -> tuple[np.ndarray, int, int | None]:
    """A DevEncoded (format, data) pair -> (pixels, areaDetector ColorMode, frame number or None).

    Raw formats are Tango's EncodedAttribute layout (a big-endian width/height header, then
    pixels; GRAY16 big-endian); VIDEO_IMAGE is Lima's (a 32-byte header with the frame number);
    JPEG formats are decoded with Pillow. Raises ValueError for a format this bridge does not know.
    """
    kind = fmt.upper()
    if kind in ("GRAY8", "GRAY16", "RGB24"):
        width, height = struct.unpack_from(">HH", data)
        dtype, planes = {"GRAY8": (">u1", 1), "GRAY16": (">u2", 1), "RGB24": (">u1", 3)}[kind]
        return _pixels(data, 4, np.dtype(dtype), height, width, planes), _color_mode(planes), None
    if kind == lima_video.VIDEO_IMAGE_FORMAT:
        video = lima_video.decode(data)  # ValueError: names what it cannot decode
        pixels = video.display()
        return pixels, _color_mode(1 if pixels.ndim == 2 else 3), video.frame_number
    if kind.startswith("JPEG"):
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("L" if image.mode in ("L", "1", "I;16") else "RGB"))
        return pixels, _color_mode(1 if pixels.ndim == 2 else pixels.shape[-1]), None
    raise ValueError(f"DevEncoded format {fmt!r} is not an image format the PVA bridge can decode")


def _pixels(data: bytes, offset: int, dtype: np.dtype, height: int, width: int, planes: int) -> np.ndarray:
    count = height * width * planes
    if len(data) < offset + count * dtype.itemsize:
        raise ValueError(f"encoded image of {width}x{height}x{planes} {dtype} is truncated ({len(data)} bytes)")
    pixels = np.frombuffer(data, dtype=dtype, offset=offset, count=count)
    shape = (height, width) if planes == 1 else (height, width, planes)
    return pixels.astype(dtype.newbyteorder("="), copy=False).reshape(shape)


def _color_mode(planes: int) -> int:
    # numpy (rows, columns, 3) is pixel-interleaved colour, areaDetector's RGB1 (2); else Mono (0)
    return 0 if planes == 1 else 2


def attribute_mapping(device: str, info: Any) -> AttributeMapping:
    """The PV mapping of attribute `info` (a tango.AttributeInfoEx or AttributeType) of `device`."""
    attr = info if isinstance(info, AttributeType) else attribute_type(info)
    kind = attr.kind
    if attr.is_image or kind == "encoded":
        return ImageMapping(device, attr)
    if attr.is_scalar and kind in ("enum", "state"):
        return EnumMapping(device, attr)
    return ScalarMapping(device, attr)
