"""ophyd_tango: Tango devices for ophyd and bluesky, built from what the server declares.

    from ophyd_tango import TangoDevice, connect

    devices = connect("sim/*/*", tango_host="127.0.0.1:10000", into=globals())  # x, y, z, omega, pilatus, oav, ...
    x = TangoDevice("sim/aerotech/x", name="x", timeout=3.0)     # config-dict friendly: keywords only
    x.position.get(); x.velocity.set(2.0).wait(); x.commands.Home(); x.Home()
    RE(scan([pilatus], omega, -3, 3, 13))                         # Movable, Triggerable, Stageable, StreamDatum
    TangoDevice("lab/motor/1", readback="pos", setpoint="pos_sp", moving_state="MOVING")  # role overrides

TangoDevice(trl, *, name=None, timeout=3.0, events=True, roles=None, **role_overrides)
    An ophyd Device with one TangoSignal per attribute (lower-case names) and `commands`.
    Movable devices (a setpoint role) add set/move/stop/locate and "readback"/"progress"
    subscriptions; file-writing detectors add collect_asset_docs/get_index.
connect(pattern, *, tango_host=None, into=None, timeout=3.0, events=True) -> dict[str, TangoDevice]
TangoSignal           one attribute: get/put/set/read/describe/subscribe, .tango_attribute, .tango_type
Roles, ROLE_KEYS      the role vocabulary (docs/ophyd_tango.md: the `bluesky_roles` convention)
MoveStatus, MoveFailed, AcquisitionFailed, TangoDeviceError, TangoTimeoutError
PsoFlyer, DetectorFlyer, FlyStatus, FlyFailed   fly scans (docs/fly_scans.md); plan: ophyd_tango.plans.fly_scan

The one Tango layer, shared with the servers and bridges and importable without ophyd (ophyd_tango.core):
    from ophyd_tango.core.subscription import TangoSubscriber, AttributeUpdate, Subscription
    from ophyd_tango.core.types import attribute_type, AttributeType
"""

from importlib import import_module
from typing import Any

# Everything loads on first use, so importing `ophyd_tango.core` (servers, bridges) loads neither
# ophyd nor the client's thread pool.
_LAZY = {
    "TangoDeviceError": ".core.errors",
    "TangoTimeoutError": ".core.errors",
    "AttributeUpdate": ".core.subscription",
    "Subscription": ".core.subscription",
    "TangoEventWarning": ".core.subscription",
    "TangoSubscriber": ".core.subscription",
    "AttributeType": ".core.types",
    "attribute_type": ".core.types",
    "ROLE_KEYS": ".core.roles",
    "Roles": ".core.roles",
    "TangoDevice": "._device",
    "TangoCommand": "._device",
    "TangoCommands": "._device",
    "TangoSignal": "._signal",
    "MoveStatus": "._motion",
    "MoveFailed": "._motion",
    "AcquisitionFailed": "._acquisition",
    "PsoFlyer": "._flyer",
    "DetectorFlyer": "._flyer",
    "FlyFailed": "._flyer",
    "FlyStatus": "._flyer",
    "connect": "._discovery",
}

__all__ = [
    "ROLE_KEYS",
    "AcquisitionFailed",
    "AttributeType",
    "AttributeUpdate",
    "DetectorFlyer",
    "FlyFailed",
    "FlyStatus",
    "MoveFailed",
    "MoveStatus",
    "PsoFlyer",
    "Roles",
    "Subscription",
    "TangoCommand",
    "TangoCommands",
    "TangoDevice",
    "TangoDeviceError",
    "TangoEventWarning",
    "TangoSignal",
    "TangoSubscriber",
    "TangoTimeoutError",
    "attribute_type",
    "connect",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ophyd_tango' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
