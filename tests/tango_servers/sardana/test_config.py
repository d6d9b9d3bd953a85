"""The shipped Sardana YAML, checked without servers: valid for sardana-config, controllers in the pool_path."""

import ast
from pathlib import Path

import pytest

pytest.importorskip("sardana_config")

from sardana_config.validate import sanity_check_config
from sardana_config.yaml_utils import load_yaml_roundtrip

from tango_servers.stack.sardana import default_sardana_yaml, macro_dir, plugin_dirs


def test_shipped_yaml_is_valid_for_sardana_config():
    config = load_yaml_roundtrip(str(default_sardana_yaml()))
    sanity_check_config(config, False)  # raises RuntimeError listing every problem


def test_every_controller_class_is_in_the_pool_path():
    config = load_yaml_roundtrip(str(default_sardana_yaml()))
    for pool in config["pools"].values():
        for name, controller in pool["controllers"].items():
            found = [
                d / controller["python_module"] for d in plugin_dirs() if (d / controller["python_module"]).is_file()
            ]
            assert len(found) == 1, f"{name}: {controller['python_module']} is in {len(found)} of {plugin_dirs()}"
            (module,) = found
            classes = {node.name for node in ast.parse(module.read_text()).body if isinstance(node, ast.ClassDef)}
            assert controller["python_class"] in classes, f"{name}: no class {controller['python_class']} in {module}"


def test_the_pilatus_is_served_by_sardana_limaccd_unchanged():
    config = load_yaml_roundtrip(str(default_sardana_yaml()))
    controller = config["pools"]["tango_suite"]["controllers"]["pilatus_ctrl"]
    assert (controller["python_module"], controller["python_class"]) == ("LimaCCDCtrl.py", "LimaCCDTwoDController")
    import sardana_limaccd.ctrl

    assert Path(sardana_limaccd.ctrl.__file__).parent in plugin_dirs()


def test_the_pilatus_camera_settings_are_sardana_tango_motors_unchanged():
    config = load_yaml_roundtrip(str(default_sardana_yaml()))
    controller = config["pools"]["tango_suite"]["controllers"]["pilatus_cam_ctrl"]
    assert (controller["python_module"], controller["python_class"]) == (
        "TangoAttrMotorCtrl.py",
        "TangoAttrMotorController",
    )
    attributes = {name: element["attributes"]["TangoAttribute"] for name, element in controller["elements"].items()}
    assert attributes == {
        "pilatus_threshold": "sim/pilatus_cam/1/threshold",
        "pilatus_energy": "sim/pilatus_cam/1/energy_threshold",
    }
    import sardana_tango.ctrl

    assert Path(sardana_tango.ctrl.__file__).parent in plugin_dirs()


def test_every_general_hook_is_a_macro_in_the_macro_path():
    config = load_yaml_roundtrip(str(default_sardana_yaml()))
    (macro_server,) = config["macro_servers"].values()
    hooks = macro_server["general_hooks"]
    assert dict(hooks) == {"lima_one_frame_per_file": ["pre-scan"]}
    macros = {
        node.name
        for module in macro_dir().glob("*.py")
        for node in ast.parse(module.read_text()).body
        if isinstance(node, ast.ClassDef)
    }
    assert set(hooks) <= macros, f"{set(hooks) - macros} not in {macro_dir()}"
