"""The Redis bridge: Tango attributes mirrored into Redis (layout and format in docs/redis.md).

Reading what the bridge writes needs only msgpack (and numpy for arrays):

    from bridges.redis import KeyLayout, unpack
    message = unpack(redis_client.get(KeyLayout().value("sim/aerotech/x", "position")))

The Tango server itself is `bridges.redis.device.RedisBridge` (not imported here).
"""

from ._bec import BecEndpoints
from ._bridge import BridgeOptions, RedisBridgeCore, file_event, meta_fields
from ._forwarder import OavForwarder, jpeg_bytes
from ._layout import (
    DEFAULT_PREFIX,
    MURKO_EXPIRY_S,
    KeyLayout,
    murko_frame_field,
    murko_metadata_key,
    murko_raw_key,
)
from ._publisher import PublisherStatus, RedisPublisher
from ._serialisation import pack, unpack, value_message

__all__ = [
    "DEFAULT_PREFIX",
    "MURKO_EXPIRY_S",
    "BecEndpoints",
    "BridgeOptions",
    "KeyLayout",
    "OavForwarder",
    "PublisherStatus",
    "RedisBridgeCore",
    "RedisPublisher",
    "file_event",
    "jpeg_bytes",
    "meta_fields",
    "murko_frame_field",
    "murko_metadata_key",
    "murko_raw_key",
    "pack",
    "unpack",
    "value_message",
]
