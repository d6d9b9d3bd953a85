"""`tango-suite deploy`: the suite's servers in an existing Tango database, run by the facility's Starter.

Deploying is a dsconfig diff (applied only with `write`), plus what Astor writes for a server Starter
controls: the server's host, control mode and startup level, and the Starter's `StartDsPath`. Servers
deploy creates are recorded in the free property `tango-suite/deployed_servers`; anything else in the
database is left alone, and every check runs before the first write.
"""

import contextlib
import io
import json
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tango

from .config import ConfigError, ServerSpec, SuiteConfig, load_config
from .database import _tango_host_env, database_proxy

OWNER_OBJECT = "tango-suite"
OWNER_PROPERTY = "deployed_servers"
# Axes first; the detector and camera follow axes; the bridges follow everything.
STARTUP_LEVELS = {"Automation1": 1, "Pilatus": 2, "OAV": 2, "PvaBridge": 3, "RedisBridge": 3}
DEFAULT_LEVEL = 2
CONTROLLED = 1  # Starter's "controlled" mode, as Astor sets it
DATABASE_TIMEOUT = 5.0


class DeployError(Exception):
    """Input deploy cannot act on: one line naming the thing and where; nothing was written."""


@dataclass(frozen=True)
class ServerRegistration:
    """What Starter reads for one server: host, control mode and startup level."""

    server: str
    host: str
    level: int
    mode: int = CONTROLLED

    def db_info(self) -> tango.DbServerInfo:
        info = tango.DbServerInfo()
        info.name, info.host, info.mode, info.level = self.server, self.host, self.mode, self.level
        return info


@dataclass
class DeployPlan:
    """The changes one deploy would make; empty when the database already matches."""

    tango_host: str
    host: str
    dsconfig_calls: list[tuple[str, tuple, dict]] = field(default_factory=list)
    dsconfig_diff: str = ""
    registrations: list[ServerRegistration] = field(default_factory=list)
    starter_properties: dict[str, list[str]] = field(default_factory=dict)
    new_owned: list[str] = field(default_factory=list)

    @property
    def starter_device(self) -> str:
        return starter_device(self.host)

    @property
    def empty(self) -> bool:
        return not (self.dsconfig_calls or self.registrations or self.starter_properties or self.new_owned)

    def describe(self) -> str:
        """The diff a controls engineer reviews before `--write`."""
        if self.empty:
            return f"No changes needed in {self.tango_host}."
        lines = [f"Changes in {self.tango_host}:"]
        if self.dsconfig_calls:
            lines += ["dsconfig:", self.dsconfig_diff.rstrip()]
        for reg in self.registrations:
            lines.append(f"Starter {self.starter_device}: run {reg.server} on host {reg.host} at level {reg.level}")
        for name, value in self.starter_properties.items():
            lines.append(f"Starter {self.starter_device}: property {name} = {value}")
        return "\n".join(lines)


def starter_device(host: str) -> str:
    return f"tango/admin/{host}"


def this_host() -> str:
    """The short host name, as Starter names itself (`tango/admin/<host>`)."""
    return socket.gethostname().split(".")[0]


def default_ds_path() -> Path:
    """The directory of this environment's console scripts (Starter runs `<StartDsPath>/<Server> <instance>`)."""
    return Path(sys.executable).parent


def connect(tango_host: str, timeout: float = DATABASE_TIMEOUT) -> tango.Database:
    """The database at HOST:PORT; DeployError when nothing answers there."""
    host, _, port = tango_host.rpartition(":")
    if not host or not port.isdigit():
        raise DeployError(f"--tango-host '{tango_host}': expected HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
        db = database_proxy(tango_host, timeout)
        db.get_info()
    except (OSError, tango.DevFailed) as exc:
        reason = exc.args[0].desc.strip() if isinstance(exc, tango.DevFailed) else exc.strerror or str(exc)
        raise DeployError(f"cannot reach the Tango database at {tango_host} (--tango-host): {reason}") from exc
    return db


def owned_servers(db: tango.Database) -> list[str]:
    """Servers earlier deploys created in this database."""
    return list(db.get_property(OWNER_OBJECT, [OWNER_PROPERTY])[OWNER_PROPERTY])


def server_registration(db: tango.Database, server: str) -> ServerRegistration | None:
    """The server's host, mode and level as Starter reads them; None when never registered."""
    # DbGetServerInfo itself: the C++ DataBaseds answers blanks for an unknown server, which
    # Database.get_server_info cannot parse.
    _, host, mode, level = (item.strip() for item in db.command_inout("DbGetServerInfo", server))
    if not host:
        return None
    return ServerRegistration(server, host, int(level or 0), int(mode or 0))


def plan_deploy(
    db: tango.Database, config: SuiteConfig, host: str, ds_path: Path, *, adopt: bool = False
) -> DeployPlan:
    """Check everything and work out the changes; writes nothing. DeployError on bad input."""
    tango_host = f"{db.get_db_host()}:{db.get_db_port()}"
    _check_starter(db, host, tango_host)
    _check_executables(config, ds_path)
    owned = owned_servers(db)
    for spec in config.servers:
        _check_server(db, spec, owned, tango_host, config.source, adopt)
    plan = DeployPlan(tango_host, host)
    plan.dsconfig_calls, plan.dsconfig_diff = _dsconfig_diff(db, config, tango_host)
    for spec in config.servers:
        wanted = ServerRegistration(spec.name, host, STARTUP_LEVELS.get(spec.server, DEFAULT_LEVEL))
        if server_registration(db, spec.name) != wanted:
            plan.registrations.append(wanted)
    paths = list(db.get_device_property(starter_device(host), ["StartDsPath"])["StartDsPath"])
    if str(ds_path) not in paths:
        plan.starter_properties["StartDsPath"] = [*paths, str(ds_path)]
    plan.new_owned = [spec.name for spec in config.servers if spec.name not in owned]
    return plan


def apply_deploy(db: tango.Database, plan: DeployPlan) -> None:
    """Write a plan: dsconfig's calls, the server registrations, Starter's properties; then tell Starter."""
    for method, args, kwargs in plan.dsconfig_calls:
        getattr(db, method)(*args, **kwargs)
    for registration in plan.registrations:
        db.put_server_info(registration.db_info())
    if plan.starter_properties:
        db.put_device_property(plan.starter_device, plan.starter_properties)
    if plan.new_owned:
        db.put_property(OWNER_OBJECT, {OWNER_PROPERTY: owned_servers(db) + plan.new_owned})
    starter = tango.DeviceProxy(f"tango://{plan.tango_host}/{plan.starter_device}")
    starter.set_timeout_millis(int(DATABASE_TIMEOUT * 1000))
    if plan.starter_properties:
        starter.command_inout("Init")  # Starter reads StartDsPath in init_device
    starter.command_inout("UpdateServersInfo")


def _check_starter(db: tango.Database, host: str, tango_host: str) -> None:
    device = starter_device(host)
    try:
        info = db.get_device_info(device)
    except tango.DevFailed as exc:
        raise DeployError(
            f"no Starter on host '{host}' in {tango_host}: {device} is not defined (install and register "
            f"tango-starter there, or pick the host with --host)"
        ) from exc
    if info.class_name != "Starter":
        raise DeployError(f"{device} in {tango_host} is a {info.class_name}, not a Starter")
    if not info.exported:
        raise DeployError(f"the Starter {device} in {tango_host} is not running on host '{host}': start it first")


def _check_executables(config: SuiteConfig, ds_path: Path) -> None:
    for spec in config.servers:
        executable = ds_path / spec.server
        if not os.access(executable, os.X_OK):
            raise DeployError(
                f"Starter could not run {spec.name}: no executable {executable} (--ds-path, in {config.source})"
            )


def _check_server(
    db: tango.Database, spec: ServerSpec, owned: list[str], tango_host: str, source: str, adopt: bool
) -> None:
    listed = list(db.get_device_class_list(spec.name))
    classes = {cls for cls in listed[1::2] if cls != "DServer"}
    if not classes:
        return
    foreign = classes - set(spec.devices_by_class)
    if foreign:
        raise DeployError(
            f"server {spec.name} already exists in {tango_host} with class {', '.join(sorted(foreign))}, "
            f"not {', '.join(spec.devices_by_class)} as in {source}: rename the instance in the configuration"
        )
    if spec.name not in owned and not adopt:
        raise DeployError(
            f"server {spec.name} already exists in {tango_host} and was not created by tango-suite deploy: "
            f"pass --adopt to take it over"
        )


def _dsconfig_diff(db: tango.Database, config: SuiteConfig, tango_host: str) -> tuple[list, str]:
    """dsconfig's own dry run: its database calls and its human-readable diff."""
    from dsconfig.json2tango import apply_config, prepare_config
    from dsconfig.output import show_actions
    from dsconfig.tangodb import summarise_calls
    from dsconfig.utils import no_colors

    document: dict[str, Any] = prepare_config(config.document)
    with _tango_host_env(db), contextlib.redirect_stdout(io.StringIO()):
        _, original, calls, collisions, alias_collisions, _ = apply_config(document, db, write=False, update=True)
    # A device without alias has NULL there, which dsconfig reads back as an alias "" to delete.
    calls = [call for call in calls if call[:2] != ("delete_device_alias", ("",))]
    for server, moved in collisions.items():
        devices = ", ".join(device for _, device in moved)
        raise DeployError(f"device {devices} in {config.source} already belongs to server {server} in {tango_host}")
    for alias, old_device, new_device in alias_collisions:
        raise DeployError(
            f"alias '{alias}' of {new_device} in {config.source} already names {old_device} in {tango_host}"
        )
    deletions = [call for call in calls if call[0].startswith("delete")]
    if deletions:
        method, args, _ = deletions[0]
        raise DeployError(f"deploy would delete ({method} {args}) in {tango_host}; deploy never deletes")
    if not calls:
        return [], ""
    no_colors()
    diff = io.StringIO()
    with contextlib.redirect_stdout(diff):
        show_actions(original, calls)
    summary = "\n".join(summarise_calls(calls, original))
    return calls, f"{diff.getvalue()}{summary}\n"


def deployment_status(db: tango.Database) -> list[dict[str, Any]]:
    """One row per deployed server: its host and level from the database, its state from that host's Starter."""
    tango_host = f"{db.get_db_host()}:{db.get_db_port()}"
    running: dict[str, set[str] | None] = {}
    rows = []
    for server in owned_servers(db):
        info = server_registration(db, server) or ServerRegistration(server, "", 0, 0)
        admin = db.get_device_info(f"dserver/{server}")
        if info.host and info.host not in running:
            running[info.host] = _starter_running(tango_host, info.host)
        starter = running.get(info.host)
        rows.append(
            {
                "server": server,
                "host": info.host,
                "level": info.level,
                "exported": bool(admin.exported),
                "pid": admin.pid if admin.exported else None,
                "starter": "unreachable" if starter is None else ("running" if server in starter else "stopped"),
            }
        )
    return rows


def _starter_running(tango_host: str, host: str) -> set[str] | None:
    try:
        starter = tango.DeviceProxy(f"tango://{tango_host}/{starter_device(host)}")
        starter.set_timeout_millis(int(DATABASE_TIMEOUT * 1000))
        return set(starter.command_inout("DevGetRunningServers", True))
    except tango.DevFailed:
        return None


def status_table(rows: list[dict[str, Any]]) -> str:
    header = f"{'server':<24} {'host':<16} {'level':>5}  {'exported':<8}  {'pid':>7}  starter"
    lines = [header]
    for row in rows:
        pid = row["pid"] or "-"
        exported = "yes" if row["exported"] else "no"
        lines.append(
            f"{row['server']:<24} {row['host']:<16} {row['level']:>5}  {exported:<8}  {pid:>7}  {row['starter']}"
        )
    return "\n".join(lines)


def run_deploy(
    tango_host: str,
    config_path: str | None = None,
    host: str | None = None,
    ds_path: Path | None = None,
    *,
    write: bool = False,
    adopt: bool = False,
) -> int:
    """`tango-suite deploy`: print the plan; apply it with `write`. DeployError on bad input."""
    db = connect(tango_host)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise DeployError(str(exc)) from exc
    plan = plan_deploy(db, config, host or this_host(), (ds_path or default_ds_path()).absolute(), adopt=adopt)
    print(plan.describe())
    if plan.empty:
        return 0
    if not write:
        print("Nothing was written: run again with --write to apply.")
        return 0
    apply_deploy(db, plan)
    print(f"Written to {plan.tango_host}.")
    return 0


def run_status(tango_host: str, *, as_json: bool = False) -> int:
    """`tango-suite status --tango-host`: the deployed servers, through the database and Starter."""
    rows = deployment_status(connect(tango_host))
    print(json.dumps(rows, indent=2) if as_json else status_table(rows))
    return 0
