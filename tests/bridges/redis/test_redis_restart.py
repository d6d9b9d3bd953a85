"""The bridge survives restarts: of redis-server mid-stream, and of a server it follows."""

import tango

from bridges.redis import unpack
from tango_servers.stack.waiting import wait_until

from .conftest import BRIDGE_DEVICE, EXTRA_SERVERS, bridge_config


def test_redis_restart_mid_stream_is_survived(private_redis_with_password, start_feed_stack):
    redis_server = private_redis_with_password
    # The password goes in its own property, not in the URL.
    plain_url = redis_server.url.replace(f":{redis_server.password}@", "")
    fs = start_feed_stack(redis_url=plain_url, redis_password=[redis_server.password])
    fs.redis = redis_server.client()
    fs.wait_followed()
    assert "bridge-secret" not in fs.bridge.redis_location + fs.bridge.Status()
    counter_key = fs.key("image_counter")
    fs.feed.StartImages(0.02)
    try:
        wait_until(lambda: unpack(fs.redis.get(counter_key))["value"] > 5, 10, message="frames streaming")

        redis_server.stop()
        wait_until(lambda: fs.bridge.State() == tango.DevState.ALARM, 10, message="the bridge to report the outage")
        assert fs.bridge.connected is False
        assert fs.bridge.redis_errors >= 1
        assert "unreachable" in fs.bridge.Status()
        down_at = fs.feed.image_counter

        redis_server.start()  # same port, empty: nothing was saved
        client = redis_server.client()
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


def test_restart_of_a_followed_server_is_reported_and_values_resume(private_redis, start_feed_stack):
    fs = start_feed_stack(redis_url=private_redis.url)
    fs.wait_followed()
    key = fs.key("level")
    pubsub = fs.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(key)
    old_pid = fs.stack.kill_server("BridgeFeed/1")
    error = wait_until(
        lambda: next(
            (m for m in iter(lambda: pubsub.get_message(timeout=0.05), None) if unpack(m["data"]).get("error")), None
        ),
        20,
        message="an error message while the feed server is down",
    )
    message = unpack(error["data"])
    assert message["value"] is None and message["severity"] == 3 and message["quality"] == "ATTR_INVALID"
    fs.stack.wait_server_back("BridgeFeed/1", old_pid)
    feed = fs.stack.proxy("test/feed/1")
    wait_until(lambda: feed.ping() >= 0, 20, message="the feed server answering")

    def resumed() -> bool:
        feed.SetLevel(7.25)
        return unpack(fs.redis.get(key)).get("value") == 7.25

    wait_until(resumed, 30, interval=0.5, message="values of the restarted server in Redis")
    assert fs.bridge.State() == tango.DevState.ON


def test_a_tls_url_is_refused_with_a_clear_status_and_the_server_stays_up(make_stack):
    running = make_stack(bridge_config("rediss://127.0.0.1:6380/0"), extra_servers=EXTRA_SERVERS, redis=False)
    bridge = running.proxy(BRIDGE_DEVICE)
    assert bridge.state() == tango.DevState.FAULT
    status = bridge.status()
    assert "redis_url" in status and "TLS (rediss://) is not supported" in status and "\n" not in status
    bridge.ping()  # the server keeps running


def test_a_flushall_is_noticed_and_the_static_keys_written_again(
    private_redis_with_password, start_feed_stack, monkeypatch
):
    redis_server = private_redis_with_password
    # The password comes from an environment variable the property names, not from the database.
    monkeypatch.setenv("FEED_REDIS_SECRET", redis_server.password)
    plain_url = redis_server.url.replace(f":{redis_server.password}@", "")
    fs = start_feed_stack(redis_url=plain_url, redis_password_env=["FEED_REDIS_SECRET"], layout=["tango", "bec"])
    fs.redis = redis_server.client()
    fs.wait_followed()
    fs.feed.SetLevel(3.5)
    wait_until(lambda: unpack(fs.redis.get(fs.key("level")))["value"] == 3.5, 10, message="level in Redis")
    assert fs.bridge.resyncs == 0

    fs.redis.flushall()
    assert not fs.redis.exists(fs.key("level", ":meta"))
    wait_until(
        lambda: fs.redis.exists(fs.key("level", ":meta"), fs.key("level"), "info/devices/readback/feed_1") == 3,
        10,
        message="the meta hash, the value and BEC's readback written again after FLUSHALL",
    )
    assert fs.redis.hget(fs.key("level", ":meta"), "unit") == b"mm"
    assert unpack(fs.redis.get(fs.key("level")))["value"] == 3.5, "the last value, not a stale one"
    assert fs.bridge.resyncs == 1
    assert fs.bridge.State() == tango.DevState.ON


def test_a_bad_layout_is_refused_with_the_allowed_values_and_the_server_stays_up(make_stack):
    config = bridge_config("redis://127.0.0.1:1/0", layout=["tango", "epics"])
    running = make_stack(config, extra_servers=EXTRA_SERVERS, redis=False)
    bridge = running.proxy(BRIDGE_DEVICE)
    assert bridge.state() == tango.DevState.FAULT
    status = bridge.status()
    assert "layout epics is not one of: tango, bec" in status and "\n" not in status
    bridge.ping()
