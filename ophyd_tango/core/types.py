"""How a Tango attribute maps to numpy, bluesky and back: the one place that knows Tango types.

`attribute_type(info)` turns a `tango.AttributeInfoEx` into an `AttributeType`, which answers
every question a client asks about the attribute (numpy dtype, shape, bluesky data key, enum
labels, limits) and converts values both ways:

- `from_tango(value)`: a value as PyTango returns it -> the engine's value (DevEnum -> int index,
  DevState -> `tango.DevState`, image -> 2-D ndarray, DevEncoded -> `(format, bytes)`).
- `to_bluesky(value)`: engine value -> reading value (enum and state by label, python scalars).
- `to_tango(value)`: a user's value -> what PyTango writes, checked: a wrong type or a value
  that does not fit the attribute's integer width raises, never casts silently.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tango
from tango import AttrDataFormat, AttrWriteType, CmdArgType

__all__ = [
    "NOT_SPECIFIED",
    "AttributeType",
    "attribute_type",
    "bluesky_dtype",
    "dtype_numpy",
    "numpy_dtype",
    "shape",
]

NOT_SPECIFIED = ("Not specified", "No unit", "No standard unit", "No display unit", "")
# bluesky's convention (shared with ophyd-async) for text, enum and state values.
STRING_DTYPE_NUMPY = "|S40"
STATE_LABELS: tuple[str, ...] = tuple(str(s) for s in tango.DevState.values.values())

_NUMERIC: dict[CmdArgType, np.dtype] = {
    CmdArgType.DevBoolean: np.dtype(np.bool_),
    CmdArgType.DevUChar: np.dtype(np.uint8),
    CmdArgType.DevShort: np.dtype(np.int16),
    CmdArgType.DevUShort: np.dtype(np.uint16),
    CmdArgType.DevLong: np.dtype(np.int32),
    CmdArgType.DevULong: np.dtype(np.uint32),
    CmdArgType.DevLong64: np.dtype(np.int64),
    CmdArgType.DevULong64: np.dtype(np.uint64),
    CmdArgType.DevFloat: np.dtype(np.float32),
    CmdArgType.DevDouble: np.dtype(np.float64),
}
# Tango enums travel as DevShort indices; states as their enum index.
_INDEX_DTYPE = np.dtype(np.int16)
_PRECISION = re.compile(r"%[-+ #0]*\d*\.(\d+)[fFeEgG]")


_UNSET = frozenset(NOT_SPECIFIED) | {"No description", "No label"}
_ARG_TYPES = {int(value): value for value in CmdArgType.values.values()}


def _spec(text: Any) -> str | None:
    """A configuration string, or None for Tango's 'Not specified' placeholders."""
    if text is None or text in _UNSET:
        return None
    text = str(text).strip()
    return None if text in _UNSET else text


def _number(text: Any) -> float | None:
    if text is None or text in _UNSET:
        return None
    try:
        return float(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class AttributeType:
    """Everything a client needs to know about one Tango attribute's type and metadata.

    `kind` is one of "bool", "int", "float", "string", "enum", "state", "encoded".
    """

    name: str
    data_type: CmdArgType
    data_format: AttrDataFormat
    writable: AttrWriteType
    max_dim_x: int = 1
    max_dim_y: int = 0
    enum_labels: tuple[str, ...] = ()
    unit: str | None = None
    label: str | None = None
    description: str | None = None
    format: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    min_alarm: float | None = None
    max_alarm: float | None = None
    min_warning: float | None = None
    max_warning: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    # ---- classification -------------------------------------------------------------------
    @property
    def kind(self) -> str:
        if self.data_type == CmdArgType.DevEnum:
            return "enum"
        if self.data_type == CmdArgType.DevState:
            return "state"
        if self.data_type == CmdArgType.DevEncoded:
            return "encoded"
        if self.data_type == CmdArgType.DevString:
            return "string"
        if self.data_type == CmdArgType.DevBoolean:
            return "bool"
        dtype = _NUMERIC.get(self.data_type)
        if dtype is None:
            raise TypeError(f"attribute {self.name}: unsupported Tango type {self.data_type}")
        return "float" if dtype.kind == "f" else "int"

    @property
    def is_scalar(self) -> bool:
        return self.data_format == AttrDataFormat.SCALAR

    @property
    def is_spectrum(self) -> bool:
        return self.data_format == AttrDataFormat.SPECTRUM

    @property
    def is_image(self) -> bool:
        return self.data_format == AttrDataFormat.IMAGE

    @property
    def is_writable(self) -> bool:
        return self.writable != AttrWriteType.READ

    @property
    def numpy_dtype(self) -> np.dtype:
        """Element dtype: bool/int*/uint*/float*; int16 index for enums, uint8 for DevEncoded
        payloads, int16 for states, object for strings."""
        kind = self.kind
        if kind in ("enum", "state"):
            return _INDEX_DTYPE
        if kind == "encoded":
            return np.dtype(np.uint8)
        if kind == "string":
            return np.dtype(object)
        return _NUMERIC[self.data_type]

    @property
    def shape(self) -> tuple[int, ...]:
        """Declared (maximum) shape: () scalar, (max_dim_x,) spectrum, (max_dim_y, max_dim_x) image."""
        if self.is_spectrum:
            return (self.max_dim_x,)
        if self.is_image:
            return (self.max_dim_y, self.max_dim_x)
        return ()

    @property
    def choices(self) -> list[str]:
        if self.kind == "enum":
            return list(self.enum_labels)
        if self.kind == "state":
            return list(STATE_LABELS)
        return []

    @property
    def precision(self) -> int | None:
        if self.kind != "float" or not self.format:
            return None
        match = _PRECISION.search(self.format)
        return int(match.group(1)) if match else None

    # ---- bluesky description --------------------------------------------------------------
    @property
    def bluesky_dtype(self) -> str:
        """event-model's broad JSON type: number, integer, boolean, string or array."""
        kind = self.kind
        if not self.is_scalar or kind == "encoded":
            return "array"
        return {"bool": "boolean", "int": "integer", "float": "number"}.get(kind, "string")

    @property
    def dtype_numpy(self) -> str:
        """event-model's numpy dtype string of one element ('<f8', '|u1', '|S40' for text)."""
        if self.kind in ("string", "enum", "state"):
            return STRING_DTYPE_NUMPY
        return self.numpy_dtype.str

    def limits(self) -> dict[str, dict[str, float | None]]:
        """event-model limits: control (min/max_value), warning and alarm ranges that are set."""
        limits = {}
        for key, low, high in (
            ("control", self.min_value, self.max_value),
            ("warning", self.min_warning, self.max_warning),
            ("alarm", self.min_alarm, self.max_alarm),
        ):
            if low is not None or high is not None:
                limits[key] = {"low": low, "high": high}
        return limits

    def data_key(self, source: str, value: Any = None) -> dict[str, Any]:
        """An event-model DataKey; the shape is the current value's when one is given."""
        key: dict[str, Any] = {
            "source": source,
            "dtype": self.bluesky_dtype,
            "dtype_numpy": self.dtype_numpy,
            "shape": self.value_shape(value),
        }
        if self.unit:
            key["units"] = self.unit
        if (precision := self.precision) is not None:
            key["precision"] = precision
        if choices := self.choices:
            key["choices"] = choices
        if limits := self.limits():
            key["limits"] = limits
        return key

    def value_shape(self, value: Any = None) -> list[int | None]:
        if self.kind == "encoded":
            return [None]
        if self.is_scalar:
            return []
        if value is not None:
            return list(np.shape(value))
        return list(self.shape)

    # ---- values ---------------------------------------------------------------------------
    def from_tango(self, value: Any) -> Any:
        """A value as PyTango returns it -> the engine's value (see module docstring)."""
        if value is None:
            return None
        kind = self.kind
        if kind == "encoded":
            fmt, payload = value
            return (str(fmt), bytes(payload))
        if self.is_scalar:
            if kind == "enum":
                return int(value)
            if kind == "state":
                return value if isinstance(value, tango.DevState) else tango.DevState(int(value))
            return value
        if kind == "string":
            return [list(row) for row in value] if self.is_image else list(value)
        if kind == "state":
            return [v if isinstance(v, tango.DevState) else tango.DevState(int(v)) for v in value]
        array = np.asarray(value)
        if self.is_image and array.ndim != 2:
            array = array.reshape((-1, self.max_dim_x) if array.size else (0, 0))
        return array

    def to_bluesky(self, value: Any) -> Any:
        """Engine value -> reading value: enum and state by label, numpy scalars as python ones."""
        if value is None:
            return None
        kind = self.kind
        if kind == "enum":
            return self.label_of(value) if self.is_scalar else [self.label_of(v) for v in value]
        if kind == "state":
            return str(value) if self.is_scalar else [str(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        return value

    def label_of(self, index: Any) -> str:
        index = int(index)
        if 0 <= index < len(self.enum_labels):
            return self.enum_labels[index]
        return str(index)

    def to_tango(self, value: Any) -> Any:
        """Check and convert a user's value for writing; TypeError/ValueError name the attribute."""
        kind = self.kind
        if kind == "encoded":
            return self._encoded_to_tango(value)
        if self.is_scalar:
            return self._scalar_to_tango(value)
        if kind in ("string", "enum", "state"):
            if self.is_image:
                return [[self._scalar_to_tango(v) for v in self._as_sequence(row)] for row in value]
            return [self._scalar_to_tango(v) for v in self._as_sequence(value)]
        return self._array_to_tango(value)

    # ---- write checks ---------------------------------------------------------------------
    def _fail_type(self, value: Any, expected: str) -> TypeError:
        return TypeError(
            f"attribute {self.name} ({self.data_type.name} {self.data_format.name.lower()}) "
            f"takes {expected}, not {type(value).__name__} {value!r:.60}"
        )

    def _scalar_to_tango(self, value: Any) -> Any:
        kind = self.kind
        if kind == "bool":
            if isinstance(value, bool | np.bool_):
                return bool(value)
            raise self._fail_type(value, "a bool")
        if kind == "string":
            if isinstance(value, str):
                return value
            raise self._fail_type(value, "a str")
        if kind == "enum":
            return self._enum_index(value)
        if kind == "state":
            if isinstance(value, tango.DevState):
                return value
            if isinstance(value, str) and value.upper() in tango.DevState.names:
                return tango.DevState.names[value.upper()]
            raise self._fail_type(value, f"a tango.DevState or one of {', '.join(STATE_LABELS)}")
        if kind == "int":
            return self._int_to_tango(value)
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
            raise self._fail_type(value, "a number")
        return float(value)

    def _int_to_tango(self, value: Any) -> int:
        if isinstance(value, bool | np.bool_):
            raise self._fail_type(value, "an integer")
        if isinstance(value, float | np.floating):
            if not float(value).is_integer():
                raise TypeError(f"attribute {self.name} ({self.data_type.name}) takes integers, not {value!r}")
            value = int(value)
        if not isinstance(value, int | np.integer):
            raise self._fail_type(value, "an integer")
        value = int(value)
        info = np.iinfo(self.numpy_dtype)
        if not info.min <= value <= info.max:
            raise ValueError(
                f"{value} does not fit attribute {self.name} ({self.data_type.name}: {info.min}..{info.max})"
            )
        return value

    def _enum_index(self, value: Any) -> int:
        labels = self.enum_labels
        if isinstance(value, str):
            if value in labels:
                return labels.index(value)
            folded = [label.casefold() for label in labels]
            if value.casefold() in folded:
                return folded.index(value.casefold())
            raise ValueError(f"{value!r} is not a label of attribute {self.name}; labels: {', '.join(labels)}")
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
            raise self._fail_type(value, f"a label ({', '.join(labels)}) or an index")
        if not 0 <= int(value) < len(labels):
            raise ValueError(f"index {value} is out of range for attribute {self.name}; labels: {', '.join(labels)}")
        return int(value)

    def _encoded_to_tango(self, value: Any) -> tuple[str, bytes]:
        if (
            isinstance(value, tuple | list)
            and len(value) == 2
            and isinstance(value[0], str)
            and isinstance(value[1], bytes | bytearray | memoryview | np.ndarray)
        ):
            payload = value[1]
            payload = payload.tobytes() if isinstance(payload, np.ndarray) else bytes(payload)
            return (value[0], payload)
        raise self._fail_type(value, "a (format: str, data: bytes) pair")

    def _as_sequence(self, value: Any) -> Sequence[Any] | np.ndarray:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
            raise self._fail_type(value, "a sequence")
        if len(value) > self.max_dim_x:
            raise ValueError(f"{len(value)} elements do not fit attribute {self.name} (max_dim_x {self.max_dim_x})")
        return value

    def _array_to_tango(self, value: Any) -> np.ndarray:
        if isinstance(value, str | bytes) or np.isscalar(value):
            raise self._fail_type(value, "an array" if self.is_image else "a sequence")
        # Lists are checked element by element: np.asarray would turn big uint64s into floats.
        array = value if isinstance(value, np.ndarray) else np.asarray(value, dtype=object)
        wanted = 2 if self.is_image else 1
        if array.ndim != wanted:
            raise ValueError(f"attribute {self.name} takes a {wanted}-D array, not a {array.ndim}-D one")
        if array.shape[-1] > self.max_dim_x or (self.is_image and array.shape[0] > self.max_dim_y):
            raise ValueError(f"shape {array.shape} does not fit attribute {self.name} (max {self.shape})")
        target = self.numpy_dtype
        if array.size == 0:
            return np.zeros(array.shape, dtype=target)
        if array.dtype == object:
            items = [self._scalar_to_tango(item) for item in array.ravel().tolist()]
            return np.array(items, dtype=target).reshape(array.shape)
        kind = self.kind
        if kind == "bool":
            if array.dtype.kind != "b":
                raise self._fail_type(value, "bools")
            return array.astype(target)
        integral = array.dtype.kind in "iu" or (array.dtype.kind == "f" and bool(np.all(np.mod(array, 1) == 0)))
        if array.dtype.kind not in "iuf" or (kind == "int" and not integral):
            expected = "integers" if kind == "int" else "numbers"
            raise TypeError(f"attribute {self.name} takes {expected}, not an array of {array.dtype}")
        if kind == "int":
            info = np.iinfo(target)
            low, high = array.min(), array.max()
            if low < info.min or high > info.max:
                raise ValueError(
                    f"values {low}..{high} do not fit attribute {self.name} "
                    f"({self.data_type.name}: {info.min}..{info.max})"
                )
        return array.astype(target)


def attribute_type(info: Any) -> AttributeType:
    """Build an AttributeType from a `tango.AttributeInfoEx` (or `AttributeInfo`)."""
    alarms = getattr(info, "alarms", None)
    data_type = info.data_type
    fields = {
        "name": info.name,
        "data_type": _ARG_TYPES.get(data_type) or CmdArgType(int(data_type)),
        "data_format": info.data_format,
        "writable": info.writable,
        "max_dim_x": int(info.max_dim_x),
        "max_dim_y": int(info.max_dim_y),
        "enum_labels": tuple(getattr(info, "enum_labels", ()) or ()),
        "unit": _spec(info.unit),
        "label": _spec(info.label),
        "description": _spec(info.description),
        "format": _spec(info.format),
        "min_value": _number(info.min_value),
        "max_value": _number(info.max_value),
        "min_alarm": _number(alarms.min_alarm if alarms else info.min_alarm),
        "max_alarm": _number(alarms.max_alarm if alarms else info.max_alarm),
        "min_warning": _number(alarms.min_warning) if alarms else None,
        "max_warning": _number(alarms.max_warning) if alarms else None,
        "extra": {},
    }
    # Filled directly: the frozen dataclass __init__ costs more than reading the fields, and a
    # device with hundreds of attributes builds hundreds of these at connection.
    atype = object.__new__(AttributeType)
    atype.__dict__.update(fields)
    return atype


def numpy_dtype(info: Any) -> np.dtype:
    """numpy dtype of one element of the attribute described by `info` (AttributeInfoEx)."""
    return attribute_type(info).numpy_dtype


def shape(info: Any) -> tuple[int, ...]:
    """Declared shape: () scalar, (max_dim_x,) spectrum, (max_dim_y, max_dim_x) image."""
    return attribute_type(info).shape


def bluesky_dtype(info: Any) -> str:
    """event-model dtype (number, integer, boolean, string, array)."""
    return attribute_type(info).bluesky_dtype


def dtype_numpy(info: Any) -> str:
    """event-model dtype_numpy string."""
    return attribute_type(info).dtype_numpy
