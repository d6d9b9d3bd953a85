"""Tango's own C++ test device (Debian's tango-test) run on a stack's database, for tests and
benchmarks that need a device nobody here wrote.

server = TangoTestServer(stack.tango_host, log_path).start()   # sys/tg_test/1, server TangoTest/test
server.trl                                                      # tango://host:port/sys/tg_test/1
server.stop()                                                   # killed by PID
"""

import os
import subprocess
from pathlib import Path

import tango

from .processes import LOOPBACK, free_port, kill_child, wait_until_ready

TANGO_TEST_BINARY = Path("/usr/lib/tango/TangoTest")  # Debian's tango-test (`make tango-test`)
TANGO_TEST_DEVICE = "sys/tg_test/1"
TANGO_TEST_SERVER = "TangoTest/test"


class TangoTestServer:
    """TangoTest registered in the database at `tango_host` and run on it, on a loopback port."""

    def __init__(self, tango_host: str, log: Path):
        self.tango_host = tango_host
        self.log = log
        self.process: subprocess.Popen | None = None

    @property
    def trl(self) -> str:
        return f"tango://{self.tango_host}/{TANGO_TEST_DEVICE}"

    def start(self, timeout: float = 30.0) -> "TangoTestServer":
        """Register the device, start the server and wait until its State is RUNNING."""
        if not TANGO_TEST_BINARY.exists():
            raise FileNotFoundError(f"{TANGO_TEST_BINARY} is missing: run 'make tango-test'")
        host, _, port = self.tango_host.rpartition(":")
        db = tango.Database(host, int(port))
        info = tango.DbDevInfo()
        info.name, info._class, info.server = TANGO_TEST_DEVICE, "TangoTest", TANGO_TEST_SERVER
        db.add_device(info)
        env = {**os.environ, "TANGO_HOST": self.tango_host}
        instance = TANGO_TEST_SERVER.split("/")[1]
        command = [str(TANGO_TEST_BINARY), instance, "-ORBendPoint", f"giop:tcp:{LOOPBACK}:{free_port()}"]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)

        def running() -> bool:
            proxy = tango.DeviceProxy(self.trl)
            proxy.set_timeout_millis(1000)
            return proxy.state() == tango.DevState.RUNNING

        what = f"TangoTest {TANGO_TEST_DEVICE} on {self.tango_host}"
        try:
            wait_until_ready(self.process, running, timeout, what, self.log)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill the server by its PID (it keeps no state worth a clean shutdown)."""
        kill_child(self.process)
        self.process = None
