"""A test-only Tango server with one attribute of every kind the PVA bridge maps.

The tests run it next to the bridge with
`make_stack(config, extra_servers={"BridgeTarget": "<this file>:main"})` and drive it through
commands, so every value, quality and state a test checks is one the test caused.
"""

import io
import struct
import threading
import time

import numpy as np
import tango
from PIL import Image
from tango import AttrQuality, AttrWriteType, DevState
from tango.server import Device, attribute, command, run

FRAME_SHAPE = (48, 64)  # rows, columns
QUALITIES = {q.name.removeprefix("ATTR_"): q for q in AttrQuality.values.values()}


class BridgeTarget(Device):
    """Attributes of every Tango type; commands that change them and push change events."""

    temperature = attribute(
        dtype=float,
        access=AttrWriteType.READ_WRITE,
        unit="K",
        format="%6.3f",
        min_value=0.0,
        max_value=500.0,
        min_alarm=10.0,
        max_alarm=400.0,
        min_warning=20.0,
        max_warning=350.0,
        doc="Sample temperature",
    )
    counter = attribute(dtype=np.int64, doc="Incremented by Bump")
    enabled = attribute(dtype=bool, access=AttrWriteType.READ_WRITE, doc="A switch")
    label = attribute(dtype=str, access=AttrWriteType.READ_WRITE, doc="A free text")
    mode = attribute(
        dtype=tango.DevEnum,
        enum_labels=["IDLE", "ACQUIRING", "FAULT"],
        access=AttrWriteType.READ_WRITE,
        doc="Operating mode",
    )
    profile = attribute(dtype=(float,), max_dim_x=16, unit="counts", doc="A line profile")
    frame = attribute(dtype=((np.uint16,),), max_dim_x=FRAME_SHAPE[1], max_dim_y=FRAME_SHAPE[0])
    encoded_frame = attribute(dtype=tango.DevEncoded, doc="The frame as GRAY16")
    jpeg_frame = attribute(dtype=tango.DevEncoded, doc="The frame as JPEG_GRAY8")
    setpoint = attribute(
        dtype=float, access=AttrWriteType.READ_WRITE, unit="mm", format="%8.4f", min_value=-100, max_value=100
    )
    readback = attribute(dtype=float, unit="mm", format="%8.4f", doc="Follows setpoint at 20 mm/s")
    stall_writes = attribute(
        dtype=int, access=AttrWriteType.READ_WRITE, doc="How many of the next setpoint writes stall"
    )
    stall_seconds = attribute(dtype=float, access=AttrWriteType.READ_WRITE, doc="How long a stalled write takes")
    write_count = attribute(dtype=int, doc="Setpoint writes received")

    def init_device(self):
        super().init_device()
        self._lock = threading.Lock()
        self._values = {
            "temperature": 295.0,
            "counter": 0,
            "enabled": False,
            "label": "hello",
            "mode": 0,
            "profile": np.linspace(0.0, 1.0, 8),
            "setpoint": 0.0,
            "readback": 0.0,
            "stall_writes": 0,
            "stall_seconds": 0.0,
            "write_count": 0,
        }
        self._temperature_quality = AttrQuality.ATTR_VALID
        self._frame_number = 0
        self._frame = np.zeros(FRAME_SHAPE, dtype=np.uint16)
        for name in [*self._values, "frame", "encoded_frame", "jpeg_frame", "State"]:
            self.set_change_event(name, True, False)
        self._stop = threading.Event()
        self._level = 0
        self._add_level(tango.DevEnum, ["LOW", "HIGH"])
        self._follower = threading.Thread(target=self._follow_setpoint, daemon=True)
        self._follower.start()
        self.set_state(DevState.ON)

    def delete_device(self):
        self._stop.set()

    # -- reads
    def read_temperature(self):
        return self._values["temperature"], time.time(), self._temperature_quality

    def read_counter(self):
        return self._values["counter"]

    def read_enabled(self):
        return self._values["enabled"]

    def read_label(self):
        return self._values["label"]

    def read_mode(self):
        return self._values["mode"]

    def read_profile(self):
        return self._values["profile"]

    def read_frame(self):
        return self._frame

    def read_encoded_frame(self):
        return self._encoded("gray16")

    def read_jpeg_frame(self):
        return self._encoded("jpeg")

    def read_setpoint(self):
        return self._values["setpoint"]

    def read_readback(self):
        return self._values["readback"]

    def read_stall_writes(self):
        return self._values["stall_writes"]

    def read_stall_seconds(self):
        return self._values["stall_seconds"]

    def read_write_count(self):
        return self._values["write_count"]

    # -- writes
    def write_temperature(self, value):
        self._set("temperature", value)

    def write_enabled(self, value):
        self._set("enabled", value)

    def write_label(self, value):
        self._set("label", value)

    def write_mode(self, value):
        self._set("mode", int(value))

    def write_setpoint(self, value):
        self._set("write_count", self._values["write_count"] + 1)
        if self._values["stall_writes"] > 0:
            self._set("stall_writes", self._values["stall_writes"] - 1)
            time.sleep(self._values["stall_seconds"])  # a slow controller, on purpose
        self._set("setpoint", value)

    def write_stall_writes(self, value):
        self._set("stall_writes", value)

    def write_stall_seconds(self, value):
        self._set("stall_seconds", value)

    # -- commands that drive the attributes
    @command(dtype_in=str, doc_in="VALID, CHANGING, WARNING, ALARM or INVALID")
    def SetTemperatureQuality(self, quality):
        self._temperature_quality = QUALITIES[quality.upper()]
        self._push("temperature")

    @command
    def Bump(self):
        self._set("counter", self._values["counter"] + 1)

    @command(dtype_in=str, doc_in="A DevState name, e.g. MOVING")
    def SetStateTo(self, name):
        self.set_state(DevState.names[name.upper()])
        self.push_change_event("State", self.get_state())

    @command(dtype_in=(float,))
    def SetProfile(self, values):
        self._set("profile", np.asarray(values, dtype=float))

    @command(dtype_out=int, doc_out="The new frame number")
    def NewFrame(self):
        self._frame_number += 1
        rows, cols = np.indices(FRAME_SHAPE)
        self._frame = ((rows * FRAME_SHAPE[1] + cols + self._frame_number) % 4096).astype(np.uint16)
        now = time.time()
        self.push_change_event("frame", self._frame, now, AttrQuality.ATTR_VALID)
        self.push_change_event("encoded_frame", *self._encoded("gray16"), now, AttrQuality.ATTR_VALID)
        self.push_change_event("jpeg_frame", *self._encoded("jpeg"), now, AttrQuality.ATTR_VALID)
        return self._frame_number

    @command(dtype_in=(str,), doc_in="New labels of the dynamic enum attribute `level` (as a zoom reload does)")
    def RelabelLevel(self, labels):
        self.remove_attribute("level", False, False)
        self._level = 0
        self._add_level(tango.DevEnum, list(labels))

    @command(dtype_in=str, doc_in="New unit of `temperature`")
    def SetTemperatureUnit(self, unit):
        temperature = self.get_device_attr().get_attr_by_name("temperature")
        properties = temperature.get_properties()
        properties.unit = unit
        temperature.set_properties(properties)

    @command(doc_in="Turn `level` into a string attribute (a new server version, say)")
    def RetypeLevel(self):
        self.remove_attribute("level", False, False)
        self._level = "as text"
        self._add_level(str, [])

    # -- internals
    def _add_level(self, dtype, labels):
        options = {"enum_labels": labels} if labels else {}
        level = attribute(
            name="level",
            dtype=dtype,
            access=AttrWriteType.READ_WRITE,
            fget=self._read_level,
            fset=self._write_level,
            doc="A dynamic attribute whose configuration changes",
            **options,
        )
        self.add_attribute(level)
        self.set_change_event("level", True, False)

    def _read_level(self, attr):
        return self._level

    def _write_level(self, attr):
        self._level = attr.get_write_value()
        self.push_change_event("level", self._level)

    def _encoded(self, kind):
        """(format, data) as Tango's EncodedAttribute writes them: GRAY16 is a big-endian
        width/height header then big-endian pixels."""
        if kind == "gray16":
            rows, cols = self._frame.shape
            return "GRAY16", struct.pack(">HH", cols, rows) + self._frame.astype(">u2").tobytes()
        out = io.BytesIO()
        Image.fromarray((self._frame >> 4).astype(np.uint8)).save(out, format="JPEG", quality=95)
        return "JPEG_GRAY8", out.getvalue()

    def _set(self, name, value):
        with self._lock:
            self._values[name] = value
        self._push(name)

    def _push(self, name):
        if name == "temperature":
            self.push_change_event(name, *self.read_temperature())
        else:
            self.push_change_event(name, self._values[name])

    def _follow_setpoint(self):
        step = 20.0 * 0.02
        while not self._stop.wait(0.02):
            target, current = self._values["setpoint"], self._values["readback"]
            if current != target:
                close_enough = abs(target - current) <= step
                self._set("readback", target if close_enough else current + np.sign(target - current) * step)


def main(args=None):
    run((BridgeTarget,), args=args)


if __name__ == "__main__":
    main()
