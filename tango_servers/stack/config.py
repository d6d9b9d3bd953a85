"""The suite configuration: a dsconfig JSON file, checked against the servers this install provides."""

import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

ENTRY_POINT_GROUP = "tango_suite.servers"
DEFAULT_CONFIG = "default_config.json"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and the place in it."""


@dataclass(frozen=True)
class ServerSpec:
    """One server instance to run: `Automation1/sim` with its classes and devices."""

    server: str
    instance: str
    devices_by_class: dict[str, list[str]] = field(hash=False)

    @property
    def name(self) -> str:
        return f"{self.server}/{self.instance}"

    @property
    def devices(self) -> list[str]:
        return [dev for devs in self.devices_by_class.values() for dev in devs]


@dataclass
class SuiteConfig:
    """A parsed dsconfig document and where it came from."""

    source: str
    document: dict[str, Any]

    @property
    def servers(self) -> list[ServerSpec]:
        specs = []
        for server, instances in self.document.get("servers", {}).items():
            for instance, classes in instances.items():
                by_class = {cls: list(devices) for cls, devices in classes.items()}
                specs.append(ServerSpec(server, instance, by_class))
        return specs

    def device_properties(self, device: str) -> dict[str, list[str]]:
        for instances in self.document.get("servers", {}).values():
            for classes in instances.values():
                for devices in classes.values():
                    if device in devices:
                        return devices[device].setdefault("properties", {})
        raise KeyError(device)

    def without_servers(self, names: set[str]) -> "SuiteConfig":
        """A copy with the given server executables (e.g. {"RedisBridge"}) left out."""
        servers = {k: v for k, v in self.document.get("servers", {}).items() if k not in names}
        return SuiteConfig(self.source, {**self.document, "servers": servers})


def server_entry_points() -> dict[str, EntryPoint]:
    """Server executable name -> entry point, for every server this install provides."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def is_installed(entry_point: EntryPoint) -> bool:
    """True when the server's module can be found (a stale entry point may outlive its package)."""
    module = entry_point.value.split(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def load_target(target: str) -> Callable[..., None]:
    """Resolve "module:function" or "/path/file.py:function" to the function."""
    location, _, function = target.rpartition(":")
    if location.endswith(".py"):
        path = Path(location)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{target}: {path} is not a loadable Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(location)
    return getattr(module, function)


def default_config_path() -> Path:
    return Path(str(resources.files("tango_servers.stack").joinpath(DEFAULT_CONFIG)))


def load_config(path: Path | str | None = None, extra_servers: dict[str, str] | None = None) -> SuiteConfig:
    """Read and check a dsconfig JSON file (the shipped default when `path` is None).

    Raises ConfigError with a one-line message naming the file and the place: malformed JSON
    (line and column), a document dsconfig rejects, or a server or class this install lacks.
    `extra_servers` names test-only servers (name -> "module:function") that count as known.
    """
    path = Path(path) if path else default_config_path()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"malformed JSON in {path}: line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("servers"), dict):
        raise ConfigError(f"{path}: expected a dsconfig document with a 'servers' object at the top level")
    _check_with_dsconfig(document, path)
    config = SuiteConfig(str(path), document)
    _check_known_servers(config, path, extra_servers or {})
    return config


def _check_with_dsconfig(document: dict[str, Any], path: Path) -> None:
    """Validate against dsconfig's own JSON schema (its validate_json prints and exits instead)."""
    import jsonschema
    from dsconfig.formatting import SCHEMA_FILENAME

    schema = json.loads(Path(SCHEMA_FILENAME).read_text())
    try:
        jsonschema.validate(document, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "top level"
        raise ConfigError(f"{path}: invalid dsconfig document at {where}: {exc.message}") from exc


def _check_known_servers(config: SuiteConfig, path: Path, extra: dict[str, str]) -> None:
    known = server_entry_points()
    for spec in config.servers:
        if spec.server in extra:
            target = extra[spec.server]
        elif spec.server in known:
            target = known[spec.server].value
            if not is_installed(known[spec.server]):
                raise ConfigError(
                    f"{path}: server '{spec.server}' at servers/{spec.server} is registered but its module "
                    f"({target}) cannot be imported; reinstall the package that provides it"
                )
        else:
            raise ConfigError(
                f"{path}: unknown server '{spec.server}' at servers/{spec.server}; "
                f"this install provides: {', '.join(sorted(known))}"
            )
        module = inspect.getmodule(load_target(target))
        for cls in spec.devices_by_class:
            if not hasattr(module, cls):
                raise ConfigError(
                    f"{path}: unknown device class '{cls}' at servers/{spec.name}/{cls}; "
                    f"server {spec.server} ({target}) has no such class"
                )
