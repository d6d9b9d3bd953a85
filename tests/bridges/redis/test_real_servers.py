"""The Redis bridge of the shipped stack mirrors the real (simulated) servers: Aerotech, Pilatus, OAV."""

import json

import pytest

from bridges.redis import unpack
from tango_servers.stack.testing import drained
from tango_servers.stack.waiting import wait_until

from .conftest import start_pilatus_files

CTRL, AXIS, PILATUS, OAV = "sim/aerotech/ctrl", "sim/aerotech/x", "sim/pilatus/1", "sim/oav/1"


@pytest.fixture(scope="module")
def client(stack):
    import redis

    if not stack.redis_url:
        pytest.skip("the session stack runs no redis-server")
    client = redis.Redis.from_url(stack.redis_url, socket_timeout=5.0)
    wait_until(
        lambda: client.exists(f"tango:{AXIS}/position", f"tango:{OAV}/image_counter") == 2,
        60,
        message="the bridge to mirror the shipped devices",
    )
    return client


def _subscribe(client, *channels):
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(*channels)
    wait_until(lambda: pubsub.get_message(timeout=0.01) is None and pubsub.subscribed, 5, message="subscribed")
    return pubsub


def _data(message: dict) -> dict:
    return unpack(message["data"])


def test_axis_position_and_its_meta(client):
    meta = client.hgetall(f"tango:{AXIS}/position:meta")
    assert meta[b"unit"] == b"mm" and meta[b"dtype"] == b"<f8"
    message = unpack(client.get(f"tango:{AXIS}/position"))
    assert isinstance(message["value"], float) and message["quality"] in ("ATTR_VALID", "ATTR_CHANGING")


def test_aerotech_task_progress(stack, client):
    key = f"tango:progress:{CTRL}"
    pubsub = _subscribe(client, key)
    stack.proxy(CTRL).RunProgram("Dwell(0.3)\nDwell(0.3)")
    seen: list = []
    wait_until(
        lambda: any(p["done"] and p["value"] >= 1.0 for p in drained(pubsub, seen, _data)),
        10,
        message="the program to finish",
    )
    assert any(not p["done"] and 0 <= p["value"] < 1.0 for p in seen), "progress while running"
    assert all(p["max_value"] == 1.0 for p in seen)
    assert unpack(client.get(key))["done"] is True


def test_pilatus_file_events(stack, client, request):
    key = f"tango:file_event:{PILATUS}"
    pubsub = _subscribe(client, key)
    pilatus = stack.proxy(PILATUS)
    files = start_pilatus_files(pilatus, "redis_", request)
    seen: list = []
    wait_until(
        lambda: any(e["file_path"].startswith(files) and e["done"] for e in drained(pubsub, seen, _data)),
        20,
        message="the file to be closed",
    )
    path = json.loads(pilatus.file_event)["file_path"]  # the server names its files
    mine = [e for e in seen if e["file_path"] == path]
    assert [(e["done"], e["success"]) for e in mine] == [(False, False), (True, True)]
    assert (
        mine[0]["file_type"] == "h5" and mine[0]["hinted_location"] == json.loads(pilatus.file_event)["hinted_location"]
    )
    assert mine[0]["device"] == PILATUS
    assert unpack(client.get(key)) == mine[-1]


def test_oav_image_preview(client):
    key = f"tango:{OAV}/image:preview"
    wait_until(lambda: client.xlen(key) >= 2, 10, message="OAV previews")
    entries = [unpack(fields[b"msg"]) for _, fields in client.xrange(key)]
    assert len(entries) <= 10
    frames = [e["frame"] for e in entries]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)
    assert entries[-1]["value"].ndim == 2 and entries[-1]["dtype"] == "|u1"
    assert client.ttl(key) > 0
    assert json.loads(client.hget(f"tango:{OAV}/image:meta", "shape"))[1] >= entries[-1]["shape"][1]


def test_a_murko_consumer_receives_a_forwarding_run(stack, client):
    """As mx-bluesky's redis_to_murko_forwarder listens: metadata on `murko`, then the frame by uuid."""
    import io

    from PIL import Image

    pubsub = _subscribe(client, "murko")
    bridge, oav = stack.proxy("sys/bridge/redis"), stack.proxy(OAV)
    bridge.StartOavForwarding([[20.0, 3.0], ["4711"]])
    received: list = []
    wait_until(
        lambda: "image_forwarding_complete" in drained(pubsub, received, lambda m: json.loads(m["data"])),
        20,
        message="a forwarding run and its end",
    )
    frames = [m for m in received if isinstance(m, dict)]
    assert len(frames) == 3 and received[-1] == "image_forwarding_complete"
    for metadata in frames:
        assert metadata["sample_id"] == 4711
        assert set(metadata) == {
            "sample_id", "microns_per_x_pixel", "microns_per_y_pixel", "beam_centre_i", "beam_centre_j",
            "omega_angle", "uuid",
        }  # fmt: skip
        assert isinstance(metadata["microns_per_x_pixel"], float) and isinstance(metadata["beam_centre_i"], int)
        assert metadata["microns_per_x_pixel"] == pytest.approx(oav.microns_per_pixel_x)
        assert metadata["beam_centre_j"] == oav.beam_centre_y
        assert metadata["omega_angle"] == pytest.approx(stack.proxy("sim/aerotech/omega").position, abs=1e-6)
        raw = client.hget("murko:4711:raw", metadata["uuid"])
        assert Image.open(io.BytesIO(raw)).format == "JPEG"
        assert json.loads(client.hget("murko:4711:metadata", metadata["uuid"])) == metadata
    assert metadata["uuid"].startswith("fullscreen-")
    assert client.ttl("murko:4711:raw") > 6 * 24 * 3600 and client.ttl("murko:4711:metadata") > 6 * 24 * 3600
    assert bridge.oav_forwarded_frames == 3
