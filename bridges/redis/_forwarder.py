"""Forwarding OAV frames to Redis for murko, in the layout dodal's `OAVToRedisForwarder` uses.

Each frame becomes one JPEG in the hash `murko:{sample_id}:raw` under the field
`{source}-{frame}-{uuid4}`; the hash expires 7 days after the last frame, and the field name is
PUBLISHed on the channel of the same name as the hash so a consumer can fetch the frame at once.
A run is bounded: it ends after `duration` seconds or `max_frames` frames, whichever comes first,
or when stopped. Frames arriving faster than JPEG encoding keeps up with are skipped (the newest
frame wins), as in dodal, where best effort is enough.

Each frame also gets what mx-bluesky's `MurkoCallback` (mx_bluesky/beamlines/i04/callbacks/
murko_callback.py) writes for it: a JSON map in the hash `murko:{sample_id}:metadata` under the
frame's uuid (the raw hash's field), expiring after 7 days, PUBLISHed as JSON on the channel
`murko`, which mx-bluesky's `redis_to_murko_forwarder` listens to. The run ends with the JSON
string "image_forwarding_complete" on `murko`, as the callback's `stop` sends it.
"""

import io
import json
import logging
import threading
import time
import uuid
from typing import Any

import numpy as np
from PIL import Image

from ._layout import (
    MURKO_CHANNEL,
    MURKO_COMPLETE_MESSAGE,
    MURKO_EXPIRY_S,
    murko_frame_field,
    murko_metadata_key,
    murko_raw_key,
)
from ._publisher import RedisPublisher

log = logging.getLogger(__name__)


# OAV attribute -> murko metadata field, and the field's type (mx-bluesky's callback)
MURKO_OAV_FIELDS = {
    "microns_per_pixel_x": ("microns_per_x_pixel", float),
    "microns_per_pixel_y": ("microns_per_y_pixel", float),
    "beam_centre_x": ("beam_centre_i", int),
    "beam_centre_y": ("beam_centre_j", int),
}


def murko_sample_id(sample_id: str) -> int | str:
    """The sample id as murko's metadata carries it: an int (as in mx-bluesky's run start) when it is one."""
    return int(sample_id) if sample_id.isdecimal() else sample_id


def omega_at(readings: list[tuple[float, float]], timestamp: float) -> float | None:
    """Omega at `timestamp` from the last (value, time) readings: extrapolated linearly from the
    last two, as mx-bluesky's callback does for images between gonio readings; None without any."""
    if not readings:
        return None
    value, when = readings[-1]
    if len(readings) < 2 or readings[-2][1] == when:
        return value
    previous, then = readings[-2]
    return value + (timestamp - when) * (value - previous) / (when - then)


def jpeg_bytes(value: Any, quality: int = 85) -> bytes:
    """JPEG bytes of an OAV frame: 2-D uint8 (grey), (h, w, 3) uint8 (RGB), or ("jpeg", bytes)."""
    if isinstance(value, tuple) and len(value) == 2 and "jp" in str(value[0]).lower():
        return bytes(value[1])
    array = np.asarray(value)
    if array.dtype != np.uint8:
        # Scale other depths into 8 bits for display; murko only needs a picture.
        top = float(array.max()) if array.size else 0.0
        array = (array.astype(np.float32) * (255.0 / top if top > 0 else 0.0)).astype(np.uint8)
    if array.ndim not in (2, 3):
        raise ValueError(f"an OAV frame must be 2-D or (h, w, 3), not shape {array.shape}")
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", quality=quality)
    return out.getvalue()


class OavForwarder:
    """One forwarding run at a time from one OAV device; `start()`, `stop()`, status properties."""

    def __init__(
        self,
        publisher: RedisPublisher,
        subscriber: Any,
        device: str,
        *,
        image_attribute: str = "image_jpeg",
        counter_attribute: str = "image_counter",
        source: str = "fullscreen",
        jpeg_quality: int = 85,
        max_duration: float = 600.0,
        omega_device: str = "",
        omega_attribute: str = "position",
    ) -> None:
        self.publisher = publisher
        self.subscriber = subscriber
        self.device = device.lower()
        self.image_attribute = image_attribute
        self.counter_attribute = counter_attribute
        self.source = source
        self.jpeg_quality = jpeg_quality
        self.max_duration = max_duration
        self.omega_device = omega_device.lower()
        self.omega_attribute = omega_attribute
        self.sample_id = ""
        self.frames = 0
        self.last_field = ""
        self.outcome = "never started"
        self._cond = threading.Condition()
        self._latest: tuple[Any, float] | None = None
        self._counter: int | None = None
        self._oav_metadata: dict[str, Any] = {}
        self._omegas: list[tuple[float, float]] = []  # the last (value, timestamp) readings of omega
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, sample_id: str, duration: float, max_frames: int) -> str:
        """Begin a run; `duration` <= 0 means `max_duration`, `max_frames` <= 0 means no frame bound.

        Raises ValueError (a sentence for the user) when a run is going on or arguments are wrong.
        """
        sample_id = str(sample_id).strip()
        if self.running:
            raise ValueError(f"already forwarding {self.device} for sample {self.sample_id}; stop it first")
        if not sample_id or any(c in sample_id for c in " :\n"):
            raise ValueError(f"sample id {sample_id!r} must be non-empty, without spaces or ':'")
        if duration > self.max_duration:
            raise ValueError(f"duration {duration:g} s exceeds the limit of {self.max_duration:g} s")
        duration = duration if duration > 0 else self.max_duration
        max_frames = int(max_frames) if max_frames > 0 else 0
        self.sample_id, self.frames, self.last_field = sample_id, 0, ""
        self.outcome = "running"
        self._latest, self._counter = None, None
        self._oav_metadata, self._omegas = {}, []
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(sample_id, duration, max_frames), name="oav-forwarder", daemon=True
        )
        self._thread.start()
        frames = f" or {max_frames} frames" if max_frames else ""
        return (
            f"forwarding {self.device}/{self.image_attribute} as JPEG into {murko_raw_key(sample_id)} "
            f"for {duration:g} s{frames}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """End the current run (no-op when none) and wait for it to finish."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the run ----------------------------------------------------------------------------
    def _on_update(self, update: Any) -> None:
        if update.error is not None:
            return
        name = update.attribute.lower()
        if name == self.counter_attribute.lower():
            self._counter = int(update.value)
            return
        if name in MURKO_OAV_FIELDS:
            field, kind = MURKO_OAV_FIELDS[name]
            self._oav_metadata[field] = kind(update.value)
            return
        with self._cond:
            self._latest = (update.value, update.timestamp)
            self._cond.notify_all()

    def _on_omega(self, update: Any) -> None:
        if update.error is None:
            self._omegas = [*self._omegas[-1:], (float(update.value), float(update.timestamp))]

    def _metadata(self, sample_id: str, uid: str, timestamp: float) -> str:
        """The JSON murko metadata of one frame, with the fields and types mx-bluesky's callback writes."""
        metadata: dict[str, Any] = {"sample_id": murko_sample_id(sample_id), **self._oav_metadata}
        omega = omega_at(self._omegas, timestamp)
        if omega is not None:
            metadata["omega_angle"] = omega
        metadata["uuid"] = uid
        return json.dumps(metadata)

    def _run(self, sample_id: str, duration: float, max_frames: int) -> None:
        key = murko_raw_key(sample_id)
        metadata_key = murko_metadata_key(sample_id)
        deadline = time.monotonic() + duration
        attributes = [self.image_attribute, *([self.counter_attribute] if self.counter_attribute else [])]
        subscription = omega = None
        try:
            present = {name.lower() for name in self.subscriber.attribute_types(self.device)}
            attributes += [name for name in MURKO_OAV_FIELDS if name in present]
            if self.omega_device:
                omega = self.subscriber.subscribe(self.omega_device, [self.omega_attribute], self._on_omega)
            subscription = self.subscriber.subscribe(self.device, attributes, self._on_update)
            # The engine hands over the current frame at once; murko wants frames from now on.
            with self._cond:
                self._latest = None
            own_count = 0
            while True:
                if self._stop.is_set():
                    self.outcome = f"stopped after {self.frames} frames"
                    break
                if max_frames and self.frames >= max_frames:
                    self.outcome = f"{self.frames} frames forwarded (the frame bound)"
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.outcome = f"{duration:g} s elapsed, {self.frames} frames forwarded"
                    break
                with self._cond:
                    if self._latest is None:
                        self._cond.wait(min(remaining, 0.5))
                    latest, self._latest = self._latest, None
                if latest is None:
                    continue
                own_count += 1
                frame = self._counter if self._counter is not None else own_count
                field = murko_frame_field(self.source, frame, str(uuid.uuid4()))
                data = jpeg_bytes(latest[0], self.jpeg_quality)
                if self.publisher.hset_with_expiry(key, field, data, MURKO_EXPIRY_S, key, field):
                    # the frame is in Redis before murko hears of it: one writer, in order
                    metadata = self._metadata(sample_id, field, latest[1])
                    self.publisher.hset_with_expiry(
                        metadata_key, field, metadata.encode(), MURKO_EXPIRY_S, MURKO_CHANNEL, metadata
                    )
                    self.frames += 1
                    self.last_field = field
        except Exception as exc:  # a bad frame or a vanished OAV ends the run, never the bridge
            log.exception("OAV forwarding for sample %s failed", sample_id)
            self.outcome = f"failed after {self.frames} frames: {exc}"
        finally:
            for opened in (subscription, omega):
                if opened is not None:
                    opened.close()
            self.publisher.publish(MURKO_CHANNEL, json.dumps(MURKO_COMPLETE_MESSAGE))
            log.info("OAV forwarding for sample %s: %s", sample_id, self.outcome)
