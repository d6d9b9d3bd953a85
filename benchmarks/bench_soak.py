"""Soak: the shipped stack under a steady scan workload for a bounded time; RSS of every server.

    python benchmarks/bench_soak.py [--seconds 300] [--warmup 30]

A stack of its own (the shipped configuration: Automation1, Pilatus, OAV, both bridges, Redis;
the Pilatus with the tests' small geometry, so that fly scans keep up on 2 cores) on free
loopback ports. Each cycle runs, through one RunEngine: `count([pilatus], 10)`, a move
of `x` there and back, a 100-point `fly_scan` of the Pilatus on `x`, and a read of the OAV image.
The resident set size (VmRSS) of every process the stack started is sampled once the warm-up
is over (`--warmup` seconds of the same workload) and at the end; the report lists both, the
growth, the cycles run and any run that did not succeed. The baseline is each process's own
RSS after warm-up: a server whose memory grows with the number of scans shows as a ratio > 1.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bluesky import RunEngine
from bluesky.plans import count

from ophyd_tango import TangoDevice
from ophyd_tango.plans import fly_scan
from tango_servers.stack.config import load_config
from tango_servers.stack.testing import RunningStack, small_pilatus, start_stack


def rss_kib(pid: int) -> int | None:
    """The resident set size of `pid` in KiB (None when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def sample(stack: RunningStack) -> dict[str, tuple[int, int | None]]:
    """Component name -> (pid, RSS KiB) for every process of the stack."""
    return {c["name"]: (c["pid"], rss_kib(c["pid"])) for c in stack.current.get("components", []) if c.get("pid")}


def failure_of(RE: RunEngine, plan: Any) -> str | None:
    """Run `plan`; why it did not succeed, or None."""
    stops: list[dict] = []
    try:
        RE(plan, lambda name, doc: stops.append(doc) if name == "stop" else None)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return (
        None
        if stops and stops[-1].get("exit_status") == "success"
        else str(stops[-1].get("reason") if stops else "no stop")
    )


def cycle(RE: RunEngine, devices: dict[str, TangoDevice], failures: list[str]) -> None:
    pilatus, x, oav = devices["pilatus"], devices["x"], devices["oav"]
    for plan in (count([pilatus], 10), fly_scan([pilatus], x, 0.0, 1.0, 100, 0.004)):
        failure = failure_of(RE, plan)
        if failure:
            failures.append(failure)
    x.set(2.0).wait(60)
    x.set(0.0).wait(60)
    oav.signal("image").get()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="soak length after warm-up (default 300)")
    parser.add_argument("--warmup", type=float, default=30.0, help="warm-up before the first sample (default 30)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        servers = {**load_config().document["servers"], **small_pilatus("sim")}
        stack = start_stack(Path(tmp), config={"servers": servers})
        try:
            trl = stack.trl
            devices = {
                "pilatus": TangoDevice(trl("sim/pilatus/1"), name="pilatus"),
                "x": TangoDevice(trl("sim/aerotech/x"), name="x"),
                "oav": TangoDevice(trl("sim/oav/1"), name="oav"),
            }
            devices["pilatus"].signal("acq_expo_time").put(0.01)
            RE = RunEngine({}, context_managers=[])
            failures: list[str] = []
            warm_end = time.monotonic() + args.warmup
            while time.monotonic() < warm_end:
                cycle(RE, devices, failures)
            start, cycles = sample(stack), 0
            end_at = time.monotonic() + args.seconds
            while time.monotonic() < end_at:
                cycle(RE, devices, failures)
                cycles += 1
            end = sample(stack)
        finally:
            stack.down()
    rows = []
    print(f"{'process':<28} {'pid':>8} {'RSS start MiB':>14} {'RSS end MiB':>12} {'ratio':>7}")
    for name, (pid, before) in sorted(start.items()):
        after_pid, after = end.get(name, (None, None))
        restarted = after_pid != pid
        ratio = after / before if before and after else None
        rows.append(
            {"process": name, "pid": pid, "rss_start_kib": before, "rss_end_kib": after, "restarted": restarted}
        )
        shown = f"{ratio:7.3f}" if ratio else "      -"
        print(
            f"{name:<28} {pid:>8} {(before or 0) / 1024:14.1f} {(after or 0) / 1024:12.1f} {shown}"
            + ("  (restarted)" if restarted else "")
        )
    print(f"cycles after warm-up: {cycles} in {args.seconds:g} s; runs not successful: {len(failures)}")
    for failure in failures[:10]:
        print(f"  {failure[:200]}")
    print(json.dumps({"seconds": args.seconds, "cycles": cycles, "failures": len(failures), "processes": rows}))


if __name__ == "__main__":
    main()
