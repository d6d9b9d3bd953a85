"""ophyd_tango benchmarks: connection time of a wide device and RunEngine throughput.

    python benchmarks/bench_ophyd_tango.py [--points 1000] [--repeats 3]

Baselines measured in the same run, against the same servers (a stack started by the launcher):
- connect: a raw `tango.DeviceProxy` plus one bulk `attribute_list_query_ex()` on a device with
  200 attributes, and ophyd-async's auto-filled `TangoDevice` connecting to it;
- RE(count([dev], N)) on a one-attribute scalar device: bluesky's `ophyd.sim.det` in the same
  RunEngine (the RunEngine's own ceiling) and ophyd-async's Tango device on the same server.
The file is also the benchmark's device server (`serve`), started by the stack as `OtBench`.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import tango
from tango import AttrWriteType
from tango.server import Device, attribute, run

WIDE_ATTRIBUTES = 200
SERVER = "OtBench"
WIDE, SCALAR = "bench/ophyd_tango/wide", "bench/ophyd_tango/scalar"


# ---- the benchmark's device server -------------------------------------------------------------
def _wide_attribute(index: int) -> attribute:
    kind = ("float", "int", "bool", "str")[index % 4]
    dtype = {"float": float, "int": np.int32, "bool": bool, "str": str}[kind]
    value = {"float": 1.5, "int": 7, "bool": True, "str": "text"}[kind]
    name = f"attr_{index:03d}"

    def read(self):
        return value

    def write(self, _):
        pass

    extra = {"unit": "mm", "format": "%8.3f", "min_value": -1e6, "max_value": 1e6} if kind == "float" else {}
    return attribute(
        name=name, dtype=dtype, access=AttrWriteType.READ_WRITE, fget=read, fset=write, doc=f"{kind} #{index}", **extra
    )


Wide = type(
    "Wide",
    (Device,),
    {f"attr_{i:03d}": _wide_attribute(i) for i in range(WIDE_ATTRIBUTES)},
)


class Scalar(Device):
    """One read-only float: what `count` reads."""

    @attribute(dtype=float, unit="counts", format="%8.3f")
    def value(self):
        return 1.0


def serve(args: list[str] | None = None) -> None:
    run((Wide, Scalar), args=args)


# ---- measurements -------------------------------------------------------------------------------
def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_connect(trl: str, repeats: int) -> list[tuple[str, float]]:
    from ophyd_async.core import Device as AsyncDevice  # noqa: F401  (imported once, outside the timing)
    from ophyd_async.tango.core import TangoDevice as AsyncTangoDevice

    import ophyd_tango._device as device_module
    from ophyd_tango import TangoDevice
    from ophyd_tango._link import _close_shared

    def raw():
        proxy = tango.DeviceProxy(trl)
        proxy.set_timeout_millis(3000)
        assert len(proxy.attribute_list_query_ex()) == WIDE_ATTRIBUTES + 2

    def ours_cold():
        _close_shared()  # a new proxy, as for a first connection
        device_module._class_cache.clear()  # and no class built for this structure yet
        dev = TangoDevice(trl, name="wide")
        assert len(dev.component_names) == WIDE_ATTRIBUTES + 2

    def ours_warm():
        _close_shared()
        TangoDevice(trl, name="wide")

    from bluesky.run_engine import call_in_bluesky_event_loop

    def ophyd_async():
        # In the RunEngine's loop: PyTango's asyncio executor keeps the first loop it sees.
        async def connect():
            dev = AsyncTangoDevice(trl, name="wide")
            await dev.connect()
            return dev

        dev = call_in_bluesky_event_loop(connect())
        assert len(list(dev.children())) >= WIDE_ATTRIBUTES

    raw()
    ours_cold()
    ophyd_async()
    results = [
        ("raw DeviceProxy + attribute_list_query_ex", best_of(repeats, raw)),
        ("ophyd_tango.TangoDevice (first of its class)", best_of(repeats, ours_cold)),
        ("ophyd_tango.TangoDevice (class seen before)", best_of(repeats, ours_warm)),
        ("ophyd-async TangoDevice (auto-filled)", best_of(repeats, ophyd_async)),
    ]
    _close_shared()
    return results


def bench_count(trl: str, points: int, repeats: int, run_engine=None) -> list[tuple[str, float]]:
    from bluesky import RunEngine
    from bluesky.plans import count
    from bluesky.run_engine import call_in_bluesky_event_loop
    from ophyd.sim import det
    from ophyd_async.core import SignalR, StandardReadable
    from ophyd_async.core import StandardReadableFormat as Format
    from ophyd_async.tango.core import TangoDevice as AsyncTangoDevice

    from ophyd_tango import TangoDevice

    class AsyncScalar(AsyncTangoDevice, StandardReadable):
        value: Annotated[SignalR[float], Format.HINTED_UNCACHED_SIGNAL]

    RE = RunEngine({}) if run_engine is None else run_engine
    ours = TangoDevice(trl, name="ours")
    theirs = AsyncScalar(trl, name="theirs", support_events=True)
    call_in_bluesky_event_loop(theirs.connect())
    rates: dict[str, list[float]] = {"ophyd.sim.det": [], "ophyd_tango.TangoDevice": [], "ophyd-async TangoDevice": []}
    devices = {"ophyd.sim.det": det, "ophyd_tango.TangoDevice": ours, "ophyd-async TangoDevice": theirs}
    for device in devices.values():
        RE(count([device], 20))  # warm up
    for _ in range(repeats):
        for label, device in devices.items():  # interleaved, so load changes hit all alike
            start = time.perf_counter()
            RE(count([device], points))
            rates[label].append(points / (time.perf_counter() - start))
    return [(label, statistics.median(values)) for label, values in rates.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from tango_servers.stack.testing import start_stack

    config = {"servers": {SERVER: {"bench": {"Wide": {WIDE: {}}, "Scalar": {SCALAR: {}}}}}}
    with tempfile.TemporaryDirectory() as state:
        stack = start_stack(
            Path(state), config=config, extra_servers={SERVER: f"{Path(__file__).resolve()}:serve"}, redis=False,
            bridges=False,
        )  # fmt: skip
        try:
            from bluesky import RunEngine

            stack.export_tango_host()
            run_engine = RunEngine({})  # its event loop also serves ophyd-async
            connect = bench_connect(stack.trl(WIDE), max(10, args.repeats))
            counts = bench_count(stack.trl(SCALAR), args.points, args.repeats, run_engine)
        finally:
            stack.down()

    raw = connect[0][1]
    print(f"## connect: device with {WIDE_ATTRIBUTES} attributes (best of {max(10, args.repeats)})\n")
    print("| what | time | vs raw |\n| --- | --- | --- |")
    for label, seconds in connect:
        print(f"| {label} | {seconds * 1000:.1f} ms | {seconds / raw:.2f}x |")
    ceiling = counts[0][1]
    print(f"\n## RE(count([dev], {args.points})) on a scalar device (median of {args.repeats})\n")
    print("| device | points/s | vs ophyd.sim.det |\n| --- | --- | --- |")
    for label, rate in counts:
        print(f"| {label} | {rate:.0f} | {rate / ceiling:.2f} |")
    ours, theirs = counts[1][1], counts[2][1]
    print(f"\nophyd_tango / ophyd-async: {ours / theirs:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
