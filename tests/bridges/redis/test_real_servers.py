"""The Redis bridge of the shipped stack mirrors the real (simulated) servers: Aerotech, Pilatus, OAV."""

import json
import uuid
from pathlib import Path

import pytest

from bridges.redis import unpack
from tango_servers.stack.testing import drained
from tango_servers.stack.waiting import wait_until

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
    pilatus.abortAcq()
    wait_until(lambda: pilatus.acq_status in ("Ready", "Fault"), 10, message="Pilatus idle")
    settings = {
        "saving_prefix": f"redis_{uuid.uuid4().hex[:8]}_",  # into the stack's data folder, its data root
        "saving_next_number": 0,
        "saving_mode": "AUTO_FRAME",
        "saving_overwrite_policy": "ABORT",
        "acq_trigger_mode": "INTERNAL_TRIGGER",
        "acq_nb_frames": 2,
        "acq_expo_time": 0.01,
    }
    # The session stack is shared: put the detector back as this test found it.
    before = {name: pilatus.read_attribute(name).value for name in settings}
    request.addfinalizer(lambda: [setattr(pilatus, name, value) for name, value in before.items()])
    for name, value in settings.items():
        setattr(pilatus, name, value)
    pilatus.prepareAcq()
    pilatus.startAcq()
    path = str(Path(pilatus.saving_directory) / f"{settings['saving_prefix']}0000.h5")
    seen: list = []
    wait_until(
        lambda: any(e["file_path"] == path and e["done"] for e in drained(pubsub, seen, _data)),
        20,
        message="the file to be closed",
    )
    mine = [e for e in seen if e["file_path"] == path]
    assert [(e["done"], e["success"]) for e in mine] == [(False, False), (True, True)]
    assert mine[0]["file_type"] == "h5" and mine[0]["hinted_location"] == {"data": "/entry/instrument/detector/data"}
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


def test_oav_forwarder_with_the_oav_jpeg(stack, client):
    bridge = stack.proxy("sys/bridge/redis")
    bridge.StartOavForwarding([[20.0, 3.0], ["real-1"]])
    wait_until(lambda: not bridge.oav_forwarding and bridge.oav_forwarded_frames == 3, 20, message="3 frames")
    fields = client.hgetall("murko:real-1:raw")
    assert len(fields) == 3 and all(v.startswith(b"\xff\xd8") for v in fields.values())
    assert all(name.decode().startswith("fullscreen-") for name in fields)
    assert client.ttl("murko:real-1:raw") > 6 * 24 * 3600
