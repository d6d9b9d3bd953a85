"""The `PvaBridge` Tango device server: Tango attributes republished as PVAccess PVs.

The device (`sys/bridge/pva` in the default stack) is administered like any other: its
properties say what is exported (see `bridges.pva.config`), its attributes show how the bridge
is doing, `Init` restarts it with new properties and `Rescan` looks for new devices now.
"""

from __future__ import annotations

import tango
from tango import AttrWriteType, DevState
from tango.server import Device, attribute, class_property, command, device_property, run

from .bridge import TangoPvaBridge
from .config import BridgeConfig

__all__ = ["PvaBridge", "main"]

_SETTINGS = (
    "devices",
    "attributes",
    "exclude_attributes",
    "put_allowlist",
    "prefix",
    "server_port",
    "broadcast_port",
    "interface",
    "search_relay",
)


class PvaBridge(Device):
    """Republishes Tango attributes as PVAccess PVs (p4p), on 127.0.0.1 by default."""

    bluesky_roles = class_property(dtype=(str,), default_value=["kind=controller"])

    # No defaults here: an unset property falls back to `config_file`, then BridgeConfig's default.
    devices = device_property(dtype=(str,), doc="Tango device name globs to export (default sim/*/*)")
    attributes = device_property(dtype=(str,), doc="attribute globs: 'position' or 'sim/aerotech/*/position'")
    exclude_attributes = device_property(dtype=(str,), doc="attribute globs left out of the export")
    put_allowlist = device_property(dtype=(str,), doc="'device/attribute' globs PVA clients may write")
    prefix = device_property(dtype=str, doc="prepended to every PV name, e.g. BL1:")
    server_port = device_property(dtype=int, doc="PVA TCP port (default 5075; 0 picks a free one)")
    broadcast_port = device_property(dtype=int, doc="PVA UDP search port (default 5076; 0 picks a free one)")
    interface = device_property(dtype=str, doc="IPv4 address the PVA server binds and announces (default 127.0.0.1)")
    search_relay = device_property(
        dtype=str,
        doc="true (default) or false: with a loopback interface, answer this host's clients that search "
        "without EPICS settings (bridges/pva/search_relay.py)",
    )
    config_file = device_property(dtype=str, doc="YAML file with the same settings (properties win)")

    pv_count = attribute(dtype=int, doc="attribute PVs published")
    disconnected_pv_count = attribute(dtype=int, doc="PVs whose Tango attribute is unreachable or failing")
    update_rate = attribute(dtype=float, unit="Hz", format="%.1f", doc="PV updates per second, last 5 s")
    update_age_p50 = attribute(
        dtype=float, unit="ms", format="%.3f", doc="median age of Tango values when posted (post time - Tango time)"
    )
    update_age_p99 = attribute(dtype=float, unit="ms", format="%.3f", doc="99th percentile of the same")
    update_count = attribute(dtype=tango.DevLong64, doc="PV updates since start")
    put_count = attribute(dtype=tango.DevLong64, doc="puts written to Tango since start")
    error_count = attribute(dtype=tango.DevLong64, doc="errors since start: lost attributes, refused puts")
    last_error = attribute(dtype=str, doc="the most recent error")
    waiting_devices = attribute(dtype=(str,), max_dim_x=4096, doc="matching devices not reachable yet")
    pv_names = attribute(dtype=(str,), max_dim_x=100_000, doc="names of the published attribute PVs")
    pvi_names = attribute(dtype=(str,), max_dim_x=4096, doc="the PVI PV of each exported device")
    command_pv_names = attribute(dtype=(str,), max_dim_x=100_000, doc="names of the command PVs (PVI x entries)")
    actual_server_port = attribute(dtype=int, access=AttrWriteType.READ, doc="PVA TCP port in use")
    actual_broadcast_port = attribute(dtype=int, access=AttrWriteType.READ, doc="PVA UDP search port in use")
    relayed_searches = attribute(
        dtype=tango.DevLong64, doc="searches of this host's clients without settings handed to the server"
    )

    def init_device(self) -> None:
        super().init_device()
        self._bridge: TangoPvaBridge | None = None
        self._fault = ""
        properties = {name: getattr(self, name) for name in _SETTINGS}
        try:
            config = BridgeConfig.load(properties, self.config_file or None)
            self._bridge = TangoPvaBridge(config, exclude_devices=(self.get_name().lower(),)).start()
        except Exception as exc:  # a bad setting or a port in use: say so on the device, stay up
            self._fault = f"PVA bridge not running: {exc}"
            self._bridge = None

    def delete_device(self) -> None:
        if self._bridge is not None:
            bridge, self._bridge = self._bridge, None
            bridge.stop()

    def dev_state(self) -> DevState:
        bridge = self._bridge
        if bridge is None:
            return DevState.FAULT
        if not bridge.wait_first_scan(0):
            return DevState.INIT
        if bridge.waiting_devices or bridge.disconnected_pv_count:
            return DevState.ALARM
        return DevState.ON

    def dev_status(self) -> str:
        bridge = self._bridge
        if bridge is None:
            return self._fault
        lines = [
            f"Serving {bridge.pv_count} PVs on {bridge.config.interface}:{bridge.server_port} "
            f"(search port {bridge.broadcast_port}) for {len(bridge.exported_devices)} devices, "
            f"with {len(bridge.command_pv_names)} command PVs and a PVI structure per device."
        ]
        if not bridge.wait_first_scan(0):
            lines.append("Looking for devices in the Tango database.")
        if count := bridge.disconnected_pv_count:
            lines.append(f"{count} PVs are INVALID: their Tango device is unreachable or the read fails.")
        for device, why in sorted(bridge.waiting_devices.items()):
            lines.append(f"Waiting for {device}: {why}")
        if bridge.last_error:
            lines.append(f"Last error: {bridge.last_error}")
        return "\n".join(lines)

    def _require_bridge(self) -> TangoPvaBridge:
        if self._bridge is None:
            tango.Except.throw_exception(
                "PvaBridge_NotRunning", f"{self._fault}. Fix the properties and run Init.", "PvaBridge"
            )
        # PyTango's stub types Except.throw_exception as returning None; it always raises.
        return self._bridge  # type: ignore[return-value]

    def read_pv_count(self) -> int:
        return self._require_bridge().pv_count

    def read_disconnected_pv_count(self) -> int:
        return self._require_bridge().disconnected_pv_count

    def read_update_rate(self) -> float:
        return self._require_bridge().update_rate

    def read_update_age_p50(self) -> float:
        return self._require_bridge().ages.percentile(50) * 1e3

    def read_update_age_p99(self) -> float:
        return self._require_bridge().ages.percentile(99) * 1e3

    def read_update_count(self) -> int:
        return self._require_bridge().update_count

    def read_put_count(self) -> int:
        return self._require_bridge().put_count

    def read_error_count(self) -> int:
        return self._require_bridge().error_count

    def read_last_error(self) -> str:
        return self._require_bridge().last_error

    def read_waiting_devices(self) -> list[str]:
        return sorted(self._require_bridge().waiting_devices)

    def read_pv_names(self) -> list[str]:
        return self._require_bridge().pv_names

    def read_pvi_names(self) -> list[str]:
        return self._require_bridge().pvi_names

    def read_command_pv_names(self) -> list[str]:
        return self._require_bridge().command_pv_names

    def read_actual_server_port(self) -> int:
        return self._require_bridge().server_port

    def read_actual_broadcast_port(self) -> int:
        return self._require_bridge().broadcast_port

    def read_relayed_searches(self) -> int:
        return self._require_bridge().relayed_searches

    @command(doc_in="Look for new matching devices and retry unreachable ones now")
    def Rescan(self) -> None:
        self._require_bridge().rescan()


def main(args: list[str] | None = None) -> None:
    run((PvaBridge,), args=args)


if __name__ == "__main__":
    main()
