"""The RedisBridge server end to end: a real redis-server, the launcher, a feed server it follows."""

import json
import re

import pytest
import tango

from bridges.redis import unpack
from tango_servers.stack.testing import drained
from tango_servers.stack.waiting import wait_until


def _subscribe(fs, *channels):
    pubsub = fs.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(*channels)
    wait_until(lambda: pubsub.get_message(timeout=0.01) is None and pubsub.subscribed, 5, message="subscribed")
    return pubsub


def test_values_meta_and_stream_reach_redis(shared_feed):
    fs = shared_feed
    meta = {k.decode(): v.decode() for k, v in fs.redis.hgetall(fs.key("level", ":meta")).items()}
    assert meta["unit"] == "mm" and meta["label"] == "Level" and meta["format"] == "%.3f"
    assert float(meta["min_value"]) == -100 and float(meta["max_value"]) == 100
    assert meta["dtype"] == "<f8" and meta["data_format"] == "SCALAR" and meta["writable"] == "READ"
    enum_meta = fs.redis.hgetall(fs.key("task_state", ":meta"))
    assert json.loads(enum_meta[b"enum_labels"]) == ["IDLE", "RUNNING", "DONE"]
    # State has no events: the engine polls it, so its first value may come a moment later.
    wait_until(lambda: unpack(fs.redis.get(fs.key("State")))["value"] == "ON", 10, message="State mirrored")

    pubsub = _subscribe(fs, fs.key("level"))
    fs.feed.SetLevel(1.5)
    seen = wait_until(
        lambda: [m for m in drained(pubsub, []) if unpack(m["data"])["value"] == 1.5],
        10,
        message="level published",
    )
    message = unpack(seen[0]["data"])
    assert message["quality"] == "ATTR_VALID" and message["severity"] == 0 and message["timestamp"] > 0
    assert unpack(fs.redis.get(fs.key("level")))["value"] == 1.5
    stream = fs.redis.xrange(fs.key("level", ":stream"))
    assert unpack(stream[-1][1][b"msg"])["value"] == 1.5
    assert not fs.redis.exists(fs.key("count", ":stream")), "only stream_attributes get a history"


def test_meta_hash_follows_configuration_events(shared_feed):
    fs = shared_feed
    fs.feed.SetLevelUnit("um")
    wait_until(lambda: fs.redis.hget(fs.key("level", ":meta"), "unit") == b"um", 10, message="meta refreshed")
    fs.feed.SetLevelUnit("mm")
    wait_until(lambda: fs.redis.hget(fs.key("level", ":meta"), "unit") == b"mm", 10, message="meta refreshed")


def test_a_subscriber_sees_every_value_of_a_burst(shared_feed):
    fs = shared_feed
    pubsub = _subscribe(fs, fs.key("count"))
    n = 500
    fs.feed.Burst(n)
    received: list = []
    wait_until(lambda: any(unpack(m["data"])["value"] == n for m in drained(pubsub, received)), 20, message="the burst")
    values = [unpack(m["data"])["value"] for m in received]
    assert values == list(range(1, n + 1))
    assert unpack(fs.redis.get(fs.key("count")))["value"] == n


def test_images_get_a_throttled_capped_preview(shared_feed):
    fs = shared_feed
    fs.feed.NewImages(40)  # far faster than the 0.2 s preview period
    counter = fs.feed.image_counter
    wait_until(lambda: unpack(fs.redis.get(fs.key("image")))["frame"] == counter, 10, message="last image")
    value = unpack(fs.redis.get(fs.key("image")))
    assert value["value"].shape == (24, 32) and value["dtype"] == "<u2" and value["value"][1, 1] == counter
    preview = fs.key("image", ":preview")
    entries = fs.redis.xrange(preview)
    assert 1 <= len(entries) <= 3, "MAXLEN 3 keeps the stream short"
    frames = [unpack(fields[b"msg"])["frame"] for _, fields in entries]
    assert len(frames) < 40, "previews are throttled"
    last = unpack(entries[-1][1][b"msg"])
    assert set(last) >= {"value", "dtype", "shape", "frame", "timestamp", "quality", "severity"}
    assert last["value"][1, 1] == last["frame"] % 65536, "the frame number is the device's image_counter"
    assert 0 < fs.redis.ttl(preview) <= 30
    meta = fs.redis.hgetall(fs.key("image", ":meta"))
    assert meta[b"data_format"] == b"IMAGE" and len(json.loads(meta[b"shape"])) == 2  # the declared maximum


def test_file_events_and_progress(shared_feed):
    fs = shared_feed
    file_key, progress_key = f"tango:file_event:{fs.device}", f"tango:progress:{fs.device}"
    pubsub = _subscribe(fs, file_key, progress_key)
    event = {
        "file_path": "/data/S00001_pilatus.h5",
        "file_type": "h5",
        "hinted_location": {"data": "/entry/data/data"},
        "done": False,
        "success": False,
    }
    fs.feed.EmitFileEvent(json.dumps(event))
    fs.feed.EmitFileEvent(json.dumps({**event, "done": True, "success": True}))
    fs.feed.SetTask([40.0, 1])
    fs.feed.SetTask([100.0, 2])
    received: list = []

    def seen(channel: str) -> list[dict]:
        return [unpack(m["data"]) for m in received if m["channel"].decode() == channel]

    wait_until(
        lambda: drained(pubsub, received) and len(seen(file_key)) >= 2 and any(p["done"] for p in seen(progress_key)),
        10,
        message="file and progress events",
    )
    opened, closed = seen(file_key)[-2:]
    assert {k: opened[k] for k in event} == event
    assert closed["done"] and closed["success"] and closed["device"] == fs.device
    assert unpack(fs.redis.get(file_key)) == closed
    running = [p for p in seen(progress_key) if p["value"] == 40.0 and not p["done"]]
    assert running and running[0]["max_value"] == 100.0
    final = unpack(fs.redis.get(progress_key))
    assert final["value"] == 100.0 and final["done"] is True


def test_status_attributes(shared_feed):
    bridge = shared_feed.bridge
    assert bridge.connected is True
    wait_until(lambda: bridge.State() == tango.DevState.ON, 5, message="the status thread to show ON")
    assert "Writing to Redis" in bridge.Status()
    assert "test/feed/1" in bridge.followed_devices
    assert bridge.attribute_count >= 7
    assert bridge.updates_written > 0
    assert "***" not in bridge.redis_location or "@" in bridge.redis_location


FIELD = re.compile(r"^fullscreen-(\d+)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_oav_forwarder_writes_jpeg_frames_with_expiry_and_stops_at_frame_bound(shared_feed):
    fs = shared_feed
    key = "murko:S42:raw"
    pubsub = _subscribe(fs, key)
    fs.feed.StartImages(0.02)
    try:
        reply = fs.bridge.StartOavForwarding([[30.0, 5.0], ["S42"]])
        assert key in reply
        wait_until(
            lambda: fs.bridge.oav_forwarded_frames == 5 and not fs.bridge.oav_forwarding,
            20,
            message="5 frames forwarded",
        )
    finally:
        fs.feed.StopImages()
    fields = {k.decode(): v for k, v in fs.redis.hgetall(key).items()}
    assert len(fields) == 5
    frames = sorted(int(FIELD.match(name).group(1)) for name in fields)
    assert len(set(frames)) == 5
    assert all(data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9") for data in fields.values())
    assert 7 * 24 * 3600 - 60 < fs.redis.ttl(key) <= 7 * 24 * 3600
    notes: list = []
    wait_until(lambda: len(drained(pubsub, notes)) >= 5, 5, message="notifications")
    assert {m["data"].decode() for m in notes} == set(fields)
    assert "5 frames" in fs.bridge.oav_outcome


def test_oav_forwarder_is_bounded_in_time_and_can_be_stopped(shared_feed):
    fs = shared_feed
    fs.feed.StartImages(0.05)
    try:
        fs.bridge.StartOavForwarding([[0.5, 0.0], ["S43"]])
        wait_until(lambda: not fs.bridge.oav_forwarding, 10, message="the run to end after 0.5 s")
        assert "elapsed" in fs.bridge.oav_outcome
        assert fs.redis.hlen("murko:S43:raw") < 30  # ~10 frames in 0.5 s at most; fewer on a busy machine

        fs.bridge.StartOavForwarding([[0.0, 0.0], ["S44"]])
        with pytest.raises(tango.DevFailed, match="already forwarding"):
            fs.bridge.StartOavForwarding([[5.0, 0.0], ["S45"]])
        wait_until(lambda: fs.bridge.oav_forwarded_frames >= 2, 10, message="frames of S44")
        fs.bridge.StopOavForwarding()
        assert not fs.bridge.oav_forwarding and "stopped" in fs.bridge.oav_outcome
    finally:
        fs.feed.StopImages()
    with pytest.raises(tango.DevFailed, match="sample id"):
        fs.bridge.StartOavForwarding([[5.0, 0.0], ["bad id"]])
    with pytest.raises(tango.DevFailed, match="exceeds"):
        fs.bridge.StartOavForwarding([[1e6, 0.0], ["S46"]])
    with pytest.raises(tango.DevFailed, match="takes"):
        fs.bridge.StartOavForwarding([[5.0], ["S47"]])
