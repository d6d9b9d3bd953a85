"""Fixtures for ophyd_tango tests: test servers run without a database, as plain subprocesses.

(DeviceTestContext(process=True) forks the test process, which breaks once the client ORB runs.)
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tango

from tango_servers.stack.processes import free_port, kill_child, wait_until_ready

HERE = Path(__file__).parent


def load_test_server(name: str):
    """Import a test server module from this folder (tests are not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class NoDbServer:
    """One test device server on 127.0.0.1:`port` without a database; restartable on the same port."""

    def __init__(self, script: str, server: str, device: str, port: int | None = None, log: Path | None = None):
        self.script = HERE / script
        self.server = server
        self.device = device
        self.port = port or free_port()
        self.log = log
        self.process: subprocess.Popen | None = None

    @property
    def trl(self) -> str:
        return f"tango://127.0.0.1:{self.port}/{self.device}#dbase=no"

    def start(self, timeout: float = 20.0) -> "NoDbServer":
        command = [
            sys.executable, str(self.script), self.server, "test",
            "-ORBendPoint", f"giop:tcp:127.0.0.1:{self.port}", "-nodb", "-dlist", self.device,
        ]  # fmt: skip
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if k != "TANGO_HOST"}
        self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)

        def answers() -> bool:
            proxy = tango.DeviceProxy(self.trl)
            proxy.set_timeout_millis(1000)
            proxy.ping()
            return True

        wait_until_ready(self.process, answers, timeout, f"{self.server} on port {self.port}", self.log)
        return self

    def stop(self) -> None:
        kill_child(self.process)
        self.process = None


@pytest.fixture(scope="session")
def zoo_server(tmp_path_factory):
    server = NoDbServer("zoo_server.py", "TypeZoo", "test/zoo/1", log=tmp_path_factory.mktemp("zoo") / "log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def zoo_trl(zoo_server) -> str:
    """The session's TypeZoo device (full TRL, no database)."""
    return zoo_server.trl


@pytest.fixture
def nodb_server(tmp_path):
    """Factory: nodb_server(script, server, device) -> a started NoDbServer, killed after the test."""
    servers = []

    def start(script: str, server: str, device: str) -> NoDbServer:
        started = NoDbServer(script, server, device, log=tmp_path / f"{server}.log").start()
        servers.append(started)
        return started

    yield start
    for server in servers:
        server.stop()


# ---- a stack (database, supervisor) running the test servers ------------------------------------
TEST_SERVERS = {
    "TypeZoo": f"{HERE / 'zoo_server.py'}:main",
    "SardanaMotors": f"{HERE / 'motor_server.py'}:main",
    "LimaCCDs": f"{HERE / 'lima_server.py'}:main",
}
TEST_CONFIG = {
    "servers": {
        "TypeZoo": {"test": {"TypeZoo": {"test/zoo/db": {"alias": "zoo"}}}},
        "SardanaMotors": {
            "test": {
                "Motor": {
                    "test/motor/1": {"properties": {}},
                    "test/motor/2": {
                        "properties": {"bluesky_roles": ["readback=Position", "setpoint=Position", "tolerance=0.5"]}
                    },
                },
                "PlainStage": {"test/stage/1": {"properties": {}}},
            }
        },
        "LimaCCDs": {"test": {"LimaCCDs": {"test/lima/1": {"alias": "lima"}}}},
    }
}


@pytest.fixture(scope="module")
def test_stack(tmp_path_factory):
    """A stack of the test servers (TypeZoo, Sardana-style motors, a LimaCCDs), no bridges."""
    from tango_servers.stack.testing import start_stack

    running = start_stack(
        tmp_path_factory.mktemp("ophyd_tango_stack"),
        config=TEST_CONFIG,
        extra_servers=TEST_SERVERS,
        redis=False,
        bridges=False,
    )
    try:
        yield running
    finally:
        running.down()


def validate_document(name: str, doc: dict) -> None:
    """Validate one bluesky document against event-model's JSON schema (after a JSON round trip)."""
    import json

    import numpy as np
    from event_model import DocumentNames, schema_validators

    def plain(value):
        return value.tolist() if isinstance(value, np.ndarray | np.generic) else str(value)

    schema_validators[DocumentNames(name)].validate(json.loads(json.dumps(doc, default=plain)))


@pytest.fixture
def validate_documents():
    """validate_documents([(name, doc), ...]): every document against event-model's schemas."""

    def validate(documents) -> None:
        assert documents, "no documents"
        for name, doc in documents:
            validate_document(name, doc)

    return validate


# ---- TangoTest: Tango's own C++ test device, a device nobody here wrote -------------------------
@pytest.fixture(scope="module")
def tango_test(test_stack, tmp_path_factory):
    """TangoTest (sys/tg_test/1) running on the module's test stack next to our own test servers."""
    from tango_servers.stack.tangotest import TangoTestServer

    server = TangoTestServer(test_stack.tango_host, tmp_path_factory.mktemp("tango_test") / "TangoTest.log").start()
    yield server
    server.stop()
