"""No Docker engine runs here, so the compose deployment is checked statically against the package."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from tango_servers.stack.config import default_config_path, load_config

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
DEFAULT_CONFIG = load_config()
ONE_SHOT = {"config"}


def suite_services() -> dict[str, dict]:
    """Services that run one of the suite's device servers (their command starts with a console script)."""
    return {name: s for name, s in SERVICES.items() if s.get("command", [None])[0] in SCRIPTS}


def test_every_configured_server_has_exactly_one_service() -> None:
    running = [(s["command"][0], s["command"][1]) for s in suite_services().values()]
    configured = [(spec.server, spec.instance) for spec in DEFAULT_CONFIG.servers]
    assert sorted(running) == sorted(configured)


def test_every_suite_service_runs_an_installed_console_script_from_the_image() -> None:
    for name, service in suite_services().items():
        assert service["build"]["dockerfile"] == "docker/Dockerfile", name
        assert service["image"] == "tango-bluesky-suite:latest", name
        assert service["command"][0] in SCRIPTS, name


def test_builds_and_images() -> None:
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            context = (DOCKER / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file(), name
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


def test_dependencies_exist_and_tango_host_is_the_database_service() -> None:
    port = re.search(r"giop:tcp::(\d+)", " ".join(SERVICES["databaseds"]["command"])).group(1)
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
        tango_host = service.get("environment", {}).get("TANGO_HOST")
        if name in suite_services() or name in ONE_SHOT:
            assert tango_host == f"databaseds:{port}", name
    for name in suite_services():
        assert SERVICES[name]["depends_on"]["config"]["condition"] == "service_completed_successfully"


def test_servers_publish_their_own_hostname_and_distinct_ports() -> None:
    ports = []
    for name, service in suite_services().items():
        command = " ".join(service["command"])
        endpoint = re.search(r"-ORBendPoint giop:tcp::(\d+)", command).group(1)
        publish = re.search(r"-ORBendPointPublish giop:tcp:([\w-]+):(\d+)", command)
        assert publish.groups() == (service["hostname"], endpoint), name
        ports.append(endpoint)
    assert len(ports) == len(set(ports))


def test_long_running_services_have_health_checks_naming_configured_devices() -> None:
    devices = {device for spec in DEFAULT_CONFIG.servers for device in spec.devices}
    for name, service in SERVICES.items():
        if name in ONE_SHOT:
            continue
        assert "healthcheck" in service, name
        if name in suite_services():
            checked = re.search(r"DeviceProxy\('([^']+)'\)", " ".join(service["healthcheck"]["test"])).group(1)
            assert checked in devices, name
            server, instance = service["command"][:2]
            assert checked in next(s.devices for s in DEFAULT_CONFIG.servers if s.name == f"{server}/{instance}")


def test_named_volumes_are_declared() -> None:
    declared = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("/", ".")):
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_config_service_loads_the_shipped_config_and_valid_overrides(tmp_path: Path) -> None:
    command = " ".join(SERVICES["config"]["command"])
    assert "json2tango --write --update" in command
    assert "default_config_path()" in command
    assert default_config_path().is_file()
    overrides = json.loads((DOCKER / "overrides.json").read_text())
    overrides.pop("_comment")
    path = tmp_path / "overrides.json"
    path.write_text(json.dumps(overrides))
    for spec in load_config(path).servers:
        configured = next(s for s in DEFAULT_CONFIG.servers if s.name == spec.name)
        assert set(spec.devices) <= set(configured.devices), spec.name
    redis_url = overrides["servers"]["RedisBridge"]["1"]["RedisBridge"]["sys/bridge/redis"]["properties"]["redis_url"]
    assert redis_url == ["redis://redis:6379/0"]
    assert "redis" in SERVICES["redis-bridge"]["depends_on"]


@pytest.mark.parametrize("published", ["10000:10000", "6379:6379", "5075:5075", "5076:5076/udp"])
def test_client_ports_are_published_on_the_host_loopback(published: str) -> None:
    assert any(f"127.0.0.1:{published}" in service.get("ports", []) for service in SERVICES.values())


def test_every_published_port_is_on_the_host_loopback_only() -> None:
    for name, service in SERVICES.items():
        for published in service.get("ports", []):
            assert published.startswith("127.0.0.1:"), f"{name} publishes {published} on every host interface"


def test_each_server_endpoint_is_published_for_docker_host_clients() -> None:
    """A host client reaches a server at the hostname and port of its IOR (hostname -> 127.0.0.1)."""
    for name, service in suite_services().items():
        port = re.search(r"-ORBendPointPublish giop:tcp:[\w-]+:(\d+)", " ".join(service["command"])).group(1)
        assert f"127.0.0.1:{port}:{port}" in service["ports"], name


def test_pva_bridge_listens_on_its_container_interfaces_on_the_standard_ports() -> None:
    overrides = json.loads((DOCKER / "overrides.json").read_text())
    properties = overrides["servers"]["PvaBridge"]["1"]["PvaBridge"]["sys/bridge/pva"]["properties"]
    assert properties["interface"] == ["0.0.0.0"]
    assert (properties["server_port"], properties["broadcast_port"]) == (["5075"], ["5076"])
    assert {"127.0.0.1:5075:5075", "127.0.0.1:5076:5076/udp"} <= set(SERVICES["pva-bridge"]["ports"])
