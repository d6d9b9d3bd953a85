"""The Redis side of the bridge against a real redis-server: serialisation, pipelining, reconnection."""

import numpy as np
import pytest
import redis

from bridges.redis._publisher import (
    _HASH,
    _HSET_EXPIRE_PUBLISH,
    _PUBLISH,
    _SET,
    _SET_PUBLISH,
    _XADD,
    RedisPublisher,
    _encode,
    redact_url,
)
from bridges.redis._serialisation import pack, unpack, value_message
from tango_servers.stack.testing import drained
from tango_servers.stack.waiting import wait_until


def _data(message: dict) -> dict:
    return unpack(message["data"])


def test_scalar_message_round_trip():
    message = unpack(pack(value_message(1.5, 1700000000.25, "ATTR_WARNING")))
    assert message == {"value": 1.5, "timestamp": 1700000000.25, "quality": "ATTR_WARNING", "severity": 1}


def test_array_travels_as_raw_bytes_with_dtype_and_shape():
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    packed = pack(value_message(image, 1.0, "ATTR_VALID", frame=7))
    raw = __import__("msgpack").unpackb(packed)
    assert raw["dtype"] == "<u2" and raw["shape"] == [3, 4] and raw["value"] == image.tobytes()
    message = unpack(packed)
    np.testing.assert_array_equal(message["value"], image)
    assert message["frame"] == 7


def test_encoded_error_and_string_values():
    encoded = unpack(pack(value_message(("jpeg", b"\xff\xd8"), 1.0, "ATTR_VALID")))
    assert encoded["value"] == b"\xff\xd8" and encoded["encoding"] == "jpeg"
    failed = unpack(pack(value_message(None, 2.0, "ATTR_INVALID", error="device down")))
    assert failed["value"] is None and failed["error"] == "device down" and failed["severity"] == 3
    strings = unpack(pack(value_message(np.array(["a", "b"]), 3.0, "ATTR_VALID")))
    assert strings["value"] == ["a", "b"]


def test_password_is_redacted():
    assert redact_url("redis://bridge:secret@127.0.0.1:6379/0") == "redis://bridge:***@127.0.0.1:6379/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@pytest.fixture
def publisher(private_redis):
    publisher = RedisPublisher(private_redis.url, backoff=(0.05, 0.2)).start()
    wait_until(lambda: publisher.connected, 10, message="publisher connected")
    yield publisher
    publisher.close()


def test_values_are_set_and_published(private_redis, publisher):
    client = private_redis.client()
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("tango:sim/x/1/position")
    for i in range(100):
        publisher.set_and_publish("tango:sim/x/1/position", pack(value_message(float(i), i, "ATTR_VALID")))
    assert publisher.flush(5)
    assert unpack(client.get("tango:sim/x/1/position"))["value"] == 99.0
    seen = []
    wait_until(lambda: len(drained(pubsub, seen, _data)) == 100, 5, message="100 published values")
    assert [m["value"] for m in seen] == [float(i) for i in range(100)]
    status = publisher.status()
    assert status.written == 100 and status.errors == 0 and status.connected


def test_streams_are_capped_and_previews_expire(private_redis, publisher):
    client = private_redis.client()
    for i in range(50):
        publisher.add_to_stream("k:preview", pack({"frame": i}), 5, approximate=False, expire_s=30)
    assert publisher.flush(5)
    entries = client.xrange("k:preview")
    assert [unpack(fields[b"msg"])["frame"] for _, fields in entries] == list(range(45, 50))
    assert 0 < client.ttl("k:preview") <= 30


def test_restart_of_redis_is_survived_and_state_written_again(private_redis, publisher):
    publisher.set_and_publish("tango:a", pack(value_message(1, 1.0, "ATTR_VALID")))
    publisher.set_hash("tango:a:meta", {"unit": "mm"})
    assert publisher.flush(5)
    private_redis.stop()
    # Writes while Redis is down must not raise; the last value is kept for later.
    publisher.set_and_publish("tango:a", pack(value_message(2, 2.0, "ATTR_VALID")))
    publisher.add_to_stream("tango:a:stream", b"x", 10)
    wait_until(lambda: not publisher.connected, 10, message="publisher notices the outage")
    publisher.set_and_publish("tango:a", pack(value_message(3, 3.0, "ATTR_VALID")))
    assert publisher.status().errors >= 1 and "Redis" in publisher.status().last_error
    private_redis.start()
    client = private_redis.client()
    wait_until(lambda: client.get("tango:a") is not None, 15, message="value written again after restart")
    assert unpack(client.get("tango:a"))["value"] == 3
    assert client.hgetall("tango:a:meta") == {b"unit": b"mm"}
    assert publisher.status().dropped >= 1
    publisher.set_and_publish("tango:a", pack(value_message(4, 4.0, "ATTR_VALID")))
    assert publisher.flush(5)
    assert unpack(client.get("tango:a"))["value"] == 4


def test_acl_user_and_password(private_redis):
    admin = private_redis.client()
    admin.acl_setuser("bridge", enabled=True, passwords=["+s3cret"], keys=["*"], channels=["*"], commands=["+@all"])
    url = private_redis.url.replace("redis://", "redis://bridge:s3cret@")
    publisher = RedisPublisher(url).start()
    try:
        wait_until(lambda: publisher.connected, 10, message="ACL user connects")
        assert "s3cret" not in publisher.status().url
        publisher.set_and_publish("tango:acl", b"\x01")
        assert publisher.flush(5)
        assert admin.get("tango:acl") == b"\x01"
    finally:
        publisher.close()


def test_wrong_password_reports_instead_of_raising(private_redis):
    url = private_redis.url.replace("redis://", "redis://nobody:wrong@")
    publisher = RedisPublisher(url, backoff=(0.05, 0.1)).start()
    try:
        publisher.set_and_publish("tango:x", b"1")
        wait_until(lambda: publisher.status().errors >= 2, 10, message="auth errors counted")
        assert not publisher.connected
        assert "refused" in publisher.status().last_error or "Redis" in publisher.status().last_error
    finally:
        publisher.close(timeout=1)


def test_big_payloads_are_written_and_published_whole(private_redis, publisher):
    client = private_redis.client()
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("tango:big")
    image = np.arange(480 * 640, dtype=np.uint16).reshape(480, 640)
    payload = pack(value_message(image, 1.0, "ATTR_VALID", frame=3))
    assert len(payload) > 64 * 1024
    publisher.set_and_publish("tango:small", b"1")
    publisher.set_and_publish("tango:big", payload)
    publisher.set_and_publish("tango:small", b"2")
    assert publisher.flush(5)
    np.testing.assert_array_equal(unpack(client.get("tango:big"))["value"], image)
    assert client.get("tango:small") == b"2"
    message = wait_until(lambda: pubsub.get_message(timeout=0.05), 5, message="the big message")
    assert message["data"] == payload


def test_a_refused_command_is_counted_and_writing_goes_on(private_redis, publisher):
    client = private_redis.client()
    client.set("tango:not-a-stream", b"x")
    publisher.add_to_stream("tango:not-a-stream", b"1", 10)
    publisher.set_and_publish("tango:after", b"ok")
    assert publisher.flush(5)
    status = publisher.status()
    assert status.errors == 1 and "WRONGTYPE" in status.last_error and status.connected
    assert client.get("tango:after") == b"ok"


def _redis_py_bytes(build) -> bytes:
    """What redis-py's own pipeline sends for the commands `build(pipeline)` queues (nothing is sent)."""
    pipeline = redis.Redis(host="127.0.0.1", port=1).pipeline(transaction=False)
    build(pipeline)
    connection = redis.connection.Connection()
    return b"".join(connection.pack_commands([args for args, _ in pipeline.command_stack]))


def _encoded(*ops) -> bytes:
    buffers, _ = _encode(list(ops))
    return b"".join(buffers)


def test_resp_writer_matches_redis_py_byte_for_byte():
    big = bytes(range(256)) * 300  # past the size sent as its own buffer
    payload = pack(value_message(1.5, 2.0, "ATTR_VALID"))

    def expected(pipe):
        pipe.set("tango:k", payload)
        pipe.publish("tango:k", payload)
        pipe.set("tango:big", big)
        pipe.publish("tango:big", big)
        pipe.xadd("tango:s", {"msg": payload}, maxlen=1000, approximate=True)
        pipe.xadd("info/p", {"data": payload}, maxlen=10, approximate=False)
        pipe.expire("info/p", 60)
        pipe.execute_command("MULTI")
        pipe.delete("tango:m")
        pipe.hset("tango:m", mapping={"unit": "mm", "min_value": "0.5"})
        pipe.execute_command("EXEC")
        pipe.publish("tango:m", b"note")
        pipe.hset("tango:h", "frame", big)
        pipe.expire("tango:h", 5)
        pipe.publish("tango:c", b"n")
        pipe.set("tango:sentinel", b"x")
        pipe.publish("murko", b"done")

    written = _encoded(
        (_SET_PUBLISH, "tango:k", payload),
        (_SET_PUBLISH, "tango:big", big),
        (_XADD, "tango:s", payload, 1000, True, None, "msg"),
        (_XADD, "info/p", payload, 10, False, 60, "data"),
        (_HASH, "tango:m", {"unit": "mm", "min_value": "0.5"}, b"note"),
        (_HSET_EXPIRE_PUBLISH, "tango:h", "frame", big, 5, "tango:c", b"n"),
        (_SET, "tango:sentinel", b"x"),
        (_PUBLISH, "murko", b"done"),
    )
    assert written == _redis_py_bytes(expected)


def test_tls_urls_are_refused_in_one_clear_line():
    with pytest.raises(ValueError, match=r"TLS \(rediss://\) is not supported") as info:
        RedisPublisher("rediss://user:secret@127.0.0.1:6380/0")
    assert "\n" not in str(info.value) and "secret" not in str(info.value)
