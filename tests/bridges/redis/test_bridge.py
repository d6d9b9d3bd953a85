"""The RedisBridge server end to end: a real redis-server, the launcher, a feed server it follows."""

import json

import msgpack
import numpy as np
import pytest
import tango

from bridges.redis import unpack
from tango_servers.stack.waiting import wait_until


def _messages(pubsub, into: list) -> list:
    while (message := pubsub.get_message(timeout=0.01)) is not None:
        into.append(message)
    return into


def test_values_meta_and_stream_reach_redis(start_feed_stack):
    fs = start_feed_stack()
    fs.wait_followed()
    meta = {k.decode(): v.decode() for k, v in fs.redis.hgetall(fs.key("level", ":meta")).items()}
    assert meta["unit"] == "mm" and meta["label"] == "Level" and meta["format"] == "%.3f"
    assert float(meta["min_value"]) == -100 and float(meta["max_value"]) == 100
    assert meta["dtype"] == "<f8" and meta["data_format"] == "SCALAR"
    enum_meta = fs.redis.hgetall(fs.key("task_state", ":meta"))
    assert json.loads(enum_meta[b"enum_labels"]) == ["IDLE", "RUNNING", "DONE"]

    pubsub = fs.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(fs.key("level"))
    fs.feed.SetLevel(1.5)
    seen = wait_until(lambda: [m for m in _messages(pubsub, []) if unpack(m["data"])["value"] == 1.5], 10,
                      message="level 1.5 published")
    message = unpack(seen[0]["data"])
    assert message["quality"] == "ATTR_VALID" and message["severity"] == 0 and message["timestamp"] > 0
    assert unpack(fs.redis.get(fs.key("level")))["value"] == 1.5
    stream = fs.redis.xrange(fs.key("level", ":stream"))
    assert unpack(stream[-1][1][b"msg"])["value"] == 1.5
    assert unpack(fs.redis.get(fs.key("State")))["value"] == "ON"

    fs.feed.SetLevelUnit("um")
    wait_until(lambda: fs.redis.hget(fs.key("level", ":meta"), "unit") == b"um", 10,
               message="meta hash refreshed by the configuration event")
