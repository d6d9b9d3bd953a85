"""The one msgpack serialisation the Redis bridge writes: values, stream entries, previews and events.

A value message is a msgpack map with string keys::

    {"value": ..., "timestamp": float, "quality": "ATTR_VALID", "severity": 0}

Numeric arrays travel as raw C-order bytes in "value" with "dtype" (numpy string, explicit byte
order, e.g. "<f8") and "shape" (list of ints) beside them; DevEncoded values as bytes with
"encoding" (the Tango format string). The bridge turns DevState into its name ("ON") before
packing; DevEnum stays the index (labels are in the meta hash).
A failed read carries "value": None and "error". The severity is `ophyd_tango.core.quality`'s.
"""

from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

from ophyd_tango.core.quality import Severity, severity_of_quality


def value_fields(value: Any) -> dict[str, Any]:
    """The "value" entry of a message plus "dtype"/"shape"/"encoding" where the value needs them."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc":
            array = np.ascontiguousarray(value)
            return {"value": array.tobytes(), "dtype": array.dtype.str, "shape": list(array.shape)}
        return {"value": value.tolist()}
    if isinstance(value, np.generic):
        return {"value": value.item()}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], bytes | bytearray):
        encoding, data = value
        return {"value": bytes(data), "encoding": str(encoding)}
    if isinstance(value, list | tuple):
        return {"value": [item.item() if isinstance(item, np.generic) else item for item in value]}
    return {"value": value}


def value_message(
    value: Any, timestamp: float, quality: str, *, error: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The message dict for one attribute value (before packing); `extra` adds fields (e.g. frame)."""
    message: dict[str, Any] = value_fields(value) if error is None else {"value": None, "error": error}
    message["timestamp"] = float(timestamp)
    message["quality"] = quality
    # EPICS-style alarm severity from the Tango quality, so non-Tango readers can colour values
    message["severity"] = severity_of_quality(quality) if error is None else Severity.INVALID
    message.update(extra)
    return message


def pack(message: Mapping[str, Any]) -> bytes:
    """msgpack bytes for a message dict (bin type for bytes, str for text)."""
    return msgpack.packb(message, use_bin_type=True)


def unpack(payload: bytes) -> dict[str, Any]:
    """The message dict from msgpack bytes; numeric arrays come back as read-only numpy arrays."""
    message = msgpack.unpackb(payload, raw=False)
    if isinstance(message, dict) and "shape" in message and isinstance(message.get("value"), bytes):
        message["value"] = np.frombuffer(message["value"], dtype=message["dtype"]).reshape(message["shape"])
    return message
