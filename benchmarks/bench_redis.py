"""Redis bridge benchmark: throughput, event -> subscriber latency, preview memory over a soak.

    python benchmarks/bench_redis.py                  # the short run `make bench` does
    python benchmarks/bench_redis.py --soak 600       # with the 10-minute preview soak

Baselines run in the same process on the same redis-server: a bare redis-py pipeline writing the
same msgpack messages (SET + PUBLISH per update). The end-to-end rate is measured for both of the
bridge's layouts side by side, alternating `tango`, `bec`, `tango`, `bec` on the same stack (the
bridge's `layout` property changed and the device re-initialised between them). Measured:

1. writer throughput: N scalar updates encoded and handed to the bridge's `RedisPublisher`
   vs written by a bare pipeline (batches of 1000), until Redis has them all;
2. end to end through Tango: `--feeds` test servers burst N change events between them (one
   Python server alone pushes fewer than 10k events/s), the bridge republishes them, and a
   subscriber process counts them; beside it, the same subscriber counting a bare pipeline;
3. latency event -> subscriber, paced at 200 updates/s: through Tango and the bridge (Tango
   timestamp to receipt), through the bridge's writer alone, through a bare pipeline, and the
   Tango leg alone (a plain PyTango client's callback);
4. preview memory: the real OAV simulator (1024 x 768 at 25 frames/s) mirrored with every frame
   written, previews at 2 Hz capped at 10 entries; redis-server memory and the bridge's RSS are
   sampled every second for `--soak` seconds.

The subscribers run in their own processes on a bare socket with hiredis's parser, so they are
not what limits the rates measured. On a loaded machine every figure moves; compare the ratios.
"""

import argparse
import contextlib
import multiprocessing
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import hiredis
import msgpack
import redis
import tango

from bridges.redis import RedisPublisher, pack, unpack, value_message
from tango_servers.stack.testing import start_stack
from tango_servers.stack.waiting import wait_until

FEED_SERVER = Path(__file__).resolve().parent.parent / "tests" / "bridges" / "redis" / "feed_server.py"
BRIDGE = "sys/bridge/redis"
BATCH = 1000
LAYOUTS = ("tango", "bec")


def stamp_of(data: bytes) -> float:
    """The Tango timestamp of a published message: a tango-layout value or a BEC DeviceMessage."""
    message = msgpack.unpackb(data)
    envelope = message.get("__bec_codec__")
    if envelope is None:
        return message["timestamp"]
    return max(signal["timestamp"] for signal in envelope["data"]["signals"].values())


def bec_signal_value(data: bytes | None, signal: str) -> object:
    if data is None:
        return None
    return msgpack.unpackb(data)["__bec_codec__"]["data"]["signals"].get(signal, {}).get("value")


def message(i: int) -> bytes:
    return pack(value_message(float(i), time.time(), "ATTR_VALID"))


# -- 1. writer throughput ---------------------------------------------------------------------
def bare_pipeline_write(client: redis.Redis, key: str, n: int) -> tuple[float, float]:
    """Updates/s and CPU microseconds per update of a bare pipeline."""
    start, cpu = time.perf_counter(), time.process_time()
    for first in range(0, n, BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(first + BATCH, n)):
            payload = message(i)
            pipe.set(key, payload)
            pipe.publish(key, payload)
        pipe.execute()
    return n / (time.perf_counter() - start), (time.process_time() - cpu) / n * 1e6


def bridge_writer_write(url: str, key: str, n: int) -> tuple[float, float]:
    """Updates/s and CPU microseconds per update (both threads) of the bridge's writer."""
    publisher = RedisPublisher(url).start()
    try:
        wait_until(lambda: publisher.connected, 10, message="the writer to connect")
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            publisher.set_and_publish(key, message(i))
        publisher.flush(120)
        return n / (time.perf_counter() - start), (time.process_time() - cpu) / n * 1e6
    finally:
        publisher.close()


# -- subscribers ------------------------------------------------------------------------------
def _record(url: str, pattern: str, count: int, timeout: float, ready, results) -> None:
    """Subscriber process: receipt time and raw message of up to `count` messages on `pattern`.

    A bare socket with hiredis's parser, so the subscriber is never what limits the rate measured.
    """
    location = urlsplit(url)
    sock = socket.create_connection((location.hostname, location.port or 6379))
    reader = hiredis.Reader()
    if location.password:  # the stack's redis-server requires its password
        secret = location.password.encode()
        sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret))
        while (reply := reader.gets()) is False:
            reader.feed(sock.recv(65536))
        if isinstance(reply, hiredis.ReplyError):
            raise RuntimeError(f"the subscriber could not log in to Redis: {reply}")
    name = pattern.encode()
    sock.sendall(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(name), name))
    while (reply := reader.gets()) is False:
        reader.feed(sock.recv(65536))
    ready.set()
    sock.settimeout(0.2)
    received: list[tuple[float, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(received) < count and time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            continue
        now = time.time()
        reader.feed(chunk)
        while (reply := reader.gets()) is not False:
            received.append((now, reply[3]))
    sock.close()
    results.put([(t, stamp_of(data)) for t, data in received])


class ChannelRecorder:
    """A subscriber in its own process (no GIL shared with the writers measured)."""

    def __init__(self, url: str, channel: str, count: int, timeout: float) -> None:
        context = multiprocessing.get_context("spawn")
        ready, self._results = context.Event(), context.Queue()
        self._process = context.Process(
            target=_record, args=(url, channel, count, timeout, ready, self._results), daemon=True
        )
        self._process.start()
        if not ready.wait(30):
            raise RuntimeError(f"the subscriber of {channel} did not start")
        self.received: list[tuple[float, float]] = []

    def wait(self) -> None:
        """Until the subscriber has its `count` messages or its timeout passed."""
        self.received = self._results.get()
        self._process.join(10)

    def rate(self) -> float:
        if len(self.received) < 2:
            return 0.0
        return (len(self.received) - 1) / (self.received[-1][0] - self.received[0][0])

    def latencies_ms(self) -> list[float]:
        return [(t - stamp) * 1000 for t, stamp in self.received]


class TangoLatency:
    """A plain PyTango change-event subscriber: Tango timestamp -> callback, the Tango leg alone."""

    def __init__(self, trl: str, attribute: str) -> None:
        self.latencies_ms: list[float] = []
        self.proxy = tango.DeviceProxy(trl)
        self._id = self.proxy.subscribe_event(attribute, tango.EventType.CHANGE_EVENT, self._on_event)
        self.latencies_ms.clear()  # the subscription's first event is a read, not a push

    def _on_event(self, event: tango.EventData) -> None:
        if not event.err:
            self.latencies_ms.append((time.time() - event.attr_value.time.totime()) * 1000)

    def close(self) -> None:
        self.proxy.unsubscribe_event(self._id)


def percentiles(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (float("nan"),) * 3
    q = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), q[94], q[98]


# -- 2. and 3. through Tango ------------------------------------------------------------------
def feed_config(feeds: int) -> dict:
    servers = {str(i): {"BridgeFeed": {f"test/feed/{i}": {}}} for i in range(1, feeds + 1)}
    bridge = {"devices": ["test/*/*"], "attributes": ["count", "level"], "discovery_period": ["0.5"]}
    return {
        "servers": {
            "BridgeFeed": servers,
            "RedisBridge": {"1": {"RedisBridge": {BRIDGE: {"properties": bridge}}}},
        }
    }


# Where each layout publishes a feed's `count` and `level`, and how to read the value back.
LAYOUT_KEYS = {
    "tango": ("tango:test/feed/{i}/count", "tango:test/feed/*/count", "tango:test/feed/1/level"),
    "bec": ("info/devices/readback/feed_{i}", "info/devices/readback/feed_*", "info/devices/readback/feed_1"),
}


def use_layout(stack, layout: str, feeds: int) -> None:
    """Set the bridge's `layout` property, re-initialise it and wait until it writes that layout."""
    tango.Database(*stack.tango_host.split(":")).put_device_property(BRIDGE, {"layout": [layout]})
    bridge = stack.proxy(BRIDGE, timeout=30)
    bridge.Init()
    client = redis.Redis.from_url(stack.redis_url)
    key = LAYOUT_KEYS[layout][0]
    for i in range(1, feeds + 1):
        stack.proxy(f"test/feed/{i}").Burst(10)
        wait_until(lambda i=i: client.exists(key.format(i=i)), 30, message=f"the bridge writing its {layout} layout")


def last_count(client: redis.Redis, layout: str, i: int) -> object:
    data = client.get(LAYOUT_KEYS[layout][0].format(i=i))
    if layout == "tango":
        return unpack(data)["value"] if data else None
    return bec_signal_value(data, f"feed_{i}_count")


def bench_end_to_end(stack, client: redis.Redis, n: int, feeds: int, layout: str) -> dict:
    """Feeds burst `n` events between them; the bridge (in `layout`) republishes; a subscriber counts."""
    results: dict = {}
    url = stack.redis_url
    devices = [stack.proxy(f"test/feed/{i}") for i in range(1, feeds + 1)]
    per_feed = n // feeds
    for i, device in enumerate(devices, 1):
        device.Burst(1000)  # warm up both sides
        wait_until(lambda i=i: last_count(client, layout, i) == 1000, 30, message="the warm-up burst in Redis")

    # Several feed servers burst at once: one Python server cannot push 10k events/s by itself.
    recorder = ChannelRecorder(url, LAYOUT_KEYS[layout][1], per_feed * feeds, 60)
    bridge_cpu = cpu_seconds(stack.server_pid("RedisBridge/1"))
    for device in devices:
        device.Burst(per_feed)
    recorder.wait()
    bridge_cpu = cpu_seconds(stack.server_pid("RedisBridge/1")) - bridge_cpu
    results["bridge_rate"], results["bridge_received"] = recorder.rate(), len(recorder.received)
    results["pushed_rate"] = sum(device.burst_rate for device in devices)
    results["bridge_cpu_us"] = bridge_cpu / max(1, len(recorder.received)) * 1e6
    return results


def bench_bare(stack, client: redis.Redis, n: int) -> dict:
    recorder = ChannelRecorder(stack.redis_url, "bench:bare/count", n, 60)
    cpu_us = bare_pipeline_write(client, "bench:bare/count", n)[1]
    recorder.wait()
    return {"bare_cpu_us": cpu_us, "bare_rate": recorder.rate(), "bare_received": len(recorder.received)}


def bench_latency(stack, samples: int, layout: str) -> tuple[float, float, float]:
    """Tango timestamp -> subscriber receipt of `level`, paced at 200 updates/s."""
    period = 0.005
    recorder = ChannelRecorder(stack.redis_url, LAYOUT_KEYS[layout][2], samples, samples * period + 30)
    stack.proxy("test/feed/1").PushLevels([float(samples), period])
    recorder.wait()
    return percentiles(recorder.latencies_ms())


def bench_tango_latency(stack, samples: int) -> tuple[float, float, float]:
    """The Tango leg alone: a plain PyTango client's callback."""
    tango_only = TangoLatency(stack.trl("test/feed/1"), "level")
    stack.proxy("test/feed/1").PushLevels([float(samples), 0.005])
    wait_until(lambda: len(tango_only.latencies_ms) >= samples, samples * 0.005 + 30, message="paced levels")
    tango_only.close()
    return percentiles(tango_only.latencies_ms)


def paced_latency(url: str, key: str, samples: int, period: float, *, use_bridge_writer: bool):
    client = redis.Redis.from_url(url)
    recorder = ChannelRecorder(url, key, samples, samples * period + 30)
    publisher = None
    if use_bridge_writer:
        publisher = RedisPublisher(url).start()
        wait_until(lambda: publisher.connected, 10)
    start = time.perf_counter()
    for i in range(samples):
        delay = start + i * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        payload = message(i)
        if publisher is not None:
            publisher.set_and_publish(key, payload)
        else:
            pipe = client.pipeline(transaction=False)
            pipe.set(key, payload)
            pipe.publish(key, payload)
            pipe.execute()
    recorder.wait()
    if publisher is not None:
        publisher.close()
    return percentiles(recorder.latencies_ms())


# -- 4. preview memory soak -------------------------------------------------------------------
def soak_config() -> dict:
    no_axes = {f"axis_{a}": [""] for a in ("x", "y", "z", "omega")}
    return {
        "servers": {
            "OAV": {"sim": {"OAV": {"sim/oav/1": {"properties": {"backend": ["sim"], **no_axes}}}}},
            "RedisBridge": {
                "1": {
                    "RedisBridge": {
                        BRIDGE: {
                            "properties": {
                                "devices": ["sim/oav/*"],
                                "attributes": ["image", "image_counter"],
                                "preview_period": ["0.5"],
                                "preview_maxlen": ["10"],
                                "preview_expiry": ["60"],
                                "discovery_period": ["0.5"],
                            }
                        }
                    }
                }
            },
        }
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def down_with_redis(stack) -> None:
    """`stack.down()`, then stop the stack's redis-server if it outlived it (the launcher's marker
    check misses redis-server, which wipes its environ); only inside this stack's state dir."""
    pid = stack.component("redis")["pid"]
    stack.down()
    with contextlib.suppress(OSError):
        if os.readlink(f"/proc/{pid}/cwd").startswith(str(stack.state_dir)):
            os.kill(pid, signal.SIGTERM)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_soak(seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp), config=soak_config())
        try:
            client = redis.Redis.from_url(stack.redis_url)
            preview = "tango:sim/oav/1/image:preview"
            wait_until(lambda: client.exists(preview), 30, message="OAV previews")
            bridge_pid = stack.server_pid("RedisBridge/1")
            counter_start = stack.proxy("sim/oav/1").image_counter
            samples = []
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < seconds:
                used = client.info("memory")["used_memory"] / 2**20
                samples.append((elapsed, used, rss_mib(bridge_pid), client.xlen(preview)))
                time.sleep(1.0)
            frames = stack.proxy("sim/oav/1").image_counter - counter_start
            entry = unpack(client.xrange(preview, count=1)[0][1][b"msg"])
        finally:
            down_with_redis(stack)
    half = [s for s in samples if s[0] >= seconds / 2]
    return {
        "seconds": seconds,
        "frame_rate": frames / seconds,
        "frame_mib": entry["value"].nbytes / 2**20,
        "redis_first": samples[0][1],
        "redis_max": max(s[1] for s in samples),
        "redis_last": samples[-1][1],
        "redis_second_half_range": (min(s[1] for s in half), max(s[1] for s in half)),
        "rss_first": samples[0][2],
        "rss_max": max(s[2] for s in samples),
        "rss_last": samples[-1][2],
        "rss_second_half_range": (min(s[2] for s in half), max(s[2] for s in half)),
        "xlen_max": max(s[3] for s in samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=20000, help="updates per throughput run")
    parser.add_argument("--feeds", type=int, default=2, help="feed servers bursting at once end to end")
    parser.add_argument("--latency-samples", type=int, default=1000, help="paced updates per latency run")
    parser.add_argument("--soak", type=float, default=30.0, help="preview soak seconds (0 to skip)")
    parser.add_argument("--rounds", type=int, default=2, help="end-to-end runs per layout, alternating")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(
            Path(tmp), config=feed_config(args.feeds), extra_servers={"BridgeFeed": f"{FEED_SERVER}:main"}
        )
        try:
            client = redis.Redis.from_url(stack.redis_url)
            bare = bare_pipeline_write(client, "bench:bare/x", args.updates)
            writer = bridge_writer_write(stack.redis_url, "bench:writer/x", args.updates)
            runs: list[tuple[str, dict]] = []
            latency: dict[str, tuple[float, float, float]] = {}
            for layout in LAYOUTS * args.rounds:
                use_layout(stack, layout, args.feeds)
                runs.append((layout, bench_end_to_end(stack, client, args.updates, args.feeds, layout)))
                latency.setdefault(layout, bench_latency(stack, args.latency_samples, layout))
            base = bench_bare(stack, client, args.updates // args.feeds * args.feeds)
            tango_latency = bench_tango_latency(stack, args.latency_samples)
            writer_latency = paced_latency(
                stack.redis_url, "bench:writer/level", args.latency_samples, 0.005, use_bridge_writer=True
            )
            bare_latency = paced_latency(
                stack.redis_url, "bench:bare/level", args.latency_samples, 0.005, use_bridge_writer=False
            )
        finally:
            down_with_redis(stack)

    n = args.updates // args.feeds * args.feeds
    print(f"\n## Redis bridge ({args.updates} scalar updates; {args.latency_samples} paced at 200/s for latency)\n")
    print("| measurement | bridge | bare redis-py pipeline | bridge / bare |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| writer throughput, updates/s | {writer[0]:,.0f} | {bare[0]:,.0f} | {writer[0] / bare[0]:.2f} |")
    print(f"| writer CPU per update, us | {writer[1]:.1f} | {bare[1]:.1f} | {writer[1] / bare[1]:.2f} |")
    bare_cpu = base["bare_cpu_us"]
    for number, (layout, e2e) in enumerate(runs, 1):
        print(
            f"| run {number}, layout `{layout}`: {args.feeds} Tango servers bursting -> Redis subscriber, "
            f"updates/s (received) | {e2e['bridge_rate']:,.0f} ({e2e['bridge_received']}/{n}) "
            f"| {base['bare_rate']:,.0f} ({base['bare_received']}/{n}) | {e2e['bridge_rate'] / base['bare_rate']:.2f} |"
        )
        print(
            f"| run {number}, layout `{layout}`: bridge CPU per update (Tango event in, Redis out), us "
            f"(servers pushed {e2e['pushed_rate']:,.0f} events/s) "
            f"| {e2e['bridge_cpu_us']:.1f} | {base['bare_cpu_us']:.1f} | {e2e['bridge_cpu_us'] / bare_cpu:.2f} |"
        )
    b50, b95, b99 = bare_latency
    rows = [(f"Tango event -> Redis subscriber, layout `{layout}`", value) for layout, value in latency.items()]
    rows += [
        ("bridge writer alone -> subscriber", writer_latency),
        ("(Tango event -> plain PyTango client)", tango_latency),
    ]
    for label, (p50, p95, p99) in rows:
        print(
            f"| {label}, ms p50 / p95 / p99 | {p50:.2f} / {p95:.2f} / {p99:.2f} "
            f"| {b50:.2f} / {b95:.2f} / {b99:.2f} | {p50 / b50:.2f} (p50) |"
        )
    sys.stdout.flush()

    if args.soak > 0:
        soak = bench_soak(args.soak)
        print(f"\n### Preview memory soak, {soak['seconds']:g} s (OAV {soak['frame_rate']:.1f} frames/s)\n")
        bound = 11 * soak["frame_mib"]
        print(f"Frame {soak['frame_mib']:.2f} MiB; preview MAXLEN 10 + the value key: about {bound:.1f} MiB of data.\n")
        print("| | first sample | max | last | second half min..max |")
        print("| --- | ---: | ---: | ---: | ---: |")
        r0, r1 = soak["redis_second_half_range"]
        b0, b1 = soak["rss_second_half_range"]
        print(
            f"| redis-server used_memory, MiB | {soak['redis_first']:.1f} | {soak['redis_max']:.1f} "
            f"| {soak['redis_last']:.1f} | {r0:.1f}..{r1:.1f} |"
        )
        print(
            f"| bridge RSS, MiB | {soak['rss_first']:.1f} | {soak['rss_max']:.1f} | {soak['rss_last']:.1f} "
            f"| {b0:.1f}..{b1:.1f} |"
        )
        print(f"| preview XLEN | | {soak['xlen_max']} | | |")
    print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
