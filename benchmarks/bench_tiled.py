"""Cost of keeping runs in Tiled: the same runs with and without TiledWriter subscribed.

    python benchmarks/bench_tiled.py [--points 1000] [--rounds 2]

A stack of its own with its Tiled (the Automation1 server as shipped and a small Pilatus, 125 x
67 pixels, HDF5BS). Two runs, each `rounds` times, alternating without and with the stack's
RunKeeper (TiledWriter, its backup in between) on the RunEngine: `count([omega], points)` of a
scalar (the axis position read from its Tango server) and `fly_scan([pilatus], omega, 0, 10,
points, 0.004)`. Times are wall clock from the RunEngine call to its return, so they include
what TiledWriter sends when the run stops; the report is the best time of each and the ratio.
"""

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bluesky import RunEngine
from bluesky.plans import count

from ophyd_tango import TangoDevice
from ophyd_tango.plans import fly_scan
from tango_servers.stack.kept_runs import RunKeeper, tiled_client
from tango_servers.stack.testing import shipped_servers, small_pilatus, start_stack

FLY_EXPOSURE = 0.004


def timed_run(make_plan: Callable[[], Any], keeper: RunKeeper | None, before: Callable[[], None]) -> tuple[float, str]:
    run_engine = RunEngine({}, context_managers=[])
    if keeper is not None:
        run_engine.subscribe(keeper)
    before()
    started = time.perf_counter()
    (uid,) = run_engine(make_plan())
    return time.perf_counter() - started, uid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    config = {"servers": {**shipped_servers("Automation1"), **small_pilatus("bench")}}
    with tempfile.TemporaryDirectory(prefix="bench-tiled-") as tmp:
        stack = start_stack(Path(tmp), config=config, redis=False, bridges=False, tiled=True)
        try:
            omega = TangoDevice(stack.trl("sim/aerotech/omega"), name="omega")
            pilatus = TangoDevice(stack.trl("sim/pilatus/1"), name="pilatus")
            client = tiled_client(stack.tiled)
            runs = {
                f"count of {args.points} scalar points": (lambda: count([omega], args.points), lambda: None),
                f"{args.points}-point fly scan": (
                    lambda: fly_scan([pilatus], omega, 0.0, 10.0, args.points, FLY_EXPOSURE),
                    lambda: omega.set(0.0).wait(60),  # the run-up to the start is not part of the fly
                ),
            }
            print(f"{'run':<32} {'without (s)':>12} {'with (s)':>10} {'ratio':>7}")
            for label, (make_plan, before) in runs.items():
                times: dict[str, list[float]] = {"without": [], "with": []}
                for _ in range(args.rounds):
                    times["without"].append(timed_run(make_plan, None, before)[0])
                    keeper = RunKeeper(stack.tiled)
                    elapsed, uid = timed_run(make_plan, keeper, before)
                    assert not keeper.told, "Tiled did not take the run"
                    assert len(client[uid]["primary"]["time"]) == args.points
                    times["with"].append(elapsed)
                without, with_tiled = min(times["without"]), min(times["with"])
                print(f"{label:<32} {without:>12.3f} {with_tiled:>10.3f} {with_tiled / without:>7.3f}")
        finally:
            stack.down()


if __name__ == "__main__":
    main()
