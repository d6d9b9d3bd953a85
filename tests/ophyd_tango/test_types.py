"""Type mapping: every Tango type to numpy/bluesky and back, against the TypeZoo server."""

import numpy as np
import pytest
import tango
from tango import AttrDataFormat, AttrWriteType, CmdArgType

from ophyd_tango.core.types import STATE_LABELS, AttributeType, attribute_type

INT_WIDTHS = {
    "uint8": "|u1",
    "int16": "<i2",
    "uint16": "<u2",
    "int32": "<i4",
    "uint32": "<u4",
    "int64": "<i8",
    "uint64": "<u8",
}
FORMATS = {"scalar": [], "spectrum": [8], "image": [4, 6]}


@pytest.fixture(scope="module")
def zoo(zoo_trl):
    proxy = tango.DeviceProxy(zoo_trl)
    proxy.set_timeout_millis(3000)
    return proxy


@pytest.fixture(scope="module")
def types(zoo):
    return {info.name: attribute_type(info) for info in zoo.attribute_list_query_ex()}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "kind, dtype_numpy, bluesky",
    [
        ("bool", "|b1", "boolean"),
        *[(k, v, "integer") for k, v in INT_WIDTHS.items()],
        ("float32", "<f4", "number"),
        ("float64", "<f8", "number"),
        ("string", "|S40", "string"),
    ],
)
def test_describe_every_type_and_format(types, kind, dtype_numpy, bluesky, fmt):
    atype = types[f"{kind}_{fmt}"]
    key = atype.data_key("zoo/x")
    assert key["dtype_numpy"] == dtype_numpy
    assert key["dtype"] == (bluesky if fmt == "scalar" else "array")
    assert key["shape"] == FORMATS[fmt]
    assert list(atype.shape) == FORMATS[fmt]
    if kind in INT_WIDTHS:
        assert atype.numpy_dtype == np.dtype(kind)


def test_enum_state_encoded_and_limits(types):
    enum = types["enum_scalar"]
    assert enum.kind == "enum"
    assert enum.data_key("s")["choices"] == ["Off", "Low", "High"]
    assert enum.to_bluesky(2) == "High"
    assert enum.to_tango("low") == 1
    state = types["state_scalar"]
    assert state.data_key("s") | {"choices": None} == {
        "source": "s",
        "dtype": "string",
        "dtype_numpy": "|S40",
        "shape": [],
        "choices": None,
    }
    assert state.choices == list(STATE_LABELS)
    assert state.to_bluesky(tango.DevState.MOVING) == "MOVING"
    assert state.to_tango("fault") == tango.DevState.FAULT
    assert types["state_spectrum"].from_tango(np.array([0, 8], dtype=np.uint32)) == [
        tango.DevState.ON,
        tango.DevState.FAULT,
    ]
    encoded = types["encoded"]
    assert encoded.kind == "encoded"
    assert encoded.data_key("s")["shape"] == [None]
    limited = types["limited"].data_key("s")
    assert limited["units"] == "mm"
    assert limited["precision"] == 3
    assert limited["limits"] == {
        "control": {"low": -10.0, "high": 10.0},
        "warning": {"low": -8.0, "high": 8.0},
        "alarm": {"low": -9.0, "high": 9.0},
    }


def _values_for(kind: str, fmt: str, atype: AttributeType):
    """A value different from the zoo's initial one, in user form."""
    if kind == "bool":
        scalar, items = False, [False, False, True, True]
    elif kind == "string":
        scalar, items = "written", ["a", "bb", "ccc"]
    elif kind.startswith("float"):
        scalar, items = -0.5, [0.25, -1.5, 8.0]
    else:
        info = np.iinfo(atype.numpy_dtype)
        scalar, items = int(info.max), [int(info.min), 0, int(info.max)]
    if fmt == "scalar":
        return scalar
    if fmt == "spectrum":
        return items
    return [items, items[::-1]]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["bool", *INT_WIDTHS, "float32", "float64", "string"])
def test_round_trip_every_type(zoo, types, kind, fmt):
    name = f"{kind}_{fmt}"
    atype = types[name]
    value = _values_for(kind, fmt, atype)
    zoo.write_attribute(name, atype.to_tango(value))
    back = atype.from_tango(zoo.read_attribute(name).value)
    if fmt != "scalar" and kind != "string":
        assert isinstance(back, np.ndarray)
        assert back.dtype == atype.numpy_dtype  # integer widths kept
        assert back.ndim == (1 if fmt == "spectrum" else 2)
        np.testing.assert_array_equal(back, np.asarray(value))
    else:
        assert back == value
    assert atype.to_bluesky(back) is not None


def test_round_trip_enum_encoded(zoo, types):
    zoo.write_attribute("enum_scalar", types["enum_scalar"].to_tango("High"))
    assert types["enum_scalar"].to_bluesky(zoo.read_attribute("enum_scalar").value) == "High"
    payload = ("raw", bytes(range(256)))
    zoo.write_attribute("encoded", types["encoded"].to_tango(payload))
    assert types["encoded"].from_tango(zoo.read_attribute("encoded").value) == payload


def _t(data_type, fmt=AttrDataFormat.SCALAR, **kw):
    return AttributeType("a", data_type, fmt, AttrWriteType.READ_WRITE, max_dim_x=kw.pop("x", 1), **kw)


@pytest.mark.parametrize(
    "atype, value, error",
    [
        (_t(CmdArgType.DevUChar), 256, ValueError),
        (_t(CmdArgType.DevUChar), -1, ValueError),
        (_t(CmdArgType.DevShort), 2.5, TypeError),
        (_t(CmdArgType.DevLong), "3", TypeError),
        (_t(CmdArgType.DevLong), True, TypeError),
        (_t(CmdArgType.DevBoolean), 1, TypeError),
        (_t(CmdArgType.DevDouble), "1.0", TypeError),
        (_t(CmdArgType.DevString), 5, TypeError),
        (_t(CmdArgType.DevEnum, enum_labels=("a", "b")), "c", ValueError),
        (_t(CmdArgType.DevEnum, enum_labels=("a", "b")), 2, ValueError),
        (_t(CmdArgType.DevEncoded), b"raw", TypeError),
        (_t(CmdArgType.DevUShort, AttrDataFormat.SPECTRUM, x=4), [1, 70000], ValueError),
        (_t(CmdArgType.DevUShort, AttrDataFormat.SPECTRUM, x=4), [1, 2, 3, 4, 5], ValueError),
        (_t(CmdArgType.DevLong, AttrDataFormat.SPECTRUM, x=4), [1.5], TypeError),
        (_t(CmdArgType.DevLong, AttrDataFormat.SPECTRUM, x=4), 3, TypeError),
        (_t(CmdArgType.DevDouble, AttrDataFormat.IMAGE, x=4, max_dim_y=2), [1.0, 2.0], ValueError),
        (_t(CmdArgType.DevDouble, AttrDataFormat.SPECTRUM, x=4), ["a"], TypeError),
    ],
)
def test_bad_writes_raise_never_cast(atype, value, error):
    with pytest.raises(error, match=r"attribute a|labels|fit"):
        atype.to_tango(value)


def test_integral_float_to_int_is_allowed():
    assert _t(CmdArgType.DevLong).to_tango(3.0) == 3
    out = _t(CmdArgType.DevShort, AttrDataFormat.SPECTRUM, x=4).to_tango([1.0, 2.0])
    assert out.dtype == np.int16
