"""A test-only Tango server whose values the Redis bridge tests control exactly.

Run through the launcher: `make_stack(config, extra_servers={"BridgeFeed": f"{__file__}:main"})`.
Every attribute pushes change events from the command (or its ticker thread) that changes it.
"""

import json
import os
import threading
import time

import numpy as np
import tango
from tango.server import Device, attribute, command, device_property, run

MAX_SIDE = 4096


class BridgeFeed(Device):
    """Scalars, an enum, an image with its counter, a file event and task progress on demand."""

    image_height = device_property(dtype=int, default_value=24)
    image_width = device_property(dtype=int, default_value=32)

    def init_device(self) -> None:
        super().init_device()
        self._level = 0.0
        self._count = 0
        self._task_progress = 0.0
        self._task_state = 0
        self._file_event = ""
        self._shape = (self.image_height, self.image_width)
        self._image = np.zeros(self._shape, dtype=np.uint16)
        self._image_counter = 0
        self._burst_rate = 0.0
        self._ticker: threading.Thread | None = None
        self._ticking = threading.Event()
        for name in ("level", "count", "task_progress", "task_state", "file_event", "image", "image_counter"):
            self.set_change_event(name, True, False)
        self.set_state(tango.DevState.ON)

    def delete_device(self) -> None:
        self._ticking.clear()
        if self._ticker is not None:
            self._ticker.join(2)

    @attribute(dtype=float, unit="mm", format="%.3f", label="Level", min_value=-100, max_value=100)
    def level(self) -> float:
        return self._level

    @attribute(dtype=tango.DevLong64)
    def count(self) -> int:
        return self._count

    @attribute(dtype=float, unit="1/s", doc="events pushed per second by the last Burst")
    def burst_rate(self) -> float:
        return self._burst_rate

    @attribute(dtype=float, min_value=0, max_value=100, unit="%")
    def task_progress(self) -> float:
        return self._task_progress

    @attribute(dtype=tango.DevEnum, enum_labels=["IDLE", "RUNNING", "DONE"])
    def task_state(self) -> int:
        return self._task_state

    @attribute(dtype=str)
    def file_event(self) -> str:
        return self._file_event

    @attribute(dtype=((np.uint16,),), max_dim_x=MAX_SIDE, max_dim_y=MAX_SIDE)
    def image(self) -> np.ndarray:
        return self._image

    @attribute(dtype=int)
    def image_counter(self) -> int:
        return self._image_counter

    @command(dtype_in=float)
    def SetLevel(self, value: float) -> None:
        self._level = value
        self.push_change_event("level", value)

    @command(dtype_in=str, doc_in="a new unit for `level`: pushes an attribute-configuration event")
    def SetLevelUnit(self, unit: str) -> None:
        attr = self.get_device_attr().get_attr_by_name("level")
        config = attr.get_properties()
        config.unit = unit
        attr.set_properties(config)

    @command(dtype_in=int, doc_in="push `count` = 1..n as fast as possible, from a thread")
    def Burst(self, n: int) -> None:
        def push() -> None:
            start = time.perf_counter()
            for i in range(1, n + 1):
                self._count = i
                self.push_change_event("count", i)
            self._burst_rate = n / (time.perf_counter() - start)

        threading.Thread(target=push, daemon=True).start()

    @command(dtype_in=(float,), doc_in="[n, period]: push `level` = 1..n every `period` s, from a thread")
    def PushLevels(self, args: list[float]) -> None:
        n, period = int(args[0]), float(args[1])

        def push() -> None:
            start = time.perf_counter()
            for i in range(1, n + 1):
                # Paced on a schedule, not by sleeping a fixed time, so the rate holds under load.
                delay = start + i * period - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                self._level = float(i)
                self.push_change_event("level", self._level, time.time(), tango.AttrQuality.ATTR_VALID)

        threading.Thread(target=push, daemon=True).start()

    @command(dtype_in=str, doc_in="a BEC file event as JSON")
    def EmitFileEvent(self, text: str) -> None:
        self._file_event = text
        self.push_change_event("file_event", text)

    @command(dtype_in=(float,), doc_in="[progress, state index]")
    def SetTask(self, values: list[float]) -> None:
        self._task_progress, self._task_state = float(values[0]), int(values[1])
        self.push_change_event("task_progress", self._task_progress)
        self.push_change_event("task_state", self._task_state)

    @command(dtype_in=int, doc_in="push n new frames at once")
    def NewImages(self, n: int) -> None:
        for _ in range(n):
            self._new_image()

    @command(dtype_in=float, doc_in="push a new frame every `period` seconds until StopImages")
    def StartImages(self, period: float) -> None:
        if self._ticking.is_set():
            return
        self._ticking.set()

        def tick() -> None:
            while self._ticking.is_set():
                self._new_image()
                time.sleep(period)

        self._ticker = threading.Thread(target=tick, daemon=True)
        self._ticker.start()

    @command
    def StopImages(self) -> None:
        self._ticking.clear()
        if self._ticker is not None:
            self._ticker.join(5)  # so a StartImages right after never leaves two tickers running

    def _new_image(self) -> None:
        self._image_counter += 1
        image = np.full(self._shape, self._image_counter % 65536, dtype=np.uint16)
        image[0, 0] = 0
        self._image = image
        now = time.time()
        self.push_change_event("image_counter", self._image_counter, now, tango.AttrQuality.ATTR_VALID)
        self.push_change_event("image", image, now, tango.AttrQuality.ATTR_VALID)


def file_event_json(path: str, done: bool) -> str:
    return json.dumps(
        {
            "file_path": path,
            "file_type": "h5",
            "hinted_location": {"data": "/entry/data/data"},
            "done": done,
            "success": done,
        }
    )


def main(args: list[str] | None = None) -> None:
    # Bursts are the point of this server: queue them instead of dropping past 1000 events.
    os.environ.setdefault("TANGO_DS_EVENT_BUFFER_HWM", "100000")
    run((BridgeFeed,), args=args)


if __name__ == "__main__":
    main()
