"""A facility's Tango on one machine: MariaDB, Tango's C++ DataBaseds and Starter, from Debian packages.

The production database path (the laptop stack keeps pytango-db's sqlite). Everything runs in
one root directory on free loopback ports and is stopped by PID:

    facility = start_facility(tmp_dir)    # MariaDB + schema + DataBaseds + Starter for this host
    facility.tango_host, facility.starter_device
    facility.stop()
"""

import getpass
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import tango

from .database import database_proxy
from .processes import LOOPBACK, free_port, started_by, stop_child, stop_process, wait_until_ready
from .state import MARKER_ENV
from .waiting import wait_until

INSTALL_HINT = (
    "run 'make debian-packages' as root "
    "(apt: mariadb-server dbconfig-no-thanks tango-db tango-starter tango-accesscontrol)"
)
DATABASEDS = Path("/usr/lib/tango/DataBaseds")
STARTER = Path("/usr/lib/tango/Starter")
ACCESS_CONTROL = Path("/usr/lib/tango/TangoAccessControl")
# tango-db's schema defines this device (server TangoAccessControl/1) and the default rule: every
# user, from every address, may write every device. Clients look the service up in CtrlSystem/Services.
ACCESS_CONTROL_DEVICE = "sys/access_control/1"
ACCESS_CONTROL_SERVICE = f"AccessControl/tango:{ACCESS_CONTROL_DEVICE}"
CONTROL_SYSTEM, SERVICES = "CtrlSystem", "Services"
ACCESS_CONTROL_SQL_MODE = "NO_ENGINE_SUBSTITUTION"
# tango-db's dbconfig-common install script: the tables, stored procedures and initial rows.
TANGO_SCHEMA = Path("/usr/share/dbconfig-common/data/tango-db/install/mysql")
DATABASE_NAME = "tango"
DATABASE_USER = "tango"
DATABASE_PASSWORD = "tango-suite-test"
CLIENT_TIMEOUT = 60.0


def starter_host_name() -> str:
    """The host name Starter uses for itself: its instance and `tango/admin/<host>`."""
    return socket.gethostname().split(".")[0]


def _require(path: Path | str | None, what: str) -> str:
    if not path or not Path(path).exists():
        raise FileNotFoundError(f"{what} is not installed: {INSTALL_HINT}")
    return str(path)


@dataclass
class MariaDB:
    """A private mariadbd serving 127.0.0.1:`port` with its data in `root`."""

    root: Path
    port: int
    process: subprocess.Popen

    @property
    def socket_path(self) -> Path:
        return self.root / "mariadb.sock"

    def sql(self, statements: str | None = None, *, script: Path | None = None, database: str = "") -> str:
        """Run SQL as this OS user (socket auth) with the `mariadb` client; RuntimeError with its message."""
        command = [
            _require(shutil.which("mariadb"), "the mariadb client"),
            "--no-defaults", f"--socket={self.socket_path}", f"--user={getpass.getuser()}",
            "--batch", "--skip-column-names",
        ]  # fmt: skip
        if database:
            command.append(database)
        source = script.read_text() if script else statements
        done = subprocess.run(command, input=source, capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
        if done.returncode:
            raise RuntimeError(f"mariadb on port {self.port}: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        stop_child(self.process)


def start_mariadb(root: Path, port: int | None = None, timeout: float = 60.0) -> MariaDB:
    """Start mariadbd on 127.0.0.1 only with its data in `root` (initialised on first use)."""
    install = _require(shutil.which("mariadb-install-db"), "mariadb-install-db")
    server = _require(shutil.which("mariadbd") or "/usr/sbin/mariadbd", "mariadbd")
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    # Running as root, MariaDB insists on being told to stay root.
    user = ["--user=root"] if os.geteuid() == 0 else []
    fresh = not data.exists()
    if fresh:
        subprocess.run(
            [install, "--no-defaults", f"--datadir={data}", *user, "--auth-root-authentication-method=socket",
             "--skip-test-db", "--skip-name-resolve"],
            check=True, capture_output=True, timeout=CLIENT_TIMEOUT,
        )  # fmt: skip
    port = port or free_port()
    with open(root / "mariadb.log", "ab") as out:
        process = subprocess.Popen(
            [server, "--no-defaults", f"--datadir={data}", *user, "--skip-networking=0",
             f"--bind-address={LOOPBACK}", f"--port={port}", f"--socket={root / 'mariadb.sock'}",
             f"--pid-file={root / 'mariadb.pid'}", "--skip-name-resolve", "--skip-log-bin"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    mariadb = MariaDB(root, port, process)
    try:
        wait_until_ready(
            process, lambda: mariadb.sql("SELECT 1").strip() == "1", timeout, f"MariaDB on {LOOPBACK}:{port}",
            root / "mariadb.log",
        )  # fmt: skip
    except Exception:
        mariadb.stop()
        raise
    return mariadb


def create_tango_schema(mariadb: MariaDB) -> None:
    """Create the `tango` database from tango-db's packaged SQL, and the user DataBaseds logs in as."""
    schema = Path(_require(TANGO_SCHEMA, "tango-db's schema SQL"))
    mariadb.sql(
        f"CREATE DATABASE {DATABASE_NAME};"
        f"CREATE USER '{DATABASE_USER}'@'{LOOPBACK}' IDENTIFIED BY '{DATABASE_PASSWORD}';"
        f"GRANT ALL ON {DATABASE_NAME}.* TO '{DATABASE_USER}'@'{LOOPBACK}';"
    )
    mariadb.sql(script=schema, database=DATABASE_NAME)


def databaseds_env(mariadb: MariaDB, tango_host: str) -> dict[str, str]:
    """The environment Tango's C++ DataBaseds reads its MySQL/MariaDB connection from."""
    return {
        "TANGO_HOST": tango_host,
        "MYSQL_HOST": f"{LOOPBACK}:{mariadb.port}",
        "MYSQL_USER": DATABASE_USER,
        "MYSQL_PASSWORD": DATABASE_PASSWORD,
        "MYSQL_DATABASE": DATABASE_NAME,
    }


def start_databaseds(mariadb: MariaDB, tango_host: str, log: Path, env: dict[str, str]) -> subprocess.Popen:
    """Tango's C++ DataBaseds (instance 2) listening on `tango_host` (ADDRESS:PORT) against `mariadb`."""
    binary = _require(DATABASEDS, "Tango's DataBaseds (tango-db)")
    with open(log, "ab") as out:
        return subprocess.Popen(
            [binary, "2", "-ORBendPoint", f"giop:tcp:{tango_host}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**env, **databaseds_env(mariadb, tango_host)},
        )  # fmt: skip


def register_starter(db: tango.Database, host: str, log_home: Path) -> str:
    """Define `Starter/<host>` with its device `tango/admin/<host>`, as a facility's install does."""
    device = f"tango/admin/{host}"
    info = tango.DbDevInfo()
    info.name, info._class, info.server = device, "Starter", f"Starter/{host}"
    db.add_device(info)
    # Start nothing by itself and without the 15 s wait for drivers: tests start servers explicitly.
    db.put_device_property(
        device, {"LogFileHome": [str(log_home)], "StartServersAtStartup": ["false"], "WaitForDriverStartup": ["0"]}
    )
    return device


def start_starter(host: str, log: Path, env: dict[str, str]) -> subprocess.Popen:
    """Tango's Starter for `host`; its servers inherit `env` (ORBendPoint keeps them on loopback)."""
    binary = _require(STARTER, "Tango's Starter (tango-starter)")
    with open(log, "ab") as out:
        return subprocess.Popen(
            [binary, host], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=log.parent
        )


def same_named_processes(server: str) -> list[int]:
    """PIDs Starter would take for `server` ("Exe/instance"): it matches the executable, or the
    script a Python runs, and the first argument after it, in the host's process list."""
    executable, instance = server.split("/")
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = proc.joinpath("cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if args and Path(args[0]).name.startswith("python"):
            args = [arg for arg in args[1:] if not arg.startswith("-")]
        if len(args) > 1 and Path(args[0]).name == executable and args[1].lower() == instance.lower():
            pids.append(int(proc.name))
    return pids


@dataclass
class Facility:
    """MariaDB, DataBaseds and a Starter running for a test; `stop()` stops them and their servers."""

    root: Path
    tango_host: str
    host: str
    mariadb: MariaDB | None = None
    databaseds: subprocess.Popen | None = None
    starter: subprocess.Popen | None = None
    access_control: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def starter_device(self) -> str:
        return f"tango/admin/{self.host}"

    def database(self, timeout: float = 3.0) -> tango.Database:
        return database_proxy(self.tango_host, timeout)

    def proxy(self, device: str, timeout: float = 3.0) -> tango.DeviceProxy:
        proxy = tango.DeviceProxy(f"tango://{self.tango_host}/{device}")
        proxy.set_timeout_millis(int(timeout * 1000))
        return proxy

    def starter_proxy(self) -> tango.DeviceProxy:
        # DevStart returns before the server is up; Starter commands get Astor's long timeout.
        return self.proxy(self.starter_device, timeout=10.0)

    def running_servers(self) -> list[str]:
        """The controlled servers Starter reports running (DevGetRunningServers, as Astor asks)."""
        return list(self.starter_proxy().command_inout("DevGetRunningServers", True))

    def start_server(self, server: str, timeout: float = 60.0) -> None:
        """DevStart `server` (e.g. "Pilatus/sim") as Astor does, and wait until Starter sees it run."""
        if server not in self.running_servers():
            self.starter_proxy().command_inout("DevStart", server)

        def why() -> str:
            others = [pid for pid in same_named_processes(server) if not started_by(pid, self.root)]
            if not others:
                return f"Starter to run {server}"
            command = server.replace("/", " ")
            return (
                f"Starter to run {server}: process {others[0]} on this host already runs '{command}', "
                f"which Starter takes for it (pick another instance name)"
            )

        wait_until(lambda: server in self.running_servers(), timeout, interval=0.2, message=why)

    def stop_server(self, server: str, timeout: float = 60.0) -> None:
        """DevStop `server` as Astor does, and wait until Starter sees it stopped."""
        self.starter_proxy().command_inout("DevStop", server)
        wait_until(
            lambda: server not in self.running_servers(), timeout, interval=0.2, message=f"Starter to stop {server}"
        )

    def our_processes(self) -> list[int]:
        """PIDs of processes carrying this facility's marker (Starter and the servers it started)."""
        pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
        return [pid for pid in pids if pid != os.getpid() and started_by(pid, self.root)]

    def services(self) -> list[str]:
        """The control system's services (free property CtrlSystem/Services)."""
        return list(self.database().get_property(CONTROL_SYSTEM, [SERVICES])[SERVICES])

    def enable_access_control(self, timeout: float = 30.0) -> None:
        """Run Tango's TangoAccessControl on this MariaDB and declare it in CtrlSystem/Services:
        from then on every client checks its rights there when it builds a DeviceProxy. It runs
        until `stop()`: a client keeps asking the service it found, and reads only when it is gone."""
        binary = _require(ACCESS_CONTROL, "Tango's TangoAccessControl (tango-accesscontrol)")
        log = self.root / "accesscontrol.log"
        if self.mariadb is None:
            raise RuntimeError("TangoAccessControl reads the facility's own MariaDB: this Facility has none")
        # TangoAccessControl 9.3 inserts rules without their `updated` column, which MariaDB's default
        # strict mode refuses ("Field 'updated' doesn't have a default value"): its sessions need a lax one.
        self.mariadb.sql(f"SET GLOBAL sql_mode = '{ACCESS_CONTROL_SQL_MODE}'")
        with open(log, "ab") as out:
            self.access_control = subprocess.Popen(
                [binary, "1", "-ORBendPoint", f"giop:tcp:{self.tango_host.rpartition(':')[0]}:"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**self.env, **databaseds_env(self.mariadb, self.tango_host)},
            )  # fmt: skip
        wait_until_ready(
            self.access_control, lambda: self.proxy(ACCESS_CONTROL_DEVICE).ping() >= 0, timeout,
            f"TangoAccessControl {ACCESS_CONTROL_DEVICE}", log,
        )  # fmt: skip
        if ACCESS_CONTROL_SERVICE not in self.services():
            self.database().put_property(CONTROL_SYSTEM, {SERVICES: [*self.services(), ACCESS_CONTROL_SERVICE]})

    def stop(self) -> None:
        if self.access_control is not None:
            stop_child(self.access_control)
        if self.starter is not None:
            stop_child(self.starter)
        for pid in self.our_processes():
            stop_process(pid, self.root)
        if self.databaseds is not None:
            stop_child(self.databaseds)
        if self.mariadb is not None:
            self.mariadb.stop()


def start_facility(
    root: Path, timeout: float = 60.0, *, address: str = LOOPBACK, port: int | None = None, starter: bool = True
) -> Facility:
    """MariaDB with the Tango schema, DataBaseds on `address`:`port` (free port by default), and
    (with `starter`) a Starter for this host whose servers bind to `address`. A `root` used before
    keeps its database: that is a restart of the database host."""
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, MARKER_ENV: str(root)}
    restart = (root / "mariadb" / "data").exists()
    mariadb = start_mariadb(root / "mariadb", timeout=timeout)
    tango_host = f"{address}:{port or free_port()}"
    try:
        if not restart:
            create_tango_schema(mariadb)
        databaseds = start_databaseds(mariadb, tango_host, root / "databaseds.log", env)
    except Exception:
        mariadb.stop()
        raise
    facility = Facility(root, tango_host, starter_host_name(), mariadb, databaseds, env=env)
    try:
        wait_until_ready(
            databaseds, lambda: facility.database().get_info(), timeout, f"DataBaseds on {tango_host}",
            root / "databaseds.log",
        )  # fmt: skip
        if starter:
            _start_host_starter(facility, address, timeout)
    except Exception:
        facility.stop()
        raise
    return facility


def start_host_starter(root: Path, tango_host: str, address: str, timeout: float = 60.0) -> Facility:
    """A Starter for this host against an existing database; its servers bind to `address`."""
    root.mkdir(parents=True, exist_ok=True)
    facility = Facility(root, tango_host, starter_host_name(), env={**os.environ, MARKER_ENV: str(root)})
    try:
        _start_host_starter(facility, address, timeout)
    except Exception:
        facility.stop()
        raise
    return facility


def _start_host_starter(facility: Facility, address: str, timeout: float) -> None:
    # The servers Starter forks inherit this: they find the database and bind to this host's address.
    facility.env = {**facility.env, "TANGO_HOST": facility.tango_host, "ORBendPoint": f"giop:tcp:{address}:"}
    log_home = facility.root / "starter-logs"
    log_home.mkdir(exist_ok=True)
    register_starter(facility.database(), facility.host, log_home)
    facility.starter = start_starter(facility.host, facility.root / "starter.log", facility.env)
    wait_until_ready(
        facility.starter, lambda: facility.proxy(facility.starter_device).state() == tango.DevState.ON, timeout,
        f"Starter {facility.starter_device}", facility.root / "starter.log",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Run one simulated host's part until SIGTERM (the multi-host tests start these in namespaces):

    python -m tango_servers.stack.mariadb database ROOT ADDRESS PORT   # MariaDB + DataBaseds
    python -m tango_servers.stack.mariadb starter ROOT ADDRESS TANGO_HOST   # Starter for this host
    """
    import signal
    import sys
    import threading

    role, root, address, where = argv or sys.argv[1:]
    if role == "database":
        facility = start_facility(Path(root), address=address, port=int(where), starter=False)
    else:
        facility = start_host_starter(Path(root), where, address)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print(f"ready {facility.tango_host}", flush=True)
    try:
        stopped.wait()
    finally:
        facility.stop()


if __name__ == "__main__":
    main()
