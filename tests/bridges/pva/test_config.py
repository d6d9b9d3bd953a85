"""PV naming and the bridge configuration (properties, YAML file, globs)."""

import pytest

from bridges.pva.config import BridgeConfig, pv_name


def test_pv_name_upper_cases_the_device_and_keeps_the_attribute():
    assert pv_name("sim/aerotech/x", "position") == "SIM:AEROTECH:X:position"
    assert pv_name("sim/aerotech/x", "position", "BL1:") == "BL1:SIM:AEROTECH:X:position"
    assert BridgeConfig(prefix="T:").pv_name("sim/oav/1", "image") == "T:SIM:OAV:1:image"


def test_properties_as_tango_gives_them():
    config = BridgeConfig.from_mapping(
        {
            "devices": ["sim/aerotech/*", "sim/oav/1"],
            "attributes": ["position", "velocity"],
            "put_allowlist": ["sim/aerotech/*/velocity"],
            "prefix": ["BL1:"],
            "server_port": ["15075"],
            "broadcast_port": "15076",
        }
    )
    assert config.devices == ("sim/aerotech/*", "sim/oav/1")
    assert (config.prefix, config.server_port, config.broadcast_port) == ("BL1:", 15075, 15076)
    assert config.exports_device("SIM/Aerotech/X") and not config.exports_device("sim/pilatus/1")
    assert config.exports("sim/aerotech/x", "Position") and not config.exports("sim/aerotech/x", "State")
    assert config.allows_put("sim/aerotech/y", "velocity") and not config.allows_put("sim/aerotech/y", "position")


def test_attribute_globs_may_name_the_device_and_exclusions_win():
    config = BridgeConfig(attributes=("*",), exclude_attributes=("sim/pilatus/*/image", "Status"))
    assert config.exports("sim/aerotech/x", "position")
    assert not config.exports("sim/pilatus/1", "image")
    assert config.exports("sim/oav/1", "image")
    assert not config.exports("sim/oav/1", "Status")


def test_read_only_by_default_and_loopback_only():
    config = BridgeConfig()
    assert not config.allows_put("sim/aerotech/x", "position")
    conf = config.server_conf()
    assert conf["EPICS_PVAS_INTF_ADDR_LIST"] == "127.0.0.1"
    assert conf["EPICS_PVAS_BEACON_ADDR_LIST"] == "127.0.0.1"
    assert conf["EPICS_PVAS_AUTO_BEACON_ADDR_LIST"] == "NO"


def test_yaml_file_with_properties_winning(tmp_path):
    path = tmp_path / "pva.yaml"
    path.write_text("devices: [sim/oav/*]\nprefix: 'FILE:'\nput_allowlist: ['*/zoom']\nserver_port: 0\n")
    config = BridgeConfig.load({"prefix": "PROP:", "devices": None, "attributes": []}, str(path))
    assert config.devices == ("sim/oav/*",)
    assert config.prefix == "PROP:"
    assert config.put_allowlist == ("*/zoom",)
    assert config.server_port == 0
    assert config.attributes == ("*",)  # unset everywhere: the default


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"unknown PVA bridge setting.*devics"):
        BridgeConfig.from_mapping({"devics": ["sim/*/*"]})
    with pytest.raises(ValueError, match="cannot read"):
        BridgeConfig.load({}, "/nonexistent/pva.yaml")


def test_searches_are_relayed_only_for_a_loopback_interface():
    assert BridgeConfig().relays_searches
    assert not BridgeConfig.from_mapping({"search_relay": ["false"]}).relays_searches
    assert not BridgeConfig(interface="0.0.0.0").relays_searches
    assert not BridgeConfig(interface="192.0.2.7").relays_searches


def test_interface_is_bound_and_announced():
    conf = BridgeConfig(interface="192.0.2.7").server_conf()
    assert conf["EPICS_PVAS_INTF_ADDR_LIST"] == "192.0.2.7"
    assert conf["EPICS_PVAS_BEACON_ADDR_LIST"] == "192.0.2.7"
    everywhere = BridgeConfig.from_mapping({"interface": ["0.0.0.0"]})
    assert everywhere.wildcard and everywhere.server_conf()["EPICS_PVAS_INTF_ADDR_LIST"] == "0.0.0.0"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"interface": "eth0"}, r"interface 'eth0' is not an IPv4 address: .*127\.0\.0\.1.*0\.0\.0\.0"),
        ({"server_port": "http"}, r"server_port 'http' is not a port number: 0 .* 65535"),
        ({"broadcast_port": 99999}, r"broadcast_port 99999 is not a port number"),
        ({"search_relay": ["maybe"]}, r"search_relay 'maybe' is not a boolean: true or false"),
    ],
)
def test_bad_interface_and_ports_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        BridgeConfig.from_mapping(values)
