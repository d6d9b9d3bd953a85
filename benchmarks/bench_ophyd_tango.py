"""ophyd_tango benchmarks: connection time of a wide device, RunEngine throughput and reads.

    python benchmarks/bench_ophyd_tango.py [--points 1000] [--rounds 5]

Baselines measured in the same run, against the same servers (a stack started by the launcher,
plus Debian's C++ TangoTest on its database), each row a median of `--rounds` interleaved rounds:
- connect: a raw `tango.DeviceProxy` plus one bulk `attribute_list_query_ex()` on a device with
  200 attributes, and ophyd-async's auto-filled `TangoDevice` connecting to it;
- (a) RE(count([signal], N)) of one attribute, (b) RE(count([dev], N)) of a whole scalar device,
  (c) RE(count([tg_test], N)) of TangoTest's default read set, (d) `read()` of a 200-attribute
  device: each against bluesky's `ophyd.sim.det` in the same RunEngine (the RunEngine's own
  ceiling; a plain `read()` for (d)) and ophyd-async on the same server and attributes.
The file is also the benchmark's device server (`serve`), started by the stack as `OtBench`.
"""

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    """Four read-only scalars: `value` is what (a) counts, all four what (b) counts."""

    @attribute(dtype=float, unit="counts", format="%8.3f")
    def value(self):
        return 1.0

    @attribute(dtype=float, unit="K")
    def temperature(self):
        return 295.5

    @attribute(dtype=np.int32)
    def frames(self):
        return 12

    @attribute(dtype=bool)
    def ready(self):
        return True


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


def interleaved(rounds: int, runs: dict[str, Callable[[], int]]) -> list[tuple[str, float]]:
    """Median rate (items per second) of each run over `rounds`, the runs interleaved so that
    load changes hit all alike; a run returns how many items it did."""
    rates: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(rounds):
        for label, run_once in runs.items():
            start = time.perf_counter()
            done = run_once()
            rates[label].append(done / (time.perf_counter() - start))
    return [(label, statistics.median(values)) for label, values in rates.items()]


def counting(run_engine, device, points: int) -> Callable[[], int]:
    from bluesky.plans import count

    run_engine(count([device], 20))  # warm up: describe, first reads, class built

    def run_once() -> int:
        run_engine(count([device], points))
        return points

    return run_once


def async_datatype(atype) -> Any:
    """The ophyd-async datatype of an attribute (an `ophyd_tango` AttributeType)."""
    from collections.abc import Sequence

    from ophyd_async.core import Array1D

    if atype.kind == "string":
        return str if atype.is_scalar else Sequence[str]
    if atype.is_scalar:
        return {"bool": bool, "int": int}.get(atype.kind, float)
    # ophyd-async widens every Tango float array to float64 and every integer array to int64.
    return Array1D[{"bool": np.bool_, "int": np.int64}.get(atype.kind, np.float64)]


def async_readable(ours, attributes: list[str] | None = None) -> Any:
    """An ophyd-async StandardReadable with one Tango signal per attribute `ours` (an
    ophyd_tango device) reads, or of `attributes`, uncached as ours are, connected.
    (ophyd-async's auto-filled TangoDevice cannot connect to TangoTest: it refuses string images.)"""
    from bluesky.run_engine import call_in_bluesky_event_loop
    from ophyd_async.core import StandardReadable
    from ophyd_async.core import StandardReadableFormat as Format
    from ophyd_async.tango.core import tango_signal_r

    device = StandardReadable(name="theirs")
    with device.add_children_as_readables(Format.UNCACHED_SIGNAL):
        for attr in attributes or ours.read_attrs:
            atype = getattr(ours, attr).tango_type
            setattr(device, attr, tango_signal_r(async_datatype(atype), f"{ours.trl}/{atype.name}"))
    call_in_bluesky_event_loop(device.connect())
    return device


def bench_counts(stack, tg_test_trl: str, points: int, rounds: int, run_engine) -> dict[str, list]:
    """Rows (a), (b) and (c): points/s of ophyd.sim.det, ophyd_tango and ophyd-async."""
    from ophyd.sim import det

    from ophyd_tango import TangoDevice

    scalar = stack.trl(SCALAR)
    ours_scalar = TangoDevice(scalar, name="ours")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TangoTest's no_value and throw_exception, left out
        ours_tg_test = TangoDevice(tg_test_trl, name="tg_test")
    cases = {
        # A bare ophyd-async SignalR, once staged, reads its cache, which an attribute without
        # Tango events never fills (count times out): its baseline is a one-signal readable.
        "(a) count([signal])": (ours_scalar.value, async_readable(ours_scalar, ["value"])),
        f"(b) count([scalar device]), {len(ours_scalar.read_attrs)} attributes": (
            ours_scalar,
            async_readable(ours_scalar),
        ),
        f"(c) count([tg_test]), {len(ours_tg_test.read_attrs)} attributes": (
            ours_tg_test,
            async_readable(ours_tg_test),
        ),
    }
    results = {}
    for case, (ours, theirs) in cases.items():
        runs = {
            "ophyd.sim.det": counting(run_engine, det, points),
            "ophyd_tango": counting(run_engine, ours, points),
            "ophyd-async": counting(run_engine, theirs, points),
        }
        results[case] = interleaved(rounds, runs)
    return results


def bench_wide_read(trl: str, reads: int, rounds: int) -> list[tuple[str, float]]:
    """Row (d): reads/s of `read()` of all 200 attributes (det.read() as the ceiling)."""
    from bluesky.run_engine import call_in_bluesky_event_loop
    from ophyd.sim import det

    from ophyd_tango import TangoDevice

    names = [f"attr_{i:03d}" for i in range(WIDE_ATTRIBUTES)]
    ours = TangoDevice(trl, name="wide", read=names)
    theirs = async_readable(ours)
    assert len(ours.read()) == len(call_in_bluesky_event_loop(theirs.read())) == WIDE_ATTRIBUTES

    def repeat(read_once) -> Callable[[], int]:
        def run_once() -> int:
            for _ in range(reads):
                read_once()
            return reads

        return run_once

    async def theirs_reads() -> None:
        for _ in range(reads):
            await theirs.read()

    def theirs_run() -> int:
        call_in_bluesky_event_loop(theirs_reads())
        return reads

    runs = {"ophyd.sim.det": repeat(det.read), "ophyd_tango": repeat(ours.read), "ophyd-async": theirs_run}
    return interleaved(rounds, runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=50, help="read()s of the wide device per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from tango_servers.stack.tangotest import TangoTestServer
    from tango_servers.stack.testing import start_stack

    config = {"servers": {SERVER: {"bench": {"Wide": {WIDE: {}}, "Scalar": {SCALAR: {}}}}}}
    with tempfile.TemporaryDirectory() as state:
        stack = start_stack(
            Path(state), config=config, extra_servers={SERVER: f"{Path(__file__).resolve()}:serve"}, redis=False,
            bridges=False,
        )  # fmt: skip
        tg_test = None
        try:
            from bluesky import RunEngine

            stack.export_tango_host()
            tg_test = TangoTestServer(stack.tango_host, Path(state) / "TangoTest.log").start()
            run_engine = RunEngine({})  # its event loop also serves ophyd-async
            connect = bench_connect(stack.trl(WIDE), max(10, args.rounds))
            counts = bench_counts(stack, tg_test.trl, args.points, args.rounds, run_engine)
            wide = bench_wide_read(stack.trl(WIDE), args.reads, args.rounds)
        finally:
            if tg_test is not None:
                tg_test.stop()
            stack.down()

    raw = connect[0][1]
    print(f"## connect: device with {WIDE_ATTRIBUTES} attributes (best of {max(10, args.rounds)})\n")
    print("| what | time | vs raw |\n| --- | --- | --- |")
    for label, seconds in connect:
        print(f"| {label} | {seconds * 1000:.1f} ms | {seconds / raw:.2f}x |")
    print(
        f"\n## throughput, median of {args.rounds} rounds ({args.points} points per count, {args.reads} wide reads)\n"
    )
    print("| case | ophyd.sim.det | ophyd_tango | ophyd-async | ophyd_tango / det | ophyd_tango / ophyd-async |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = {**counts, f"(d) read() of {WIDE_ATTRIBUTES} attributes (reads/s)": wide}
    for case, rates in rows.items():
        det, ours, theirs = (rate for _, rate in rates)
        print(f"| {case} | {det:.0f} | {ours:.0f} | {theirs:.0f} | {ours / det:.2f} | {ours / theirs:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
