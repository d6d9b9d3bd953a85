"""The bridge survives a redis-server crash mid-stream: it reports it, reconnects, and values resume."""

import tango

from bridges.redis import unpack
from tango_servers.stack.waiting import wait_until


def test_redis_restart_mid_stream_is_survived(private_redis, start_feed_stack):
    fs = start_feed_stack(redis_url=private_redis.url)
    fs.wait_followed()
    counter_key = fs.key("image_counter")
    fs.feed.StartImages(0.02)
    try:
        wait_until(lambda: unpack(fs.redis.get(counter_key))["value"] > 5, 10, message="frames streaming")

        private_redis.stop()
        wait_until(lambda: fs.bridge.State() == tango.DevState.ALARM, 10, message="the bridge to report the outage")
        assert fs.bridge.connected is False
        assert fs.bridge.redis_errors >= 1
        assert "unreachable" in fs.bridge.Status()
        down_at = fs.feed.image_counter

        private_redis.start()  # same port, empty: nothing was saved
        client = private_redis.client()
        wait_until(lambda: client.exists(counter_key), 20, message="the bridge to write its keys again")
        assert client.hget(fs.key("level", ":meta"), "unit") == b"mm", "meta hashes are written again too"
        wait_until(
            lambda: unpack(client.get(counter_key))["value"] > down_at + 5, 10, message="new values after the restart"
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(counter_key)
        wait_until(lambda: pubsub.get_message(timeout=0.05) is not None, 10, message="published values resume")
        wait_until(lambda: fs.bridge.State() == tango.DevState.ON, 10, message="the bridge back to ON")
        assert fs.bridge.connected is True
    finally:
        fs.feed.StopImages()
