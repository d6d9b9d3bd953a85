"""TypeZoo: a test-only Tango server with one attribute per Tango type and format.

Attribute names are `<type>_<format>` (`int16_scalar`, `uint8_spectrum`, `float32_image`, ...),
all READ_WRITE with change events pushed on write, plus a few special ones: `limited` (min/max,
unit, format), `state_scalar`/`state_spectrum` (DevState, read-only), `encoded` (DevEncoded),
`quiet` (no events, not polled), `polled` (server-polled, periodic events only) and `ticks`
(changed by the `Tick` command). Run it with `python zoo_server.py TypeZoo <instance>`.
"""

import time

import numpy as np
import tango
from tango import AttrWriteType, DevState
from tango.server import Device, attribute, command, run

SCALAR_TYPES = {
    "bool": (bool, True),
    "uint8": (np.uint8, 200),
    "int16": (np.int16, -30000),
    "uint16": (np.uint16, 60000),
    "int32": (np.int32, -2_000_000_000),
    "uint32": (np.uint32, 4_000_000_000),
    "int64": (np.int64, -(2**62)),
    "uint64": (np.uint64, 2**63 + 5),
    "float32": (np.float32, 1.5),
    "float64": (np.float64, 2.25),
    "string": (str, "hello"),
}
ENUM_LABELS = ["Off", "Low", "High"]
SPECTRUM_LENGTH = 8
IMAGE_SIZE = (4, 6)  # max_dim_y, max_dim_x


def _initial(kind: str, fmt: str):
    dtype, scalar = SCALAR_TYPES[kind]
    if fmt == "scalar":
        return scalar
    if kind == "string":
        values = [f"s{i}" for i in range(3)]
        return values if fmt == "spectrum" else [values, values]
    if kind == "bool":
        array = np.array([True, False, True])
    else:
        array = np.arange(3).astype(dtype) + (dtype(scalar) if kind != "bool" else 0)
    return array if fmt == "spectrum" else np.stack([array, array])


def _read_write(name: str, dtype, fmt: str, **kwargs) -> attribute:
    def read(self):
        return self._values[name]

    def write(self, value):
        self._values[name] = value
        self.push_change_event(name, value)

    if fmt == "spectrum":
        dtype, kwargs["max_dim_x"] = (dtype,), SPECTRUM_LENGTH
    elif fmt == "image":
        dtype, kwargs["max_dim_x"], kwargs["max_dim_y"] = ((dtype,),), IMAGE_SIZE[1], IMAGE_SIZE[0]
    return attribute(name=name, dtype=dtype, access=AttrWriteType.READ_WRITE, fget=read, fset=write, **kwargs)


class TypeZooBase(Device):
    def init_device(self):
        super().init_device()
        self._values = {}
        self._quiet_reads = 0
        for kind in SCALAR_TYPES:
            for fmt in ("scalar", "spectrum", "image"):
                self._values[f"{kind}_{fmt}"] = _initial(kind, fmt)
        self._values.update(
            enum_scalar=1,
            limited=0.0,
            encoded=("json", b'{"a": 1}'),
            ticks=0,
        )
        for name in self._values:
            self.set_change_event(name, True, False)
        self.set_change_event("state_scalar", True, False)
        self.set_state(DevState.ON)

    @attribute(dtype=DevState)
    def state_scalar(self):
        return DevState.MOVING

    @attribute(dtype=(DevState,), max_dim_x=4)
    def state_spectrum(self):
        return [DevState.ON, DevState.FAULT]

    @attribute(dtype=float)
    def quiet(self):
        self._quiet_reads += 1
        return 42.0

    @attribute(dtype=int, doc="how often `quiet` was read: lets tests wait for polling cycles")
    def quiet_reads(self):
        return self._quiet_reads

    @attribute(dtype=float, polling_period=100)
    def polled(self):
        return round(time.time(), 1)

    @command
    def Tick(self):
        self._values["ticks"] += 1
        self.push_change_event("ticks", self._values["ticks"])

    @command(dtype_in=float, dtype_out=float)
    def Double(self, value):
        return 2 * value

    @command(dtype_in=(np.int32,), dtype_out=np.int32)
    def Sum(self, values):
        return int(np.sum(values))

    @command(dtype_in=str, dtype_out=str)
    def Echo(self, text):
        return text


def _build_class() -> type:
    namespace = {}
    for kind, (dtype, _) in SCALAR_TYPES.items():
        for fmt in ("scalar", "spectrum", "image"):
            name = f"{kind}_{fmt}"
            namespace[name] = _read_write(name, dtype, fmt, doc=f"{kind} {fmt}")
    namespace["enum_scalar"] = _read_write("enum_scalar", tango.DevEnum, "scalar", enum_labels=ENUM_LABELS)
    namespace["limited"] = _read_write(
        "limited", float, "scalar", min_value=-10, max_value=10, unit="mm", format="%6.3f",
        min_alarm=-9, max_alarm=9, min_warning=-8, max_warning=8,
    )  # fmt: skip
    namespace["encoded"] = _read_write("encoded", tango.DevEncoded, "scalar")
    namespace["ticks"] = attribute(name="ticks", dtype=np.int32, fget=lambda self: self._values["ticks"])
    return type("TypeZoo", (TypeZooBase,), namespace)


TypeZoo = _build_class()


def main(args: list[str] | None = None) -> None:
    run((TypeZoo,), args=args)


if __name__ == "__main__":
    main()
