"""Sources for bench_pva.py: a Tango server that pushes bursts of change events, and a bare p4p
server that posts the same frames, so both paths carry identical data.

    python benchmarks/pva_sources.py bare-p4p SERVER_PORT BROADCAST_PORT   # the bare p4p baseline
    python benchmarks/pva_sources.py receive-pva PV REQUEST                  # EPICS_PVA_* from the environment
    python benchmarks/pva_sources.py receive-tango TRL ATTRIBUTE

A receiver runs in its own process (so clients do not share one interpreter lock), prints
"ready", records (receive time, value, source timestamp) for each update until its stdin is
closed, then prints them as JSON lines.

The Tango server (`PvaBenchSource`) is started by the stack launcher as an extra server.
"""

import json
import sys
import threading
import time

import numpy as np
import tango
from tango import AttrQuality, DevState
from tango.server import Device, attribute, command, run

IMAGE_SHAPE = (1024, 1024)
DISTINCT_FRAMES = 4


def bench_frames() -> list[np.ndarray]:
    """The frames both image sources send (frame i is frames[i % 4] with pixel (0, 0) = i)."""
    rng = np.random.default_rng(1234)
    return [rng.integers(0, 4096, IMAGE_SHAPE, dtype=np.uint16) for _ in range(DISTINCT_FRAMES)]


def paced(rate_hz: float, count: int):
    """Yield 0..count-1 at `rate_hz` (sleeping until each deadline; no catch-up bursts beyond one)."""
    period = 1.0 / rate_hz if rate_hz > 0 else 0.0
    start = time.perf_counter()
    for i in range(count):
        if period:
            delay = start + i * period - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        yield i


class PvaBenchSource(Device):
    """`counter` pushed at a requested rate with the push time as its timestamp; `image` bursts."""

    counter = attribute(dtype=tango.DevLong64, doc="sequence number of the last pushed event")
    image = attribute(dtype=((np.uint16,),), max_dim_x=IMAGE_SHAPE[1], max_dim_y=IMAGE_SHAPE[0])
    pushed = attribute(dtype=tango.DevLong64, doc="events pushed by the last burst")
    busy = attribute(dtype=bool, doc="a burst is running")

    def init_device(self):
        super().init_device()
        self._counter = 0
        self._pushed = 0
        self._frames = bench_frames()
        self._image = self._frames[0]
        self._busy = threading.Event()
        for name in ("counter", "image"):
            self.set_change_event(name, True, False)
        self.set_state(DevState.ON)

    def read_counter(self):
        return self._counter

    def read_image(self):
        return self._image

    def read_pushed(self):
        return self._pushed

    def read_busy(self):
        return self._busy.is_set()

    @command(dtype_in=(float,), doc_in="[rate_hz, count]: push `count` counter events at `rate_hz`")
    def CounterBurst(self, args):
        rate, count = float(args[0]), int(args[1])
        self._start(self._counter_burst, rate, count)

    @command(dtype_in=int, doc_in="push this many 1024x1024 uint16 frames as fast as possible")
    def ImageBurst(self, count):
        self._start(self._image_burst, count)

    def _start(self, target, *args):
        if self._busy.is_set():
            tango.Except.throw_exception("Bench_Busy", "a burst is still running; wait for busy to be False", "")
        self._busy.set()
        self._pushed = 0
        threading.Thread(target=target, args=args, daemon=True).start()

    def _counter_burst(self, rate, count):
        try:
            for _ in paced(rate, count):
                self._counter += 1
                self.push_change_event("counter", self._counter, time.time(), AttrQuality.ATTR_VALID)
                self._pushed += 1
        finally:
            self._busy.clear()

    def _image_burst(self, count):
        try:
            for i in range(count):
                frame = self._frames[i % DISTINCT_FRAMES]
                frame[0, 0] = i
                self._image = frame
                self.push_change_event("image", frame, time.time(), AttrQuality.ATTR_VALID)
                self._pushed += 1
        finally:
            self._busy.clear()


def main(args=None):
    run((PvaBenchSource,), args=args)


def serve_bare_p4p(server_port: int, broadcast_port: int) -> None:
    """BARE:image (NTNDArray) and BARE:burst: a put of N to BARE:burst posts N frames at once."""
    from p4p.nt import NTNDArray, NTScalar
    from p4p.server import Server
    from p4p.server.thread import SharedPV

    frames = bench_frames()
    nt = NTNDArray()
    image = SharedPV(initial=nt.wrap(frames[0]))  # posts are ready-made Values, as the bridge's are
    busy = SharedPV(nt=NTScalar("?"), initial=False)

    def burst(count: int) -> None:
        try:
            for i in range(count):
                frame = frames[i % DISTINCT_FRAMES]
                frame[0, 0] = i
                value = nt.wrap(frame, timestamp=time.time())
                value["uniqueId"] = i
                image.post(value)
        finally:
            busy.post(False)

    class BurstHandler:
        def put(self, pv, op):
            count = int(op.value())
            busy.post(True)
            threading.Thread(target=burst, args=(count,), daemon=True).start()
            op.done()

    trigger = SharedPV(handler=BurstHandler(), nt=NTScalar("i"), initial=0)
    conf = {
        "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.1",
        "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_PVAS_SERVER_PORT": str(server_port),
        "EPICS_PVAS_BROADCAST_PORT": str(broadcast_port),
    }
    with Server(providers=[{"BARE:image": image, "BARE:burst": trigger, "BARE:busy": busy}], conf=conf, useenv=False):
        print("ready", flush=True)
        sys.stdin.read()  # serve until the benchmark closes our stdin


def _receive(subscribe) -> None:
    records = []
    lock = threading.Lock()
    connected = threading.Event()

    def record(value: int, stamp: float) -> None:
        now = time.time()
        with lock:
            records.append((now, value, stamp))
        connected.set()

    close = subscribe(record)
    if not connected.wait(30.0):
        raise SystemExit("no first value within 30 s")
    print("ready", flush=True)
    sys.stdin.read()
    close()
    with lock:
        print(json.dumps(records), flush=True)


def receive_pva(pv: str, request: str) -> None:
    from p4p.client.thread import Context

    context = Context("pva")

    def subscribe(record):
        monitor = context.monitor(pv, lambda v: record(int(v), v.timestamp), request=request or None)
        return monitor.close

    _receive(subscribe)


def receive_tango(trl: str, attribute_name: str) -> None:
    proxy = tango.DeviceProxy(trl)

    def on_event(event):
        if not event.err:
            record(int(event.attr_value.value), event.attr_value.time.totime())

    def subscribe(recorder):
        nonlocal record
        record = recorder
        event_id = proxy.subscribe_event(attribute_name, tango.EventType.CHANGE_EVENT, on_event)
        return lambda: proxy.unsubscribe_event(event_id)

    record = None
    _receive(subscribe)


if __name__ == "__main__":
    commands = {"bare-p4p": (serve_bare_p4p, int, int), "receive-pva": (receive_pva, str, str)}
    commands["receive-tango"] = (receive_tango, str, str)
    if len(sys.argv) < 2 or sys.argv[1] not in commands or len(sys.argv) != len(commands[sys.argv[1]]) + 1:
        raise SystemExit(__doc__)
    function, *types = commands[sys.argv[1]]
    function(*(convert(arg) for convert, arg in zip(types, sys.argv[2:], strict=True)))
