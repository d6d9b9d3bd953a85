"""The `RedisBridge` Tango device server: Tango attributes mirrored into Redis (see docs/redis.md)."""

import os
import threading
from pathlib import Path

import tango
from tango.server import Device, attribute, class_property, command, device_property, run

from ophyd_tango.core.subscription import TangoSubscriber

from ._bridge import BridgeOptions, RedisBridgeCore, parse_layout, parse_name_map
from ._forwarder import OavForwarder
from ._layout import DEFAULT_PREFIX, KeyLayout
from ._publisher import RedisPublisher

STATUS_PERIOD = 0.5
EVENT_BUFFER_HWM = 100_000


class RedisBridge(Device):
    """Republishes Tango attributes to Redis: last values, meta hashes, streams, image previews,
    file and progress events, and forwards OAV frames for murko on request."""

    bluesky_roles = class_property(dtype=(str,), default_value=["kind=controller"])

    redis_url = device_property(
        dtype=str, default_value="redis://127.0.0.1:6379/0", doc="redis://[user:password@]host:port/db"
    )
    redis_username = device_property(dtype=str, default_value="", doc="ACL user (overrides the URL's)")
    redis_password = device_property(dtype=str, default_value="", doc="password (overrides the URL's)")
    redis_password_file = device_property(
        dtype=str, default_value="", doc="file holding the password, read at Init (overrides redis_password)"
    )
    redis_password_env = device_property(
        dtype=str,
        default_value="",
        doc="name of an environment variable of the server holding the password, read at Init "
        "(overrides redis_password; redis_password_file wins over it)",
    )
    layout = device_property(
        dtype=(str,),
        default_value=["tango"],
        doc="what to write: 'tango' (tango:{device}/{attr} keys), 'bec' (BEC's endpoints and messages), or both",
    )
    bec_names = device_property(
        dtype=(str,),
        default_value=[],
        doc="BEC device names, 'domain/family/member=name'; others: the alias, else the member (as "
        "ophyd_tango.connect names them)",
    )
    bec_device_config = device_property(
        dtype=bool,
        default_value=True,
        doc="bec layout: also write BEC's device config (info/devices/config) listing the bridged devices; "
        "false where a BEC config service owns that key",
    )
    prefix = device_property(dtype=str, default_value=DEFAULT_PREFIX, doc="prefix of every key and channel")
    devices = device_property(dtype=(str,), default_value=["sim/*/*"], doc="device name patterns to follow")
    exclude_devices = device_property(dtype=(str,), default_value=[], doc="device name patterns to skip")
    attributes = device_property(
        dtype=(str,), default_value=["*"], doc="attribute patterns: 'name' or 'domain/family/member/name'"
    )
    exclude_attributes = device_property(
        dtype=(str,), default_value=[], doc="attribute patterns not mirrored (e.g. encoded copies of an image)"
    )
    stream_attributes = device_property(
        dtype=(str,), default_value=[], doc="attribute patterns that also get a capped `:stream` history"
    )
    stream_maxlen = device_property(dtype=int, default_value=1000, doc="entries kept per `:stream` (about)")
    preview_period = device_property(dtype=float, default_value=0.5, doc="seconds between image previews")
    preview_maxlen = device_property(dtype=int, default_value=10, doc="entries kept per `:preview` stream")
    preview_expiry = device_property(dtype=int, default_value=60, doc="seconds a `:preview` outlives its last entry")
    image_period = device_property(
        dtype=float, default_value=0.0, doc="least seconds between two writes of an image value (0: every frame)"
    )
    frame_counter_attributes = device_property(
        dtype=(str,),
        default_value=["image_counter", "last_image_acquired"],
        doc="attributes whose value is the frame number carried with the device's images",
    )
    file_event_attributes = device_property(dtype=(str,), default_value=["file_event"])
    progress_attributes = device_property(dtype=(str,), default_value=["task_progress", "move_progress"])
    progress_done_attributes = device_property(dtype=(str,), default_value=["task_state"])
    discovery_period = device_property(
        dtype=float, default_value=5.0, doc="seconds between looks for devices not followed yet"
    )
    oav_device = device_property(dtype=str, default_value="sim/oav/1", doc="OAV whose frames are forwarded")
    oav_image_attribute = device_property(
        dtype=str, default_value="image_jpeg", doc="JPEG (DevEncoded) or 2-D image attribute of the OAV"
    )
    oav_counter_attribute = device_property(dtype=str, default_value="image_counter")
    oav_source = device_property(dtype=str, default_value="fullscreen", doc="source name in murko's field names")
    oav_max_duration = device_property(dtype=float, default_value=600.0, doc="longest forwarding run, seconds")
    murko_omega_device = device_property(
        dtype=str, default_value="sim/aerotech/omega", doc="device whose omega goes into murko's metadata ('' none)"
    )
    murko_omega_attribute = device_property(dtype=str, default_value="position")
    jpeg_quality = device_property(dtype=int, default_value=85)

    def init_device(self) -> None:
        super().init_device()
        self.set_state(tango.DevState.INIT)
        self.set_status("connecting to Redis")
        for name in ("connected", "redis_errors", "oav_forwarding", "oav_forwarded_frames"):
            self.set_change_event(name, True, False)
        try:
            layout = parse_layout(list(self.layout))
            bec_names = parse_name_map(list(self.bec_names))
            self._publisher = self._make_publisher()
        except ValueError as exc:  # e.g. a rediss:// URL: the server stays up and says why
            self._fault = f"{self.get_name()} property {exc}"
            self.set_state(tango.DevState.FAULT)
            self.set_status(self._fault)
            return
        self._fault = ""
        self._publisher.start()
        self._subscriber = TangoSubscriber(poll_period=0.5, timeout=3.0)
        options = BridgeOptions(
            devices=list(self.devices),
            attributes=list(self.attributes),
            exclude_attributes=list(self.exclude_attributes),
            stream_attributes=list(self.stream_attributes),
            stream_maxlen=self.stream_maxlen,
            preview_period=self.preview_period,
            preview_maxlen=self.preview_maxlen,
            preview_expiry=self.preview_expiry,
            image_period=self.image_period,
            frame_counter_attributes=list(self.frame_counter_attributes),
            file_event_attributes=list(self.file_event_attributes),
            progress_attributes=list(self.progress_attributes),
            progress_done_attributes=list(self.progress_done_attributes),
            discovery_period=self.discovery_period,
            exclude_devices=[*self.exclude_devices, self.get_name().lower()],
            layout=layout,
            bec_names=bec_names,
            bec_device_config=self.bec_device_config,
        )
        self._core = RedisBridgeCore(self._publisher, self._subscriber, options, KeyLayout(self.prefix)).start()
        self._forwarder = OavForwarder(
            self._publisher,
            self._subscriber,
            self.oav_device,
            image_attribute=self.oav_image_attribute,
            counter_attribute=self.oav_counter_attribute,
            source=self.oav_source,
            jpeg_quality=self.jpeg_quality,
            max_duration=self.oav_max_duration,
            omega_device=self.murko_omega_device,
            omega_attribute=self.murko_omega_attribute,
        )
        self._shown: dict[str, object] = {}
        self._closing = threading.Event()
        self._status_thread = threading.Thread(target=self._watch_status, name="redis-bridge-status", daemon=True)
        self._status_thread.start()

    def _make_publisher(self) -> RedisPublisher:
        try:
            return RedisPublisher(
                self.redis_url,
                username=self.redis_username or None,
                password=self._password(),
                sentinel_key=f"{self.prefix}bridge:{self.get_name().lower()}",
            )
        except ValueError as exc:
            raise ValueError(f"redis_url: {exc}") from exc

    def _password(self) -> str | None:
        """The Redis password: from `redis_password_file`, else the variable `redis_password_env`
        names, else `redis_password`. A file or variable that cannot be read is logged and Redis's
        refusal shows in the status."""
        if self.redis_password_file:
            try:
                return Path(self.redis_password_file).read_text().strip()
            except OSError as exc:
                self.error_stream(f"redis_password_file {self.redis_password_file}: {exc.strerror or exc}")
                return None
        if self.redis_password_env:
            value = os.environ.get(self.redis_password_env)
            if value is None:
                self.error_stream(f"redis_password_env: the variable {self.redis_password_env} is not set")
            return value or None
        return self.redis_password or None

    def delete_device(self) -> None:
        if self._fault:
            super().delete_device()
            return
        self._closing.set()
        self._status_thread.join(2)
        self._forwarder.stop()
        self._core.close()
        self._subscriber.close()
        self._publisher.close(timeout=2)
        super().delete_device()

    # -- status -----------------------------------------------------------------------------
    def _watch_status(self) -> None:
        while not self._closing.wait(STATUS_PERIOD):
            try:
                self._refresh_status()
            except Exception as exc:  # the status thread must outlive odd moments (shutdown)
                self.error_stream(f"status refresh failed: {exc!r}")

    def _refresh_status(self) -> None:
        status = self._publisher.status()
        for name, value in (
            ("connected", status.connected),
            ("redis_errors", status.errors),
            ("oav_forwarding", self._forwarder.running),
            ("oav_forwarded_frames", self._forwarder.frames),
        ):
            if self._shown.get(name) != value:
                self._shown[name] = value
                self.push_change_event(name, value)
        core = self._core
        following = f"following {core.attribute_count} attributes of {len(core.followed_devices)} devices"
        if status.connected:
            self.set_state(tango.DevState.ON)
            text = f"Writing to Redis at {status.url} (prefix '{self.prefix}'), {following}."
        else:
            self.set_state(tango.DevState.ALARM)
            text = (
                f"Redis at {status.url} is unreachable: {status.last_error}. Reconnecting with backoff; "
                f"last values are kept and written again when Redis answers. Check that redis-server "
                f"runs and the URL, user and password properties are right."
            )
        if self._forwarder.running:
            text += f"\nForwarding OAV frames for sample {self._forwarder.sample_id}."
        if core.discovery_error:
            text += f"\n{core.discovery_error}"
        self.set_status(text)

    @attribute(dtype=bool, doc="True while the bridge has a working connection to Redis")
    def connected(self) -> bool:
        return self._publisher.connected

    @attribute(dtype=tango.DevLong64, doc="Redis errors since start: failed connections and refused commands")
    def redis_errors(self) -> int:
        return self._publisher.status().errors

    @attribute(dtype=str, doc="The last Redis error, empty if none")
    def last_error(self) -> str:
        return self._publisher.status().last_error

    @attribute(dtype=float, unit="1/s", format="%.1f", doc="Updates written to Redis per second, recently")
    def update_rate(self) -> float:
        return self._publisher.status().update_rate

    @attribute(dtype=tango.DevLong64, doc="Updates Redis accepted since start")
    def updates_written(self) -> int:
        return self._publisher.status().written

    @attribute(
        dtype=tango.DevLong64,
        doc="Updates given up: stream entries, previews and frames while Redis was away, or queue overflow",
    )
    def updates_dropped(self) -> int:
        return self._publisher.status().dropped

    @attribute(
        dtype=tango.DevLong64,
        doc="Times Redis had lost the bridge's keys (FLUSHALL, a restart without persistence) "
        "and the bridge wrote them again",
    )
    def resyncs(self) -> int:
        return self._publisher.status().resyncs

    @attribute(dtype=int, doc="Attributes mirrored into Redis")
    def attribute_count(self) -> int:
        return self._core.attribute_count

    @attribute(dtype=(str,), max_dim_x=1024, doc="Devices followed")
    def followed_devices(self) -> list[str]:
        return self._core.followed_devices

    @attribute(dtype=str, doc="The Redis URL in use (password hidden)")
    def redis_location(self) -> str:
        return self._publisher.url

    # -- OAV forwarding ---------------------------------------------------------------------
    @attribute(dtype=bool, doc="True while OAV frames are forwarded to murko:{sample_id}:raw")
    def oav_forwarding(self) -> bool:
        return self._forwarder.running

    @attribute(dtype=int, doc="Frames forwarded in the current (or last) run")
    def oav_forwarded_frames(self) -> int:
        return self._forwarder.frames

    @attribute(dtype=str, doc="Sample id of the current (or last) run")
    def oav_sample_id(self) -> str:
        return self._forwarder.sample_id

    @attribute(dtype=str, doc="Hash field of the last forwarded frame ({source}-{frame}-{uuid})")
    def oav_last_field(self) -> str:
        return self._forwarder.last_field

    @attribute(dtype=str, doc="How the current (or last) run is going or ended")
    def oav_outcome(self) -> str:
        return self._forwarder.outcome

    @command(
        dtype_in=tango.DevVarDoubleStringArray,
        doc_in="[[duration_s, max_frames], [sample_id]]; duration <= 0: the longest allowed "
        "(oav_max_duration), max_frames <= 0: no frame bound",
        dtype_out=str,
        doc_out="what is forwarded where, and for how long",
    )
    # PyTango's stub types Except.throw_exception as returning None; it always raises.
    def StartOavForwarding(self, argin: tuple[list[float], list[str]]) -> str:  # type: ignore[return]
        numbers, texts = argin
        if len(texts) != 1 or len(numbers) != 2:
            tango.Except.throw_exception(
                "RedisBridge_BadArguments",
                "StartOavForwarding takes [[duration_s, max_frames], [sample_id]], e.g. [[30, 100], ['1234']]",
                "RedisBridge.StartOavForwarding",
            )
        try:
            return self._forwarder.start(texts[0], float(numbers[0]), int(numbers[1]))
        except ValueError as exc:
            tango.Except.throw_exception("RedisBridge_CannotForward", str(exc), "RedisBridge.StartOavForwarding")

    @command(doc_in="End the current OAV forwarding run (nothing happens when none runs)")
    def StopOavForwarding(self) -> None:
        self._forwarder.stop()


def main(args: list[str] | None = None) -> None:
    # The bridge is a client of every device it follows: let bursts of events queue up (Tango's
    # default is 1000 per connection, beyond which events are dropped silently).
    os.environ.setdefault("TANGO_EVENT_BUFFER_HWM", str(EVENT_BUFFER_HWM))
    run((RedisBridge,), args=args)


if __name__ == "__main__":
    main()
