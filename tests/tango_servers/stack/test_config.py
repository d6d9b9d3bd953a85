"""Configuration checks: pure logic, run on files written by the tests."""

import json
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from tango_servers.stack import config as config_module
from tango_servers.stack.config import ConfigError, load_config


def write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(document))
    return path


def test_the_shipped_configuration_loads_and_names_every_server() -> None:
    servers = {spec.name for spec in load_config().servers}
    assert servers == {"Automation1/sim", "Pilatus/sim", "OAV/sim", "PvaBridge/1", "RedisBridge/1"}


def test_a_registered_server_whose_module_is_gone_is_an_error(tmp_path: Path, monkeypatch) -> None:
    stale = EntryPoint(name="Ghost", value="no_such_package.device:main", group=config_module.ENTRY_POINT_GROUP)
    monkeypatch.setattr(config_module, "server_entry_points", lambda: {"Ghost": stale})
    path = write(tmp_path, {"servers": {"Ghost": {"1": {"Ghost": {"a/b/c": {}}}}}})
    with pytest.raises(ConfigError, match=r"server 'Ghost' at servers/Ghost is registered but its module"):
        load_config(path)


def test_a_document_dsconfig_rejects_names_the_place(tmp_path: Path) -> None:
    path = write(tmp_path, {"servers": {"Pilatus": {"sim": {"Pilatus": {"sim/pilatus/1": {"properties": 3}}}}}})
    with pytest.raises(ConfigError, match=r"invalid dsconfig document at servers/Pilatus/sim/Pilatus/sim/pilatus/1"):
        load_config(path)


def test_a_device_name_must_have_three_parts(tmp_path: Path) -> None:
    path = write(tmp_path, {"servers": {"Pilatus": {"sim": {"Pilatus": {"pilatus1": {}}}}}})
    with pytest.raises(ConfigError, match="at servers/Pilatus/sim/Pilatus: 'pilatus1' does not match"):
        load_config(path)
