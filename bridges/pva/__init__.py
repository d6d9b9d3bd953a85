"""The PVA bridge: Tango attributes republished as EPICS PVAccess PVs with p4p.

    from bridges.pva import BridgeConfig, TangoPvaBridge, pv_name

    pv_name("sim/aerotech/x", "position")          # "SIM:AEROTECH:X:position"
    with TangoPvaBridge(BridgeConfig(devices=("sim/*/*",), server_port=0, broadcast_port=0)) as bridge:
        ...

The Tango device server is `bridges.pva.device` (class `PvaBridge`); the client for scripts and
optimisers is `bridges.pva_client.Interface`.
"""

from .bridge import ExportedPv, TangoPvaBridge
from .config import LOOPBACK, BridgeConfig, pv_name
from .mapping import AlarmStatus, AttributeMapping, attribute_mapping, severity_of

__all__ = [
    "LOOPBACK",
    "AlarmStatus",
    "AttributeMapping",
    "BridgeConfig",
    "ExportedPv",
    "TangoPvaBridge",
    "attribute_mapping",
    "pv_name",
    "severity_of",
]
