"""Every use of a PyTango or ophyd private member in the project, each behind feature detection
with the public path as fallback. docs/architecture.md names each with the figure behind it.

- `call_event_callback_directly`: PyTango's private event map (the Redis bridge's update rate);
- `raw_read_attributes`: `DeviceProxy._read_attributes`, the binding under `read_attributes`
  (ophyd_tango's count rate);
- `install_lazy_device_tuple`: ophyd's `Device._initialize_device` and the class attributes it
  sets (the first connection to a wide device).

ophyd is never imported here (this package imports no ophyd): its classes are passed in.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Collection
from typing import Any

import tango

__all__ = ["call_event_callback_directly", "install_lazy_device_tuple", "raw_read_attributes"]

logger = logging.getLogger(__name__)

_direct_path_warned = False


def call_event_callback_directly(
    proxy: tango.DeviceProxy, event_id: int, callback: Callable[[tango.EventData], None]
) -> bool:
    """Let PyTango call `callback` itself for each event instead of through its per-event wrapper.

    For a synchronous proxy PyTango wraps every event callback in a green-mode executor and a
    tracing wrapper that it builds again for each event (10 to 25 us of the event thread each); the
    callback is a plain function that is neither a coroutine nor a device method, so the wrapper
    adds nothing. Done only when the proxy is synchronous and PyTango's event map looks as
    expected (PyTango 10); otherwise events go through PyTango's usual path, and a warning says so
    once (tests/ophyd_tango/test_subscription.py checks the direct path on the installed PyTango).
    Returns True when PyTango now calls `callback` directly.
    """
    global _direct_path_warned
    if proxy.get_green_mode() != tango.GreenMode.Synchronous:
        return False
    try:
        with getattr(proxy, "__get_event_map_lock")():
            entry = getattr(proxy, "__get_event_map")().get(event_id)
            holder = entry[0] if isinstance(entry, tuple) else None
            if holder is not None and callable(getattr(holder, "push_event", None)):
                holder.push_event = callback
                return True
            reason = f"unexpected event map entry {type(entry).__name__}"
    except Exception as exc:  # another PyTango version: keep its path
        reason = str(exc)
    if not _direct_path_warned:
        _direct_path_warned = True
        logger.warning("PyTango %s: events go through its per-event wrapper (%s)", tango.__version__, reason)
    return False


def raw_read_attributes(proxy: tango.DeviceProxy) -> Callable[[list[str]], list[tango.DeviceAttribute]]:
    """`read_attributes(names)` through PyTango's binding when it has one, else the public call.

    The public wrapper adds only green-mode and tracing layers, which cost as much as the round
    trip to a local server."""
    binding = getattr(proxy, "_read_attributes", None)

    def read_attributes(names: list[str]) -> list[tango.DeviceAttribute]:
        return binding(names, tango.ExtractAs.Numpy)  # type: ignore[misc]

    def public_read_attributes(names: list[str]) -> list[tango.DeviceAttribute]:
        return proxy.read_attributes(names, extract_as=tango.ExtractAs.Numpy)

    return read_attributes if callable(binding) else public_read_attributes


# What ophyd's Device._initialize_device sets on a class (ophyd 1.10); checked before replacing it.
_DEVICE_CLASS_ATTRIBUTES = (
    "_sig_attrs",
    "_component_kinds",
    "component_names",
    "_device_tuple",
    "_sub_devices",
    "_required_for_connection",
)


class _LazyDeviceTuple:
    """`cls._device_tuple`, built when first asked for (ophyd's get_device_tuple/put)."""

    def __get__(self, instance: Any, owner: type) -> type:
        names = getattr(owner, "component_names")  # noqa: B009 (set on the class at run time)
        fields = [name for name in names[:254] if not name.startswith("_")]
        built = namedtuple(f"{owner.__name__}Tuple", fields)  # type: ignore[misc]
        setattr(owner, "_device_tuple", built)  # noqa: B010
        return built


def install_lazy_device_tuple(device_class: type, component_type: type, reserved: Collection[str], marker: str) -> bool:
    """Set up `device_class`'s subclasses that define `marker` with their component namedtuple
    built on first use: for a class generated from a 200-attribute device, ophyd's eager
    namedtuple alone costs milliseconds. Other subclasses, and any ophyd whose class set-up does
    not look as expected, keep ophyd's own `_initialize_device`. Returns True when installed."""
    ophyd_setup = getattr(device_class, "_initialize_device", None)
    if ophyd_setup is None or not all(hasattr(device_class, name) for name in _DEVICE_CLASS_ATTRIBUTES):
        logger.warning("ophyd's Device class set-up is not the expected one: classes are set up eagerly")
        return False

    def initialize(cls: Any) -> None:
        if marker not in cls.__dict__:
            ophyd_setup.__func__(cls)
            return
        components = {attr: cpt for attr, cpt in cls.__dict__.items() if isinstance(cpt, component_type)}
        bad = set(components) & set(reserved)
        if bad:
            raise TypeError(f"{cls.__name__}: reserved component names {sorted(bad)}")
        inherited = [
            (attr, cpt) for base in reversed(cls.__bases__) for attr, cpt in getattr(base, "_sig_attrs", {}).items()
        ]
        cls._sig_attrs = OrderedDict([*inherited, *components.items()])
        cls._component_kinds = {attr: cpt.kind for attr, cpt in cls._sig_attrs.items()}
        cls.component_names = tuple(cls._sig_attrs)
        cls._device_tuple = _LazyDeviceTuple()
        cls._sub_devices = [attr for attr, cpt in cls._sig_attrs.items() if cpt.is_device]
        cls._required_for_connection = {}

    setattr(device_class, "_initialize_device", classmethod(initialize))  # noqa: B010
    return True
