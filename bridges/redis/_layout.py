"""Where the bridge writes in Redis: every key name is made here, so docs/redis.md has one source."""

from dataclasses import dataclass

DEFAULT_PREFIX = "tango:"
MURKO_EXPIRY_S = 7 * 24 * 3600
MURKO_CHANNEL = "murko"  # mx-bluesky's murko callback PUBLISHes each frame's metadata here
MURKO_COMPLETE_MESSAGE = "image_forwarding_complete"  # dodal's FORWARDING_COMPLETE_MESSAGE


@dataclass(frozen=True)
class KeyLayout:
    """Key names under a prefix (default "tango:"); device names are lower case, no host."""

    prefix: str = DEFAULT_PREFIX

    def value(self, device: str, attribute: str) -> str:
        """Last value (msgpack, SET) and the PUBLISH channel of the same name."""
        return f"{self.prefix}{device}/{attribute}"

    def meta(self, device: str, attribute: str) -> str:
        """Hash of unit, limits, format, label, dtype, shape ... of an attribute."""
        return f"{self.value(device, attribute)}:meta"

    def stream(self, device: str, attribute: str) -> str:
        """Capped history of values (XADD MAXLEN ~), for the attributes chosen by property."""
        return f"{self.value(device, attribute)}:stream"

    def preview(self, device: str, attribute: str) -> str:
        """Throttled image previews (XADD MAXLEN, key expiry)."""
        return f"{self.value(device, attribute)}:preview"

    def file_event(self, device: str) -> str:
        """BEC-style file event of a detector (SET + PUBLISH)."""
        return f"{self.prefix}file_event:{device}"

    def progress(self, device: str) -> str:
        """BEC-style progress of a device (SET + PUBLISH)."""
        return f"{self.prefix}progress:{device}"


def murko_raw_key(sample_id: str) -> str:
    """The hash dodal's OAV forwarder fills with JPEG frames for murko."""
    return f"murko:{sample_id}:raw"


def murko_metadata_key(sample_id: str) -> str:
    """The hash mx-bluesky's murko callback fills with each frame's metadata (JSON, by uuid)."""
    return f"murko:{sample_id}:metadata"


def murko_frame_field(source: str, frame: int, uid: str) -> str:
    """The hash field of one forwarded frame: `{source}-{frame}-{uuid}`."""
    return f"{source}-{frame}-{uid}"
