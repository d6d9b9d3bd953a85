"""Writing to Redis from one thread: a pipeline per burst, reconnect with backoff, never raising.

Callers (subscription callbacks, the OAV forwarder) hand over ready-made payloads and return at
once. One writer thread sends everything queued so far as one pipeline, so a burst of N updates
costs one round trip; right after a write it lets the next updates gather for a moment, so
updates arriving one by one do not each pay a round trip either. The few commands the bridge
sends are encoded to RESP here and written on a plain socket, replies parsed by hiredis: a few
microseconds per update where redis-py's pipeline objects cost several times that. (redis-py
still parses the URL.)

When Redis goes away the writer keeps the last value of every key (values, meta hashes, events),
drops what has no "last value" (stream entries, previews, forwarded frames; counted in
`dropped`), reconnects with exponential backoff and writes the remembered keys again, so a
restarted, empty Redis is whole again without waiting for changes. A Redis that loses the keys
without dropping the connection (FLUSHALL, FLUSHDB, a restart between two writes) is noticed by
a sentinel key the writer checks every `check_period`: when it is gone, the remembered keys are
written again the same way.
"""

import contextlib
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hiredis
import redis
from redis.connection import parse_url

from ..core import RateMeter

log = logging.getLogger(__name__)

# Operation codes; ops are plain tuples because thousands are built per second.
_SET_PUBLISH = 0  # (op, key, payload)
_XADD = 1  # (op, key, payload, maxlen, approximate, expire_s or None, field)
_HASH = 2  # (op, key, mapping, payload published on key or None)
_HSET_EXPIRE_PUBLISH = 3  # (op, key, field, data, expire_s, channel, notification)
_SET = 4  # (op, key, payload)
_PUBLISH = 5  # (op, channel, payload)

_CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError, hiredis.ProtocolError)
# Payloads at least this big are sent as their own buffer instead of being copied into the batch.
_BIG = 64 * 1024


def redact_url(url: str) -> str:
    """The URL with any password replaced by '***', for status text and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class PublisherStatus:
    """A snapshot of the writer, what the bridge's status attributes show."""

    connected: bool
    url: str  # password redacted
    errors: int  # failed connections, failed pipelines and failed commands
    last_error: str
    written: int  # operations Redis accepted
    dropped: int  # operations given up (queue full, or no last value to resend)
    queued: int
    update_rate: float  # operations written per second, recent
    reconnects: int
    resyncs: int  # times the remembered keys were written again after Redis lost them (flush)


class RedisPublisher:
    """The bridge's only Redis client. Thread-safe submit methods; one writer thread."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        socket_timeout: float = 2.0,
        backoff: tuple[float, float] = (0.1, 5.0),
        max_queue: int = 200_000,
        max_batch: int = 4096,
        min_write_interval: float = 0.0005,
        sentinel_key: str | None = None,
        check_period: float = 1.0,
    ) -> None:
        self.url = redact_url(url)
        self._address = RedisAddress.from_url(url, username=username, password=password, timeout=socket_timeout)
        self._connection: RespConnection | None = None
        self._backoff_min, self._backoff_max = backoff
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._min_write_interval = min_write_interval
        self._last_write = 0.0
        self._sentinel = sentinel_key
        self._check_period = check_period
        self._next_check = 0.0
        self._resyncs = 0

        self._cond = threading.Condition()
        self._queue: deque[tuple] = deque()
        self._writer_waiting = False  # the writer sleeps on `_cond` until something is queued
        self._connected = False
        self._values: dict[str, bytes] = {}  # resent with SET + PUBLISH
        self._plain_values: dict[str, bytes] = {}  # resent with SET
        self._hashes: dict[str, Mapping[str, Any]] = {}
        self._submitted = 0
        self._completed = 0
        self._errors = 0
        self._last_error = ""
        self._written = 0
        self._dropped = 0
        self._reconnects = 0
        self._rate = RateMeter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redis-writer", daemon=True)

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> "RedisPublisher":
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop the writer (what is queued is written first while Redis answers) and disconnect."""
        self.flush(timeout)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._disconnect()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far was written or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            while self._completed < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(remaining)
        return True

    @property
    def connected(self) -> bool:
        return self._connected

    def status(self) -> PublisherStatus:
        with self._cond:
            return PublisherStatus(
                connected=self._connected,
                url=self.url,
                errors=self._errors,
                last_error=self._last_error,
                written=self._written,
                dropped=self._dropped,
                queued=len(self._queue),
                update_rate=self._rate.rate(),
                reconnects=self._reconnects,
                resyncs=self._resyncs,
            )

    # -- submitting (any thread) ------------------------------------------------------------
    def set_and_publish(self, key: str, payload: bytes) -> None:
        """SET key payload and PUBLISH it on the channel `key`; remembered for resync."""
        self._submit((_SET_PUBLISH, key, payload), value=(key, payload))

    def set(self, key: str, payload: bytes) -> None:
        """SET key payload (no PUBLISH); remembered for resync."""
        self._submit((_SET, key, payload), plain=(key, payload))

    def set_hash(self, key: str, mapping: Mapping[str, Any], notification: bytes | None = None) -> None:
        """Replace the hash at `key` with `mapping` (and PUBLISH `notification` on `key`); remembered."""
        self._submit((_HASH, key, dict(mapping), notification), hash_=(key, mapping))

    def add_to_stream(
        self,
        key: str,
        payload: bytes,
        maxlen: int,
        *,
        approximate: bool = True,
        expire_s: int | None = None,
        field: str = "msg",
    ) -> None:
        """XADD key MAXLEN [~] maxlen * field payload (then EXPIRE key); dropped while disconnected."""
        self._submit((_XADD, key, payload, maxlen, approximate, expire_s, field))

    def hset_with_expiry(
        self, key: str, field: str, data: bytes, expire_s: int, channel: str, notification: bytes | str
    ) -> bool:
        """HSET key field data, EXPIRE key, PUBLISH channel notification; False if dropped now."""
        return self._submit((_HSET_EXPIRE_PUBLISH, key, field, data, expire_s, channel, notification))

    def publish(self, channel: str, payload: bytes | str) -> bool:
        """PUBLISH channel payload (nothing remembered); False if dropped now."""
        return self._submit((_PUBLISH, channel, payload))

    def _submit(
        self,
        op: tuple,
        value: tuple[str, bytes] | None = None,
        hash_: tuple[str, Mapping[str, Any]] | None = None,
        plain: tuple[str, bytes] | None = None,
    ) -> bool:
        with self._cond:
            if value is not None:
                self._values[value[0]] = value[1]
            elif hash_ is not None:
                self._hashes[hash_[0]] = hash_[1]
            elif plain is not None:
                self._plain_values[plain[0]] = plain[1]
            if not self._connected:
                # Remembered keys are resent on reconnection; the rest has nowhere to go.
                if value is None and hash_ is None and plain is None:
                    self._dropped += 1
                return False
            if len(self._queue) >= self._max_queue:
                self._queue.popleft()
                self._dropped += 1
                self._completed += 1
            self._queue.append(op)
            self._submitted += 1
            if self._writer_waiting:  # wake the writer once per burst, not per update
                self._writer_waiting = False
                self._cond.notify_all()
            return True

    # -- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        backoff = self._backoff_min
        while not self._stop.is_set():
            if not self._connected:
                if self._connect_and_resync():
                    backoff = self._backoff_min
                else:
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self._backoff_max)
                continue
            batch = self._take_batch()
            if batch:
                self._write(batch)
                self._last_write = time.monotonic()
            if self._sentinel and self._connected and time.monotonic() >= self._next_check:
                self._check_sentinel(self._sentinel)

    def _take_batch(self) -> list[tuple] | deque[tuple]:
        with self._cond:
            if not self._queue:
                self._writer_waiting = True
                self._cond.wait(0.5)
                self._writer_waiting = False
                if not self._queue:
                    return []
        # Updates arriving one by one would each cost a round trip (syscalls and thread wake-ups
        # dominate); right after a write, let the next ones gather for a moment instead. An update
        # after a quiet spell is written at once.
        linger = self._last_write + self._min_write_interval - time.monotonic()
        if linger > 0:
            time.sleep(linger)
        with self._cond:
            queue = self._queue
            if len(queue) <= self._max_batch:  # the usual case: take the whole queue at once
                self._queue = deque()
                return queue
            return [queue.popleft() for _ in range(self._max_batch)]

    def _write(self, batch: list[tuple] | deque[tuple]) -> None:
        buffers, replies = _encode(batch)
        connection = self._connection
        failed: list[Exception] = []
        try:
            if connection is None:
                raise redis.ConnectionError("not connected")
            connection.send(buffers)
            failed = [reply for reply in connection.replies(replies) if isinstance(reply, hiredis.ReplyError)]
        except _CONNECTION_ERRORS as exc:
            self._lost_connection(exc, batch)
            return
        if failed:
            self._record_error(f"Redis refused {len(failed)} commands, e.g.: {failed[0]}", count=len(failed))
        self._finish(len(batch), written=len(batch))

    def _finish(self, count: int, written: int) -> None:
        with self._cond:
            self._completed += count
            self._written += written
            self._cond.notify_all()
        if written:
            self._rate.tick(written)

    def _record_error(self, text: str, count: int = 1) -> None:
        with self._cond:
            self._errors += count
            if text != self._last_error:
                log.warning("%s", text)
            self._last_error = text

    def _lost_connection(self, exc: BaseException, batch: list[tuple] | deque[tuple]) -> None:
        with self._cond:
            self._connected = False
            pending = [*batch, *self._queue]
            self._queue.clear()
            self._dropped += sum(1 for op in pending if op[0] in (_XADD, _HSET_EXPIRE_PUBLISH, _PUBLISH))
            self._completed += len(pending)
            self._cond.notify_all()
        self._record_error(f"lost the connection to Redis at {self.url}: {exc}; reconnecting")
        self._disconnect()

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _connect_and_resync(self) -> bool:
        try:
            connection = RespConnection.open(self._address)
        except _CONNECTION_ERRORS as exc:
            self._record_error(f"cannot reach Redis at {self.url}: {exc}; retrying with backoff")
            return False
        except redis.ResponseError as exc:  # e.g. wrong password: keep trying, the operator may fix Redis
            self._record_error(f"Redis at {self.url} refused the connection: {exc}")
            return False
        self._connection = connection
        with self._cond:
            self._connected = True
            self._reconnects += 1
        # Resend the last known state: after a Redis restart the keys are gone.
        count = self._resync()
        if count < 0:
            return False
        log.info("connected to Redis at %s, %d keys written again", self.url, count)
        return True

    def _resync(self) -> int:
        """Write every remembered hash and value again, then the sentinel; -1 if the connection broke."""
        with self._cond:
            values = list(self._values.items())
            hashes = list(self._hashes.items())
            plain = list(self._plain_values.items())
        ops: list[tuple] = [(_HASH, key, dict(mapping), None) for key, mapping in hashes]
        ops += [(_SET_PUBLISH, key, payload) for key, payload in values]
        ops += [(_SET, key, payload) for key, payload in plain]
        if self._sentinel:
            ops.append((_SET, self._sentinel, b"written by the Redis bridge; its absence means a flush"))
        for start in range(0, len(ops), self._max_batch):
            chunk = ops[start : start + self._max_batch]
            with self._cond:
                self._submitted += len(chunk)
            self._write(chunk)
            if not self._connected:
                return -1
        self._next_check = time.monotonic() + self._check_period
        return len(ops)

    def _check_sentinel(self, key: str) -> None:
        """Write everything again when the sentinel key is gone (FLUSHALL, restart between writes)."""
        self._next_check = time.monotonic() + self._check_period
        connection = self._connection
        if connection is None:
            return
        try:
            present = connection.call(b"EXISTS", key)
        except _CONNECTION_ERRORS as exc:
            self._lost_connection(exc, [])
            return
        except redis.ResponseError as exc:
            self._record_error(f"Redis refused EXISTS {key}: {exc}")
            return
        if present:
            return
        with self._cond:
            self._resyncs += 1
        count = self._resync()
        if count >= 0:
            log.warning("Redis at %s lost the bridge's keys (flushed?); %d keys written again", self.url, count)


@dataclass(frozen=True)
class RedisAddress:
    """Where and as whom to connect, from a redis:// or unix:// URL (TLS is not supported)."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # unix socket
    db: int = 0
    username: str | None = None
    password: str | None = None
    timeout: float = 2.0

    @classmethod
    def from_url(
        cls, url: str, *, username: str | None = None, password: str | None = None, timeout: float = 2.0
    ) -> "RedisAddress":
        scheme = urlsplit(url).scheme
        if scheme == "rediss":
            raise ValueError(
                f"Redis URL {redact_url(url)}: TLS (rediss://) is not supported by the Redis bridge; "
                "use redis://host:port/db on a trusted network or unix:///path"
            )
        if scheme not in ("redis", "unix"):
            raise ValueError(f"Redis URL {redact_url(url)}: use redis://host:port/db or unix:///path (not {scheme}://)")
        parts = parse_url(url)
        return cls(
            host=parts.get("host") or "127.0.0.1",
            port=int(parts.get("port") or 6379),
            path=parts.get("path"),
            db=int(parts.get("db") or 0),
            username=username or parts.get("username"),
            password=password or parts.get("password"),
            timeout=timeout,
        )


class RespConnection:
    """One socket speaking RESP2: AUTH and SELECT at open, then buffers out and replies in."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = hiredis.Reader()

    @classmethod
    def open(cls, address: RedisAddress) -> "RespConnection":
        """Connect and authenticate; raises OSError/ConnectionError, or ResponseError when refused."""
        if address.path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(address.timeout)
            sock.connect(address.path)
        else:
            sock = socket.create_connection((address.host, address.port), timeout=address.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = cls(sock)
        try:
            if address.password:
                user = [address.username] if address.username else []
                connection.call(b"AUTH", *user, address.password)
            if address.db:
                connection.call(b"SELECT", address.db)
            connection.call(b"PING")
        except BaseException:
            connection.close()
            raise
        return connection

    def call(self, *args: bytes | str | int) -> Any:
        """One command and its reply; an error reply raises redis.ResponseError."""
        self.send([_command(*args)])
        (reply,) = self.replies(1)
        if isinstance(reply, hiredis.ReplyError):
            raise redis.ResponseError(str(reply))
        return reply

    def send(self, buffers: list[bytes]) -> None:
        for buffer in buffers:
            self._sock.sendall(buffer)

    def replies(self, count: int) -> list[Any]:
        """The next `count` replies, error replies as hiredis.ReplyError instances."""
        replies: list[Any] = []
        while len(replies) < count:
            reply = self._reader.gets()
            if reply is False:
                data = self._sock.recv(1 << 16)
                if not data:
                    raise redis.ConnectionError("Redis closed the connection")
                self._reader.feed(data)
            else:
                replies.append(reply)
        return replies

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


def _bulk(item: bytes | str | int | float) -> bytes:
    if not isinstance(item, bytes | bytearray | memoryview):
        item = str(item).encode()
    return b"$%d\r\n%s\r\n" % (len(item), item)


def _command(*args: bytes | str | int | float) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(_bulk(a) for a in args)


def _encode(batch: list[tuple] | deque[tuple]) -> tuple[list[bytes], int]:
    """RESP bytes of a batch of ops (big payloads as separate buffers) and the number of replies."""
    buffers: list[bytes] = []
    small: list[bytes] = []
    replies = 0
    for op in batch:
        code = op[0]
        if code == _SET_PUBLISH:
            key, payload = op[1], op[2]
            key_part = _bulk(key)
            if len(payload) >= _BIG:
                size = b"$%d\r\n" % len(payload)
                small.append(b"*3\r\n$3\r\nSET\r\n" + key_part + size)
                buffers += [b"".join(small), payload]
                small = [b"\r\n*3\r\n$7\r\nPUBLISH\r\n" + key_part + size]
                buffers += [b"".join(small), payload]
                small = [b"\r\n"]
            else:
                value_part = _bulk(payload)
                small.append(b"*3\r\n$3\r\nSET\r\n" + key_part + value_part)
                small.append(b"*3\r\n$7\r\nPUBLISH\r\n" + key_part + value_part)
            replies += 2
        elif code == _XADD:
            _, key, payload, maxlen, approximate, expire_s, field = op
            small.append(
                _command(b"XADD", key, b"MAXLEN", b"~", maxlen, b"*", field, payload)
                if approximate
                else _command(b"XADD", key, b"MAXLEN", maxlen, b"*", field, payload)
            )
            replies += 1
            if expire_s:
                small.append(_command(b"EXPIRE", key, expire_s))
                replies += 1
        elif code == _HASH:
            _, key, mapping, notification = op
            # Replaced in a transaction: a reader never sees the hash empty or half written.
            small.append(b"*1\r\n$5\r\nMULTI\r\n" + _command(b"DEL", key))
            replies += 2
            if mapping:
                small.append(_command(b"HSET", key, *(part for pair in mapping.items() for part in pair)))
                replies += 1
            small.append(b"*1\r\n$4\r\nEXEC\r\n")
            replies += 1
            if notification is not None:
                small.append(_command(b"PUBLISH", key, notification))
                replies += 1
        elif code == _HSET_EXPIRE_PUBLISH:
            _, key, field, data, expire_s, channel, notification = op
            small.append(_command(b"HSET", key, field, data))
            small.append(_command(b"EXPIRE", key, expire_s))
            small.append(_command(b"PUBLISH", channel, notification))
            replies += 3
        elif code == _SET:
            small.append(_command(b"SET", op[1], op[2]))
            replies += 1
        elif code == _PUBLISH:
            small.append(_command(b"PUBLISH", op[1], op[2]))
            replies += 1
    if small:
        buffers.append(b"".join(small))
    return buffers, replies
