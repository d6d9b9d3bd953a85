"""Fixtures for the Redis bridge tests: a private redis-server this test can stop and restart."""

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import tango

from tango_servers.stack.processes import free_port
from tango_servers.stack.testing import start_stack
from tango_servers.stack.waiting import wait_until


class PrivateRedis:
    """A redis-server on 127.0.0.1 owned by one test: `.url`, `.client()`, `.stop()`, `.start()`."""

    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.port = free_port()
        self.directory = directory
        self.password = password
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self, **options) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5.0, **options)

    def start(self) -> None:
        command = [
            shutil.which("redis-server") or "redis-server",
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - kept open for the process
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            with self.client() as client:
                return bool(client.ping())

        wait_until(answers, 15.0, interval=0.05, message=f"redis-server on port {self.port}")

    def stop(self) -> None:
        """SIGKILL the server (a crash: nothing saved) and reap it."""
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (make redis-server)")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_redis_with_password(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private redis-server that requires a password (kept across its restarts)."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (make redis-server)")
    server = PrivateRedis(tmp_path, password="bridge-secret")
    server.start()
    yield server
    server.stop()


FEED_SERVER = str(Path(__file__).with_name("feed_server.py"))
FEED_DEVICE = "test/feed/1"
BRIDGE_DEVICE = "sys/bridge/redis"


def bridge_config(redis_url: str | None = None, **properties: list[str]) -> dict:
    """A stack of the test feed server and the Redis bridge following it (quick discovery)."""
    bridge = {
        "devices": ["test/*/*"],
        "discovery_period": ["0.5"],
        "stream_attributes": ["level"],
        "oav_device": [FEED_DEVICE],
        "oav_image_attribute": ["image"],
        **properties,
    }
    if redis_url:
        bridge["redis_url"] = [redis_url]
    return {
        "servers": {
            "BridgeFeed": {"1": {"BridgeFeed": {FEED_DEVICE: {}}}},
            "RedisBridge": {"1": {"RedisBridge": {BRIDGE_DEVICE: {"properties": bridge}}}},
        }
    }


@dataclass
class FeedStack:
    """The feed server and the bridge on an isolated stack, with a Redis client beside them."""

    stack: Any
    redis: redis.Redis
    feed: tango.DeviceProxy
    bridge: tango.DeviceProxy
    device: str = FEED_DEVICE

    def key(self, attribute: str, suffix: str = "") -> str:
        return f"tango:{self.device}/{attribute}{suffix}"

    def wait_followed(self, timeout: float = 30.0) -> None:
        wait_until(
            lambda: self.redis.exists(self.key("level"), self.key("level", ":meta")) == 2,
            timeout,
            message="the bridge to mirror the feed device",
        )


def _feed_stack(stack: Any, redis_url: str | None) -> FeedStack:
    url = redis_url or stack.redis_url
    assert url, "the stack has no redis_url"
    client = redis.Redis.from_url(url, socket_timeout=5.0)
    return FeedStack(stack, client, stack.proxy(FEED_DEVICE), stack.proxy(BRIDGE_DEVICE))


EXTRA_SERVERS = {"BridgeFeed": f"{FEED_SERVER}:main"}


@pytest.fixture
def start_feed_stack(make_stack) -> Callable[..., FeedStack]:
    """Start feed + bridge for one test: `start_feed_stack()` uses the launcher's redis-server,
    `start_feed_stack(redis_url=...)` a redis-server of the test's own (the launcher starts none)."""

    def start(redis_url: str | None = None, **properties: list[str]) -> FeedStack:
        config = bridge_config(redis_url, **properties)
        return _feed_stack(make_stack(config, extra_servers=EXTRA_SERVERS, redis=redis_url is None), redis_url)

    return start


@pytest.fixture(scope="module")
def shared_feed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeedStack]:
    """Feed + bridge + the launcher's redis-server, shared by the non-destructive tests of a module."""
    stack = start_stack(
        tmp_path_factory.mktemp("redis-feed"),
        config=bridge_config(preview_period=["0.2"], preview_maxlen=["3"], preview_expiry=["30"]),
        extra_servers=EXTRA_SERVERS,
    )
    try:
        feed = _feed_stack(stack, None)
        feed.wait_followed()
        yield feed
    finally:
        down_with_redis(stack)


def down_with_redis(stack: Any) -> None:
    """`stack.down()`, then stop the stack's redis-server if it outlived it.

    The launcher recognises its processes by a marker in /proc/PID/environ, which redis-server
    wipes when it sets its process title; until the launcher knows better, stop it here, by PID,
    only when its working directory (its --dir) is inside this stack's state directory.
    """
    try:
        pid = stack.component("redis")["pid"]
    except KeyError:
        pid = None
    stack.down()
    if not pid:
        return
    with contextlib.suppress(OSError):
        if os.readlink(f"/proc/{pid}/cwd").startswith(str(stack.state_dir)):
            os.kill(pid, signal.SIGTERM)


def start_pilatus_files(pilatus: tango.DeviceProxy, prefix: str, request: Any) -> str:
    """Start a 2-frame internal-trigger acquisition saving into the detector's own folder (in its
    data root) under a unique `prefix`; the start of the files' paths is returned. The detector's
    settings are put back at the end of the test (the session stack is shared)."""
    prefix = f"{prefix}{uuid.uuid4().hex[:8]}_"
    pilatus.abortAcq()
    wait_until(lambda: pilatus.acq_status in ("Ready", "Fault"), 10, message="Pilatus idle")
    settings = {
        "saving_prefix": prefix,
        "saving_next_number": 0,
        "saving_mode": "AUTO_FRAME",
        "saving_overwrite_policy": "ABORT",
        "acq_trigger_mode": "INTERNAL_TRIGGER",
        "acq_nb_frames": 2,
        "acq_expo_time": 0.01,
    }
    before = {name: pilatus.read_attribute(name).value for name in settings}
    request.addfinalizer(lambda: [setattr(pilatus, name, value) for name, value in before.items()])
    for name, value in settings.items():
        setattr(pilatus, name, value)
    pilatus.prepareAcq()
    pilatus.startAcq()
    return str(Path(pilatus.saving_directory) / prefix)
