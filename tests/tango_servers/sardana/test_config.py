"""The shipped Sardana YAML, checked without servers: valid for sardana-config, controllers present."""

import ast

import pytest

pytest.importorskip("sardana_config")

from sardana_config.validate import sanity_check_config
from sardana_config.yaml_utils import load_yaml_roundtrip

from tango_servers.stack.sardana import controller_dir, default_sardana_yaml


def test_shipped_yaml_is_valid_for_sardana_config():
    config = load_yaml_roundtrip(str(default_sardana_yaml()))
    sanity_check_config(config, False)  # raises RuntimeError listing every problem


def test_every_controller_class_is_in_the_pool_path():
    config = load_yaml_roundtrip(str(default_sardana_yaml()))
    for pool in config["pools"].values():
        for name, controller in pool["controllers"].items():
            module = controller_dir() / controller["python_module"]
            assert module.is_file(), f"{name}: {module} is missing"
            classes = {node.name for node in ast.parse(module.read_text()).body if isinstance(node, ast.ClassDef)}
            assert controller["python_class"] in classes, f"{name}: no class {controller['python_class']} in {module}"
