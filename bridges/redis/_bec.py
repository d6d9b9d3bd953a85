"""BEC's wire format, written without bec_lib: its endpoints, its message envelope and its numpy codec.

What `bec_lib`'s `RedisConnector.get(MessageEndpoints.device_readback(name))` expects, from the
bec_lib source (PyPI `bec-lib`, 4.x):

- `bec_lib/endpoints.py`: `info/devices/readback/{name}`, `info/devices/read/{name}`,
  `info/devices/read_configuration/{name}` (DeviceMessage, SET + PUBLISH), `info/devices/info/{name}`
  (DeviceInfoMessage, SET), `info/devices/config` (AvailableResourceMessage, SET),
  `info/devices/config_update` (DeviceConfigMessage, PUBLISH), `info/devices/progress/{name}`
  (ProgressMessage, SET + PUBLISH),
  `info/public/file_event/{name}` (FileMessage, SET + PUBLISH), `info/devices/preview/{name}/{signal}`
  (DevicePreviewMessage, a stream whose entries hold the message in the field `data`, as
  bec_server's `BECMessageHandler` writes them).
- `bec_lib/serialization_registry.py` + `codecs.py`: a message is the msgpack map
  `{"__bec_codec__": {"encoder_name": "BECMessage", "type_name": <class>, "data": <fields>}}`; a numpy
  array inside it is `{"__bec_codec__": {"encoder_name": "ndarray", "type_name": "ndarray", "data":
  {b"nd": True, b"type": dtype.str, b"kind": b"", b"shape": [...], b"data": bytes}}}` (bytes keys).
- `bec_lib/messages.py`: the fields of each message type (every one has `metadata`, a dict).

The encoding is checked against bec_lib itself in tests/bridges/redis/test_bec.py.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import numpy as np

BEC_MESSAGE = "BECMessage"
PREVIEW_FIELD = "data"  # the stream field bec_server writes previews under


class BecEndpoints:
    """BEC's Redis keys (MessageEndpoints) for a flat device name."""

    @staticmethod
    def readback(name: str) -> str:
        return f"info/devices/readback/{name}"

    @staticmethod
    def read(name: str) -> str:
        return f"info/devices/read/{name}"

    @staticmethod
    def read_configuration(name: str) -> str:
        return f"info/devices/read_configuration/{name}"

    @staticmethod
    def device_info(name: str) -> str:
        return f"info/devices/info/{name}"

    @staticmethod
    def device_config() -> str:
        return "info/devices/config"

    @staticmethod
    def device_config_update() -> str:
        return "info/devices/config_update"

    @staticmethod
    def progress(name: str) -> str:
        return f"info/devices/progress/{name}"

    @staticmethod
    def file_event(name: str) -> str:
        return f"info/public/file_event/{name}"

    @staticmethod
    def preview(name: str, signal: str) -> str:
        return f"info/devices/preview/{name}/{signal}"


def ndarray_codec(array: np.ndarray) -> dict[str, Any]:
    """A numpy array as bec_lib's ndarray codec encodes it (numeric dtypes only)."""
    array = np.ascontiguousarray(array)
    data = {b"nd": True, b"type": array.dtype.str, b"kind": b"", b"shape": list(array.shape), b"data": array.tobytes()}
    return {"__bec_codec__": {"encoder_name": "ndarray", "type_name": "ndarray", "data": data}}


def bec_value(value: Any) -> Any:
    """A Tango value as BEC carries it: numbers and text as they are, numeric arrays by the ndarray codec."""
    if isinstance(value, np.ndarray):
        return ndarray_codec(value) if value.dtype.kind in "biufc" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], bytes | bytearray):
        return bytes(value[1])  # DevEncoded: the bytes (the format is in the tango layout's meta hash)
    if isinstance(value, list | tuple):
        return [item.item() if isinstance(item, np.generic) else item for item in value]
    return value


def bec_pack(type_name: str, fields: Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> bytes:
    """msgpack bytes of one BECMessage of class `type_name` (e.g. "DeviceMessage")."""
    data = {"metadata": dict(metadata or {}), **fields}
    envelope = {"__bec_codec__": {"encoder_name": BEC_MESSAGE, "type_name": type_name, "data": data}}
    return msgpack.packb(envelope, use_bin_type=True)


def device_message(signals: Mapping[str, Mapping[str, Any]], metadata: Mapping[str, Any] | None = None) -> bytes:
    """DeviceMessage: `signals` is {signal name: {"value": ..., "timestamp": ...}}."""
    return bec_pack("DeviceMessage", {"signals": signals}, metadata)


def device_info_message(name: str, info: Mapping[str, Any]) -> bytes:
    """DeviceInfoMessage: what BEC's device manager builds a device proxy from."""
    return bec_pack("DeviceInfoMessage", {"device": name, "info": info})


def device_config_message(devices: Sequence[Mapping[str, Any]]) -> bytes:
    """AvailableResourceMessage of the device config: one entry per device (name, deviceClass, ...)."""
    return bec_pack("AvailableResourceMessage", {"resource": devices})


def device_config_update_message(action: str, config: Mapping[str, Any]) -> bytes:
    """DeviceConfigMessage: `action` ("add", ...) of the devices in `config` {name: entry}."""
    return bec_pack("DeviceConfigMessage", {"action": action, "config": config})


def progress_message(value: float, max_value: float, done: bool, metadata: Mapping[str, Any] | None = None) -> bytes:
    return bec_pack(
        "ProgressMessage", {"value": float(value), "max_value": float(max_value), "done": bool(done)}, metadata
    )


def file_message(event: Mapping[str, Any], device_name: str) -> bytes:
    """FileMessage from a suite file event (`file_path`, `file_type`, `hinted_location`, `done`, `success`)."""
    hinted = {str(k): str(v) for k, v in (event.get("hinted_location") or {}).items()}
    fields = {
        "file_path": str(event["file_path"]),
        "done": bool(event.get("done")),
        "successful": bool(event.get("success")),
        "is_master_file": False,
        "device_name": device_name,
        "file_type": str(event.get("file_type") or "h5"),
        "hinted_h5_entries": hinted or None,
    }
    return bec_pack("FileMessage", fields)


def preview_message(device_name: str, signal: str, image: np.ndarray, timestamp: float) -> bytes:
    return bec_pack(
        "DevicePreviewMessage",
        {"device": device_name, "signal": signal, "data": ndarray_codec(image), "timestamp": float(timestamp)},
    )
