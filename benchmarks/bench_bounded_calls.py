"""What bounding every device call costs: `DeviceLink.read` of one scalar, bounded and direct.

    python benchmarks/bench_bounded_calls.py [--reads 1000] [--rounds 5]

`DeviceLink` runs each proxy call in a thread pool and waits at most the link's timeout plus a
margin (`ophyd_tango._deadline.call_within`), so that a hung server cannot hold the caller for
Tango's client retries. The baseline is the same read with the proxy called directly (the pool
hop replaced for the measurement), interleaved round by round on a small Pilatus of its own.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import ophyd_tango._link as link_module
from ophyd_tango import TangoDevice
from tango_servers.stack.testing import small_pilatus, start_stack


def direct(limit: float, what: str, function: Any, *args: Any) -> Any:
    return function(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bounded-") as tmp:
        stack = start_stack(Path(tmp), config={"servers": small_pilatus("bench")}, redis=False, bridges=False)
        try:
            link = TangoDevice(stack.trl("sim/pilatus/1"), name="pilatus").link
            ways = {"bounded (as shipped)": link_module.call_within, "direct (baseline)": direct}
            times: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(args.rounds):
                for name, way in ways.items():
                    link_module.call_within = way
                    started = time.perf_counter()
                    for _ in range(args.reads):
                        link.read(["acq_expo_time"])
                    times[name].append((time.perf_counter() - started) / args.reads * 1e6)
            link_module.call_within = ways["bounded (as shipped)"]
        finally:
            stack.down()
    baseline = statistics.median(times["direct (baseline)"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<22} {median:7.0f} us per read  {median / baseline:5.2f}x  rounds: {[round(v) for v in values]}")


if __name__ == "__main__":
    main()
