"""PVA bridge benchmarks: event latency and loss at 1 kHz, and image throughput.

    python benchmarks/bench_pva.py [--seconds 5] [--frames 200] [--repeats 3] [--scalar-only]

Both measurements run side by side with their baseline in the same run:
- scalar: a Tango server pushes `counter` change events at 1 kHz, each stamped with its push
  time; a plain PyTango client subscribed to the same attribute (baseline) and a p4p monitor on
  the bridge's PV (each in its own process) receive every event; latency = receive time -
  Tango's timestamp; loss = sequence numbers never received;
- images: 1024 x 1024 uint16 frames, pushed as fast as the source can, through the bridge to a
  p4p monitor, against a bare p4p server (separate process) posting the same frames to the same
  kind of monitor; frames/s = frames received / time from first to last frame received.

The bridge serves the source's PVI structure (`BENCH:PVA:1:PVI`) and command PVs throughout, so
the figures above include what serving PVI costs; the last row times a get of the PVI PV.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tango
from p4p.client.thread import Context

from tango_servers.stack.processes import free_port
from tango_servers.stack.testing import RunningStack, start_stack
from tango_servers.stack.waiting import wait_until

HERE = Path(__file__).resolve().parent
SOURCE = "bench/pva/1"
PV_PREFIX = "BENCH:PVA:1:"
CONFIG = {
    "servers": {
        "PvaBenchSource": {"bench": {"PvaBenchSource": {SOURCE: {"properties": {}}}}},
        "PvaBridge": {
            "1": {
                "PvaBridge": {
                    "sys/bridge/pva": {"properties": {"devices": ["bench/*/*"], "attributes": ["counter", "image"]}}
                }
            }
        },
    }
}
RATE_HZ = 1000.0
# A monitor queue deeper than PVXS's default (4), as a client that must not miss updates at 1 kHz
# asks: one second of updates. BENCH_PVA_REQUEST overrides it.
MONITOR_REQUEST = os.environ.get("BENCH_PVA_REQUEST", "record[queueSize=1000]field()")


class Receiver:
    """Records (receive time, sequence, source timestamp) from a callback, under a lock."""

    def __init__(self):
        self.records: list[tuple[float, int, float]] = []
        self.lock = threading.Lock()

    def add(self, sequence: int, stamp: float) -> None:
        now = time.time()
        with self.lock:
            self.records.append((now, sequence, stamp))

    def since(self, first: int) -> list[tuple[float, int, float]]:
        with self.lock:
            return [r for r in self.records if r[1] >= first]

    def last_sequence(self) -> int:
        with self.lock:
            return self.records[-1][1] if self.records else -1


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_burst_done(proxy: tango.DeviceProxy, timeout: float) -> None:
    wait_until(lambda: not proxy.busy, timeout, interval=0.05, message="the source's burst to finish")


def start_receiver(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, str(HERE / "pva_sources.py"), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    line = process.stdout.readline().strip()
    if line != "ready":
        process.kill()
        raise RuntimeError(f"receiver {args} did not start: {line!r}")
    return process


def stop_receiver(process: subprocess.Popen) -> list[tuple[float, int, float]]:
    output, _ = process.communicate(timeout=60)
    return [tuple(r) for r in json.loads(output)]


def latency_stats(records: list[tuple[float, int, float]], first: int, count: int) -> dict:
    records = [r for r in records if first <= r[1] < first + count]
    sequences = {r[1] for r in records}
    latencies = [(received - stamp) * 1e3 for received, _, stamp in records]
    stamps = sorted(r[2] for r in records)
    return {
        "received": len(sequences),
        "lost": count - len(sequences),
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies, default=float("nan")),
        "rate": (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0,
    }


def bench_scalar(running: RunningStack, seconds: float) -> dict:
    """1 kHz counter events to a PyTango client and, through the bridge, a p4p client (one process each)."""
    proxy = running.proxy(SOURCE)
    tango_receiver = start_receiver(["receive-tango", running.trl(SOURCE), "counter"])
    pva_receiver = start_receiver(["receive-pva", PV_PREFIX + "counter", MONITOR_REQUEST], env=dict(running.pva))
    try:
        start = int(proxy.counter) + 1
        count = int(RATE_HZ * seconds)
        bridge_pid = running.server_pid("PvaBridge/1")
        bridge = running.proxy("sys/bridge/pva")
        posts_before = bridge.update_count
        cpu_before, wall_before = cpu_seconds(bridge_pid), time.monotonic()
        proxy.CounterBurst([RATE_HZ, count])
        wait_burst_done(proxy, seconds * 3 + 10)
        # the bridge has posted every event it will post once its count stops moving
        wait_until(
            lambda: bridge.update_count - posts_before >= count or time.monotonic() - wall_before > seconds + 10,
            seconds + 15,
            message="the bridge to post the burst",
        )
        cpu = (cpu_seconds(bridge_pid) - cpu_before) / (time.monotonic() - wall_before)
        posts = bridge.update_count - posts_before
        ages = (bridge.update_age_p50, bridge.update_age_p99)  # the bridge's last 2000 updates: all burst
    finally:
        tango_records = stop_receiver(tango_receiver)
        pva_records = stop_receiver(pva_receiver)
    return {
        "events": count,
        "bridge_cpu": cpu,
        "bridge_posts": posts,
        "bridge_age": ages,
        "tango": latency_stats(tango_records, start, count),
        "pva": latency_stats(pva_records, start, count),
    }


def wait_drained(receiver: Receiver, quiet: float = 0.5) -> None:
    """Until no new record arrived for `quiet` seconds (the source is done; the pipeline drains)."""
    previous = -1
    while (count := len(receiver.since(-1))) != previous:
        previous = count
        time.sleep(quiet)


def count_frames(context: Context, pv: str, trigger, frames: int) -> dict:
    """Monitor `pv`, call `trigger()`, and measure the frames received until the source is done."""
    receiver = Receiver()
    shapes = set()

    def on_frame(value):
        if isinstance(value, Exception):
            return
        shapes.add(value.shape)
        receiver.add(int(value.raw.uniqueId), value.timestamp)

    monitor = context.monitor(pv, on_frame)
    try:
        wait_until(lambda: receiver.last_sequence() >= 0, 30.0, message=f"a first frame from {pv}")
        time.sleep(0.2)  # let the initial value settle before the burst
        with receiver.lock:
            receiver.records.clear()
        started = time.time()
        done = trigger()
        wait_drained(receiver)
        records = [r for r in receiver.since(0) if r[0] >= started]
        received = len(records)
        elapsed = records[-1][0] - records[0][0] if received > 1 else float("nan")
        return {
            "sent": frames,
            "received": received,
            "fps": (received - 1) / elapsed if received > 1 else 0.0,
            "source_seconds": done,
            "shapes": shapes,
        }
    finally:
        monitor.close()


def bench_images_bridge(running: RunningStack, context: Context, frames: int) -> dict:
    proxy = running.proxy(SOURCE)
    proxy.set_timeout_millis(10000)
    bridge_pid = running.server_pid("PvaBridge/1")
    cpu: list[float] = []

    def trigger():
        start = time.monotonic()
        cpu.append(cpu_seconds(bridge_pid))
        proxy.ImageBurst(frames)
        wait_burst_done(proxy, 120.0)
        return time.monotonic() - start

    result = count_frames(context, PV_PREFIX + "image", trigger, frames)
    result["bridge_cpu_per_frame"] = (cpu_seconds(bridge_pid) - cpu[0]) / max(result["received"], 1)
    return result


def bench_images_bare(context: Context, frames: int) -> dict:
    def trigger():
        start = time.monotonic()
        context.put("BARE:burst", frames, timeout=10.0)
        wait_until(
            lambda: not context.get("BARE:busy", timeout=5.0),
            120.0,
            interval=0.05,
            message="the bare p4p burst to finish",
        )
        return time.monotonic() - start

    return count_frames(context, "BARE:image", trigger, frames)


def bench_images_tango(running: RunningStack, frames: int) -> dict:
    """For reference: the same burst received by a plain PyTango client (no bridge)."""
    proxy = running.proxy(SOURCE)
    proxy.set_timeout_millis(10000)
    receiver = Receiver()

    def on_image(event):
        if not event.err:
            receiver.add(int(event.attr_value.value[0, 0]), event.attr_value.time.totime())

    event_id = proxy.subscribe_event("image", tango.EventType.CHANGE_EVENT, on_image)
    try:
        with receiver.lock:
            receiver.records.clear()
        proxy.ImageBurst(frames)
        wait_burst_done(proxy, 120.0)
        wait_drained(receiver)
        records = receiver.since(-1)
        elapsed = records[-1][0] - records[0][0] if len(records) > 1 else float("nan")
        return {"sent": frames, "received": len(records), "fps": (len(records) - 1) / elapsed}
    finally:
        proxy.unsubscribe_event(event_id)


def start_bare_p4p() -> tuple[subprocess.Popen, dict[str, str]]:
    server_port, broadcast_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "pva_sources.py"), "bare-p4p", str(server_port), str(broadcast_port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    conf = {
        "EPICS_PVA_NAME_SERVERS": f"127.0.0.1:{server_port}",
        "EPICS_PVA_ADDR_LIST": "127.0.0.1",
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        "EPICS_PVA_BROADCAST_PORT": str(broadcast_port),
    }
    return process, conf


def report_scalar(runs: list[dict]) -> None:
    def median(path: str, key: str) -> float:
        return statistics.median(run[path][key] for run in runs)

    events = sum(run["events"] for run in runs)
    rate = median("pva", "rate")
    p50, t50 = median("pva", "p50"), median("tango", "p50")
    p99, t99 = median("pva", "p99"), median("tango", "p99")
    print(
        f"| change event latency p50 (median of {len(runs)} runs at {rate:.0f} Hz) | {p50:.3f} ms | "
        f"{t50:.3f} ms (PyTango client) | {p50 - t50:+.3f} ms |"
    )
    print(
        f"| change event latency p99 (median of {len(runs)} runs) | {p99:.3f} ms | {t99:.3f} ms | {p99 - t99:+.3f} ms |"
    )
    print(
        f"| change event latency max | {max(r['pva']['max'] for r in runs):.3f} ms | "
        f"{max(r['tango']['max'] for r in runs):.3f} ms | |"
    )
    print(
        f"| events lost of {events} | {sum(r['pva']['lost'] for r in runs)} | "
        f"{sum(r['tango']['lost'] for r in runs)} | |"
    )
    print(f"| PV updates the bridge posted | {sum(r['bridge_posts'] for r in runs)} of {events} | | |")
    ages = [r["bridge_age"] for r in runs]
    print(
        f"| Tango event -> post inside the bridge, p50 / p99 (median) | {statistics.median(a[0] for a in ages):.3f} / "
        f"{statistics.median(a[1] for a in ages):.3f} ms | | |"
    )
    cpu = statistics.median(r["bridge_cpu"] for r in runs)
    print(f"| bridge CPU during the 1 kHz bursts (median) | {cpu * 100:.0f} % of one core | | |")
    for i, run in enumerate(runs, 1):
        t, p = run["tango"], run["pva"]
        print(
            f"| run {i}: p50 / p99 / lost | {p['p50']:.3f} / {p['p99']:.3f} ms / {p['lost']} | "
            f"{t['p50']:.3f} / {t['p99']:.3f} ms / {t['lost']} | |"
        )


def report_images(bridged: list[dict], direct: list[dict], tango_only: dict, frames: int) -> None:
    fps_bridge = statistics.median(r["fps"] for r in bridged)
    fps_bare = statistics.median(r["fps"] for r in direct)
    print(
        f"| 1024x1024 uint16 frames/s (median of {len(bridged)}, {frames} sent) | {fps_bridge:.1f} | "
        f"{fps_bare:.1f} (bare p4p server) | {fps_bridge / fps_bare:.2f} of bare p4p |"
    )
    print(
        f"| frames received of {frames} per burst | {[r['received'] for r in bridged]} | "
        f"{[r['received'] for r in direct]} | |"
    )
    print(
        f"| for reference: plain PyTango client, same burst | {tango_only['fps']:.1f} frames/s, "
        f"{tango_only['received']} received | | |"
    )
    per_frame = statistics.median(r["bridge_cpu_per_frame"] for r in bridged)
    print(f"| bridge CPU per frame delivered (median) | {per_frame * 1e3:.2f} ms | | |")
    shapes = set().union(*(r["shapes"] for r in bridged))
    print(f"\nimage shapes seen via the bridge: {sorted(shapes)}")


def bench_pvi(running: RunningStack, gets: int = 20) -> dict:
    """Entries in the source's PVI structure and the median time of a get of it."""
    with Context("pva", conf=dict(running.pva), useenv=False) as context:
        entries = len(context.get(PV_PREFIX + "PVI", timeout=10.0).value.todict())
        times = []
        for _ in range(gets):
            start = time.perf_counter()
            context.get(PV_PREFIX + "PVI", timeout=10.0)
            times.append(time.perf_counter() - start)
    return {"entries": entries, "gets": gets, "median": statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the 1 kHz burst")
    parser.add_argument("--frames", type=int, default=200, help="frames per image burst")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (median reported)")
    parser.add_argument("--scalar-only", action="store_true", help="skip the image measurements")
    args = parser.parse_args()
    load = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="bench-pva-") as tmp:
        running = start_stack(
            Path(tmp), config=CONFIG, extra_servers={"PvaBenchSource": f"{HERE / 'pva_sources.py'}:main"}, redis=False
        )
        bare, bare_conf = start_bare_p4p()
        bridged, direct, tango_only = [], [], {}
        try:
            scalar = [bench_scalar(running, args.seconds) for _ in range(args.repeats)]
            pvi = bench_pvi(running)
            if not args.scalar_only:
                bridge_context = Context("pva", conf=dict(running.pva), useenv=False)
                bare_context = Context("pva", conf=bare_conf, useenv=False)
                for _ in range(args.repeats):  # alternate, so both see the same machine load
                    bridged.append(bench_images_bridge(running, bridge_context, args.frames))
                    direct.append(bench_images_bare(bare_context, args.frames))
                tango_only = bench_images_tango(running, args.frames)
                bridge_context.close()
                bare_context.close()
        finally:
            bare.stdin.close()
            bare.wait(10)
            running.down()

    print(f"load average (1 min) at start: {load:.1f}; PVA monitor request: {MONITOR_REQUEST}")
    print()
    print("| what | via bridge (PVA) | baseline | ratio |")
    print("| --- | --- | --- | --- |")
    report_scalar(scalar)
    if bridged:
        report_images(bridged, direct, tango_only, args.frames)
    pvi_row = f"get of {PV_PREFIX}PVI ({pvi['entries']} entries), median of {pvi['gets']}"
    print(f"| {pvi_row} | {pvi['median'] * 1e3:.2f} ms | | |")


if __name__ == "__main__":
    main()
