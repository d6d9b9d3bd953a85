"""The supervisor: starts the database, Redis and every device server, restarts what dies, stops all.

It runs as its own process (`python -m tango_servers.stack.supervisor STATE_DIR`), reads the
options `tango-suite up` left in the state directory and reports everything in `state.json`.
"""

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tango

from . import sardana
from .config import SuiteConfig, load_config
from .database import load_into_database, start_database, wait_for_database
from .processes import LOOPBACK, free_port, stop_child
from .redis_server import password_file, redis_url, stack_password, start_redis, wait_for_redis
from .serve import EXTRA_SERVERS_ENV
from .state import MARKER_ENV, StackState
from .tiled_server import api_key_file, backup_dir, start_tiled, tiled_answers, tiled_uri, wait_for_tiled
from .wiring import wire_services

OPTIONS_FILE = "options.json"
STARTUP_TIMEOUT = 60.0
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)
MAX_CRASHES = 5
CRASH_WINDOW = 120.0
TICK = 0.1
HANG_TIMEOUT = 10.0
# Longer than Tango's 3.2 s wait for a busy device's monitor, so a busy server replies (with
# an error) before this client gives up on it as hung.
STATE_TIMEOUT_MS = 4000
NO_REPLY_REASONS = {"API_DeviceTimedOut", "API_CantConnectToDevice", "API_DeviceNotExported"}
HEALTH_INTERVAL = 1.0

log = logging.getLogger("tango-suite")


@dataclass
class StackOptions:
    """What `tango-suite up` asked for; saved as options.json for the supervisor."""

    state_dir: str
    tango_host: str
    config_path: str | None = None
    redis: bool = True
    bridges: bool = True
    extra_servers: dict[str, str] = field(default_factory=dict)
    sardana: bool = False
    tiled: bool = True
    tiled_port: int | None = None  # None: a free port
    pva_standard_ports: bool = False  # the PVA bridge on 5075/5076 when free (the default stack)
    tiled_uri: str | None = None  # an existing Tiled instead of our own
    hang_timeout: float = HANG_TIMEOUT  # seconds without an answer to State() before a server is restarted

    def save(self, state: StackState) -> None:
        (state.root / OPTIONS_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state: StackState) -> "StackOptions":
        return cls(**json.loads((state.root / OPTIONS_FILE).read_text()))

    @property
    def port(self) -> int:
        return int(self.tango_host.rsplit(":", 1)[1])


def runnable(config: SuiteConfig, options: StackOptions) -> SuiteConfig:
    """The configuration the stack runs: the file, less the bridges with --no-bridges."""
    return config if options.bridges else config.without_servers({"PvaBridge", "RedisBridge"})


@dataclass
class Component:
    """One supervised process: how to start it and how to tell it is ready."""

    name: str
    kind: str  # database | redis | tiled | server
    launch: Callable[[], subprocess.Popen]
    ready: Callable[[], bool]
    devices: list[str] = field(default_factory=list)
    port: int | None = None
    process: subprocess.Popen | None = None
    status: str = "pending"  # pending | starting | running | restarting | failed | stopped
    restarts: int = 0
    started_at: float | None = None
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None
    silent_since: float | None = None  # when the first State() call still without any reply began
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def start(self) -> subprocess.Popen:
        self.process = self.launch()
        self.started_at = time.time()
        self.silent_since = None
        return self.process

    @property
    def started(self) -> subprocess.Popen:
        """The process the last `start` launched."""
        if self.process is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self.process

    def report(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "pid": self.process.pid if self.process else None,
            "port": self.port,
            "devices": self.devices,
            "restarts": self.restarts,
            "started_at": self.started_at,
            "message": self.message,
            **self.extra,
        }


def _no_reply(exc: tango.DevFailed) -> bool:
    """True when the call got no reply at all (timed out, or nobody listening), as from a hung server."""
    reasons = {error.reason for error in exc.args}
    text = " ".join(error.desc for error in exc.args)
    return bool(reasons & NO_REPLY_REASONS) or "TRANSIENT" in text


class StartupError(RuntimeError):
    """A component could not be brought up; the message says which and why."""


class Supervisor:
    def __init__(self, state: StackState, options: StackOptions, config: SuiteConfig) -> None:
        self.state = state
        self.options = options
        self.config = config
        self.stopping = threading.Event()
        self.components: list[Component] = []
        self.phase = "starting"
        self.error: str | None = None
        self.services: dict[str, Any] = {}
        self.proxies: dict[str, tango.DeviceProxy] = {}
        self.records_failing: str | None = None  # why state.json cannot be written, while it cannot
        self.env = {
            **os.environ,
            "TANGO_HOST": options.tango_host,
            MARKER_ENV: str(state.root),
            "PYTHONUNBUFFERED": "1",
        }
        extra_servers = {**options.extra_servers, **(sardana.SERVER_TARGETS if options.sardana else {})}
        if extra_servers:
            self.env[EXTRA_SERVERS_ENV] = json.dumps(extra_servers)

    # -- reporting -----------------------------------------------------------------------
    def publish(self) -> None:
        """Write state.json; on a full or read-only disk, say so once and keep supervising."""
        record = {
            "phase": self.phase,
            "error": self.error,
            "supervisor_pid": os.getpid(),
            "tango_host": self.options.tango_host,
            "state_dir": str(self.state.root),
            "config": self.config.source,
            "services": self.services,
            "components": [c.report() for c in self.components],
        }
        if self.records_failing:
            record["records"] = f"state.json could not be written for a while ({self.records_failing})"
        try:
            self.state.write(record)
        except OSError as exc:
            if not self.records_failing:
                self.records_failing = f"{time.strftime('%H:%M:%S')}: {exc}"
                warning = f"cannot write {self.state.state_file} ({exc}); still supervising"
                log.error(warning)
                with contextlib.suppress(OSError):  # stderr may be on the same full disk
                    print(f"tango-suite supervisor: {warning}", file=sys.stderr, flush=True)
            return
        if self.records_failing and "records" in record:
            log.warning("state.json written again after a failure (%s)", self.records_failing)
            self.records_failing = None

    # -- start-up ------------------------------------------------------------------------
    def start_all(self) -> None:
        db = self._start_database()
        redis_port = self._start_redis() if self._wants_redis() else None
        url, secret = (redis_url(redis_port), password_file(self.redis_dir)) if redis_port else (None, None)
        self.services = wire_services(self.config, url, secret, standard_pva_ports=self.options.pva_standard_ports)
        if redis_port and self.services.get("redis_url") == url:  # clients of the launcher's Redis log in
            self.services["redis_url"] = redis_url(redis_port, stack_password(self.redis_dir))
            self.services["redis_password_file"] = str(secret)
        self.services["tango_host"] = self.options.tango_host
        if self.options.tiled_uri:
            self.services["tiled"] = {"uri": self.options.tiled_uri, "backup_dir": str(backup_dir(self.state.root))}
        elif self.options.tiled:
            self.services["tiled"] = self._start_tiled()
        calls = load_into_database(self.config, db)
        log.info("configuration %s loaded into the database (%d calls)", self.config.source, calls)
        for spec in self.config.servers:
            component = self._server_component(spec.server, spec.instance, spec.devices)
            self.components.append(component)
            self._bring_up(component)
        if self.options.sardana:
            self._start_sardana()

    def _start_sardana(self) -> None:
        """Load the Sardana YAML into the database, then bring up the Pool and the MacroServer."""
        try:
            layout = sardana.load_sardana_config(self.options.tango_host, self.state.root, env=self.env)
        except sardana.SardanaConfigError as exc:
            raise StartupError(f"Sardana: {exc}") from exc
        self.services["sardana"] = {
            "door": layout.door,
            "macro_server": layout.macro_server,
            "pool": layout.pool,
            "scan_dir": layout.scan_dir,
            "ipython_dir": layout.ipython_dir,
        }
        for server in sardana.sardana_servers(layout):
            component = self._server_component(server.server, server.instance, server.devices)
            if server.follows:
                component.extra["follows"] = server.follows
            self.components.append(component)
            self._bring_up(component)

    @property
    def redis_dir(self) -> Path:
        return self.state.root / "redis"

    def _wants_redis(self) -> bool:
        return self.options.redis and any(s.server == "RedisBridge" for s in self.config.servers)

    def _start_database(self) -> tango.Database:
        port = self.options.port
        component = Component(
            name="database",
            kind="database",
            port=port,
            launch=lambda: start_database(port, self.state.database_file, self.state.log_file("database"), self.env),
            ready=lambda: bool(self._database_answers()),
            extra={"file": str(self.state.database_file)},
        )
        self.components.append(component)
        component.status = "starting"
        self.publish()
        process = component.start()
        try:
            db = wait_for_database(self.options.tango_host, process)
        except (TimeoutError, RuntimeError) as exc:
            raise StartupError(f"Tango database on {self.options.tango_host}: {exc}") from exc
        component.status = "running"
        self.publish()
        return db

    def _database_answers(self) -> bool:
        host, port = self.options.tango_host.split(":")
        db = tango.Database(host, int(port))
        db.set_timeout_millis(1000)
        db.get_info()
        return True

    def _start_redis(self) -> int:
        port = free_port()
        component = Component(
            name="redis",
            kind="redis",
            port=port,
            launch=lambda: start_redis(port, self.redis_dir, self.state.log_file("redis"), self.env),
            ready=lambda: True,
            extra={"url": redis_url(port)},
        )
        self.components.append(component)
        component.status = "starting"
        self.publish()
        process = component.start()
        try:
            wait_for_redis(port, process, stack_password(self.redis_dir))
        except (TimeoutError, RuntimeError) as exc:
            raise StartupError(f"redis-server on {LOOPBACK}:{port}: {exc}") from exc
        component.status = "running"
        self.publish()
        return port

    def _start_tiled(self) -> dict[str, str]:
        port = self.options.tiled_port or free_port()
        uri = tiled_uri(port)
        component = Component(
            name="tiled",
            kind="tiled",
            port=port,
            launch=lambda: start_tiled(port, self.state.root, self.state.log_file("tiled"), self.env),
            ready=lambda: tiled_answers(uri),
            extra={"uri": uri, "log": str(self.state.log_file("tiled"))},
        )
        self.components.append(component)
        component.status = "starting"
        self.publish()
        process = component.start()
        try:
            wait_for_tiled(uri, process)
        except (TimeoutError, RuntimeError) as exc:
            raise StartupError(f"Tiled on {uri}: {exc}; see {component.extra['log']}") from exc
        component.status = "running"
        self.publish()
        root = self.state.root
        return {"uri": uri, "api_key_file": str(api_key_file(root)), "backup_dir": str(backup_dir(root))}

    def _server_component(self, server: str, instance: str, devices: list[str]) -> Component:
        name = f"{server}/{instance}"
        component = Component(
            name=name,
            kind="server",
            devices=devices,
            launch=lambda: launch(),
            ready=lambda: self._devices_answer(devices),
        )

        def launch() -> subprocess.Popen:
            component.port = free_port()
            command = [
                sys.executable, "-m", "tango_servers.stack.serve", server, instance,
                "-ORBendPoint", f"giop:tcp:{LOOPBACK}:{component.port}",
            ]  # fmt: skip
            try:
                with open(self.state.log_file(name), "ab") as out:
                    out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {' '.join(command)}\n".encode())
                    out.flush()
                    return subprocess.Popen(
                        command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env
                    )
            except OSError as exc:
                # A full disk must not stop the restart: run without a log and say so.
                log.error("%s: cannot write its log (%s); starting it without one", name, exc)
                return subprocess.Popen(
                    command,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    stdin=subprocess.DEVNULL,
                    env=self.env,
                )

        component.extra["log"] = str(self.state.log_file(name))
        return component

    def _devices_answer(self, devices: list[str]) -> bool:
        for device in devices:
            if device not in self.proxies:
                proxy = tango.DeviceProxy(f"tango://{self.options.tango_host}/{device}")
                proxy.set_timeout_millis(STATE_TIMEOUT_MS)
                proxy.set_transparency_reconnection(False)  # a hung server fails one call, not several
                self.proxies[device] = proxy
            self.proxies[device].state()
        return True

    def _bring_up(self, component: Component) -> None:
        """Start a server and wait for its devices, restarting on early crashes."""
        component.status = "starting"
        self.publish()
        component.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.stopping.is_set():
            if component.started.poll() is not None:
                if not self._record_crash(component):
                    raise StartupError(
                        f"server {component.name} keeps exiting (code {component.started.returncode}); "
                        f"see {component.extra['log']}"
                    )
                assert component.restart_at is not None  # set by _record_crash
                self.stopping.wait(component.restart_at - time.monotonic())
                component.start()
                continue
            try:
                if component.ready():
                    component.status = "running"
                    self.publish()
                    return
            except tango.DevFailed:
                pass
            if time.monotonic() > deadline:
                raise StartupError(
                    f"server {component.name}: devices {', '.join(component.devices)} did not answer State() "
                    f"within {STARTUP_TIMEOUT:g} s; see {component.extra['log']}"
                )
            self.stopping.wait(TICK)

    # -- supervision ---------------------------------------------------------------------
    def _record_crash(self, component: Component) -> bool:
        """Note a crash and schedule a restart with backoff; False when it is time to give up."""
        now = time.monotonic()
        component.crashes = [t for t in component.crashes if now - t < CRASH_WINDOW] + [now]
        code = component.started.returncode
        if len(component.crashes) > MAX_CRASHES:
            component.status = "failed"
            component.message = f"gave up after {MAX_CRASHES} crashes in {CRASH_WINDOW:g} s (last exit code {code})"
            log.error("%s: %s", component.name, component.message)
            self.publish()
            return False
        delay = BACKOFF[min(len(component.crashes) - 1, len(BACKOFF) - 1)]
        component.restart_at = now + delay
        component.status = "restarting"
        component.message = f"exited with code {code}; restarting in {delay:g} s"
        log.warning("%s: %s", component.name, component.message)
        self.publish()
        return True

    def supervise(self) -> None:
        """Restart components that die or hang until asked to stop."""
        for component in self.components:
            if component.kind == "server":
                threading.Thread(
                    target=self._watch_answers, args=(component,), name=f"watch {component.name}", daemon=True
                ).start()
        while not self.stopping.wait(TICK):
            for component in self.components:
                self._supervise_one(component)
            if self.records_failing:
                self.publish()

    def _supervise_one(self, component: Component) -> None:
        if component.status in ("failed", "stopped") or component.process is None:
            return
        if component.status == "restarting":
            if component.restart_at is not None and time.monotonic() >= component.restart_at:
                component.restart_at = None
                component.restarts += 1
                component.start()
                log.info("%s restarted (pid %d)", component.name, component.started.pid)
                self.publish()
            elif component.restart_at is None:
                self._check_ready(component)
            return
        if component.started.poll() is not None:
            self._record_crash(component)
        elif component.kind == "server":
            self._check_answers(component)

    def _watch_answers(self, component: Component) -> None:
        """Ask a running server's devices for State() every HEALTH_INTERVAL and note each reply.

        One thread per server, so a hung server blocks only its own watcher."""
        while not self.stopping.wait(HEALTH_INTERVAL):
            if component.status != "running":
                continue
            asked = time.monotonic()
            try:
                component.ready()
            except tango.DevFailed as exc:
                if _no_reply(exc):
                    component.silent_since = component.silent_since or asked
                    continue
            component.silent_since = None  # a reply, even an error (e.g. a busy device), shows it is alive

    def _check_answers(self, component: Component) -> None:
        """Restart a running server whose devices have not answered State() for `hang_timeout` s."""
        if component.silent_since is None:
            return
        silent = time.monotonic() - component.silent_since
        if silent < self.options.hang_timeout:
            return
        log.warning("%s (pid %d) has not answered State() for %.1f s: killing it", component.name,
                    component.started.pid, silent)  # fmt: skip
        component.started.kill()
        component.started.wait(timeout=10)
        self._record_crash(component)
        component.extra["last_hang"] = f"{time.strftime('%Y-%m-%d %H:%M:%S')}: no answer to State() for {silent:.1f} s"
        component.message = f"hung, killed; {component.message}"
        self.publish()

    def _check_ready(self, component: Component) -> None:
        if component.started.poll() is not None:
            self._record_crash(component)
            return
        try:
            if component.ready():
                component.status = "running"
                component.message = ""
                self.publish()
                self._restart_followers(component)
        except tango.DevFailed:
            pass

    def _restart_followers(self, restarted: Component) -> None:
        """Restart the servers whose connections into `restarted` went stale (the MacroServer's
        into the Pool: a macro started before it reconnects hangs, and AbortMacro cannot free it)."""
        for follower in self.components:
            if follower.extra.get("follows") != restarted.name or follower.process is None:
                continue
            log.info("%s came back: restarting %s, which follows it", restarted.name, follower.name)
            stop_child(follower.process)
            follower.status = "restarting"
            follower.restart_at = time.monotonic()
            follower.message = f"restarting because {restarted.name} restarted"
            self.publish()

    # -- shut-down -----------------------------------------------------------------------
    def stop_all(self) -> None:
        """Stop servers in reverse order (gently first), then Redis, then the database."""
        self.phase = "stopping"
        self.publish()
        for component in reversed(self.components):
            if component.process:
                stop_child(component.process)
            component.status = "stopped"
        self.phase = "stopped"


def spawn_supervisor(state: StackState, options: StackOptions) -> subprocess.Popen:
    """Start the supervisor in its own session so it outlives this command."""
    options.save(state)
    state.clear()
    env = {**os.environ, MARKER_ENV: str(state.root), "TANGO_HOST": options.tango_host}
    with open(state.supervisor_log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tango_servers.stack.supervisor", str(state.root)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def run(state_dir: Path) -> int:
    """The supervisor process: bring everything up, supervise, stop on SIGTERM/SIGINT."""
    state = StackState(state_dir)
    state.ensure()
    logging.basicConfig(
        filename=state.supervisor_log,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    options = StackOptions.load(state)
    config = runnable(load_config(options.config_path, options.extra_servers), options)
    supervisor = Supervisor(state, options, config)

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        supervisor.stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    code = 0
    try:
        supervisor.start_all()
        if not supervisor.stopping.is_set():
            supervisor.phase = "ready"
            supervisor.publish()
            log.info("stack ready on %s", options.tango_host)
            supervisor.supervise()
    except Exception as exc:
        log.exception("start-up failed")
        supervisor.error = str(exc)
        code = 1
    finally:
        supervisor.stop_all()
        if code:
            supervisor.phase = "failed"
            supervisor.publish()
        else:
            state.clear()
        log.info("supervisor exits (%d)", code)
    return code


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
