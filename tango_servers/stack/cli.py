"""`tango-suite`: bring the local stack up, look at it, and take it down.

    tango-suite up [--config FILE] [--tango-host 127.0.0.1:PORT] [--detach] [--no-redis] [--no-bridges] [--sardana]
                   [--no-tiled | --tiled-uri URI]
    tango-suite status [--json] [--tango-host HOST:PORT]
    tango-suite deploy --tango-host HOST:PORT [--config FILE] [--host NAME] [--write]
    tango-suite env
    tango-suite demo
    tango-suite shell [-c CODE]
    tango-suite tiled import
    tango-suite down

Every subcommand takes --state-dir (default $TANGO_SUITE_HOME or ~/.local/state/tango-suite).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .config import ConfigError, load_config
from .processes import LOOPBACK, pid_alive, port_in_use, started_by, stop_process
from .redis_server import redis_server_path
from .sardana import sardana_available
from .serve import EXTRA_SERVERS_ENV
from .state import StackBusy, StackState, default_state_dir
from .status import stack_status, status_table
from .supervisor import HANG_TIMEOUT, StackOptions, runnable, spawn_supervisor
from .tiled_server import DEFAULT_TILED_PORT

DEFAULT_TANGO_HOST = f"{LOOPBACK}:10000"
UP_TIMEOUT = 180.0
DOWN_TIMEOUT = 60.0


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (UsageError, ConfigError) as exc:
        print(f"tango-suite: {exc}", file=sys.stderr)
        return 2
    except StackBusy as exc:
        print(f"tango-suite: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tango-suite", description=__doc__.split("\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="stack state directory (default: $TANGO_SUITE_HOME or ~/.local/state/tango-suite)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", parents=[common], help="start the database, servers, bridges and Redis")
    up.add_argument("--config", help="dsconfig JSON file (default: the configuration shipped with the suite)")
    up.add_argument("--tango-host", default=DEFAULT_TANGO_HOST, help="database address, 127.0.0.1:PORT")
    up.add_argument("--detach", action="store_true", help="return once everything is up")
    up.add_argument("--no-redis", action="store_true", help="do not start redis-server")
    up.add_argument("--no-bridges", action="store_true", help="do not start the PVA and Redis bridges")
    up.add_argument("--sardana", action="store_true", help="also start Sardana (Pool, MacroServer)")
    tiled = up.add_mutually_exclusive_group()
    tiled.add_argument("--no-tiled", action="store_true", help="do not start a Tiled server (runs are not kept)")
    tiled.add_argument("--tiled-uri", help="keep runs in this Tiled instead (API key from $TILED_API_KEY)")
    up.add_argument(
        "--hang-timeout",
        type=float,
        default=HANG_TIMEOUT,
        help=f"restart a server whose devices do not answer State() for this many seconds (default {HANG_TIMEOUT:g})",
    )
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", parents=[common], help="servers, devices, states, pids")
    status.add_argument("--json", action="store_true", help="machine-readable list of objects")
    status.add_argument("--tango-host", help="report the servers deployed in this database instead (HOST:PORT)")
    status.set_defaults(func=cmd_status)

    deploy = sub.add_parser("deploy", help="put the servers into an existing Tango database, run by Starter")
    deploy.add_argument("--tango-host", required=True, help="the facility's Tango database, HOST:PORT")
    deploy.add_argument("--config", help="dsconfig JSON file (default: the configuration shipped with the suite)")
    deploy.add_argument("--host", help="host whose Starter runs the servers (default: this host)")
    deploy.add_argument("--ds-path", type=Path, help="directory of the server executables (default: this venv's bin)")
    deploy.add_argument("--adopt", action="store_true", help="take over servers deploy did not create")
    deploy.add_argument("--write", action="store_true", help="apply the changes (default: only show them)")
    deploy.set_defaults(func=cmd_deploy)

    down = sub.add_parser("down", parents=[common], help="stop everything the stack started")
    down.set_defaults(func=cmd_down)

    env = sub.add_parser("env", parents=[common], help="print export lines for a shell or notebook")
    env.set_defaults(func=cmd_env)

    demo = sub.add_parser("demo", parents=[common], help="run a short bluesky scan against the stack")
    demo.set_defaults(func=cmd_demo)

    shell = sub.add_parser("shell", parents=[common], help="IPython with a RunEngine and every device by name")
    shell.add_argument("-c", dest="code", help="run this code (no terminal needed) and exit")
    shell.set_defaults(func=cmd_shell)

    tiled_cmd = sub.add_parser("tiled", help="the runs kept in Tiled")
    tiled_sub = tiled_cmd.add_subparsers(dest="tiled_command", required=True)
    tiled_import = tiled_sub.add_parser("import", parents=[common], help="send the backed-up runs to Tiled")
    tiled_import.set_defaults(func=cmd_tiled_import)
    return parser


def _state(args: argparse.Namespace) -> StackState:
    return StackState((args.state_dir or default_state_dir()).expanduser().resolve())


def running_state(state: StackState) -> dict[str, Any] | None:
    """The state of a live, supervised stack in `state`, or None. Reads only: never stops anything."""
    current = state.read()
    if current is None:
        return None
    if current.get("phase") not in ("failed", "stopped") and started_by(current.get("supervisor_pid"), state.root):
        return current
    return None


def leftover_pids(state: StackState, stale: dict[str, Any]) -> list[int]:
    """PIDs of this stack's processes still alive after its supervisor died."""
    return [c["pid"] for c in stale.get("components", []) if started_by(c.get("pid"), state.root)]


def unsupervised_message(state: StackState) -> str | None:
    """One line about a stack whose supervisor died while some of its processes run; None otherwise."""
    stale = state.read()
    if not stale or running_state(state) or not (leftovers := leftover_pids(state, stale)):
        return None
    return (
        f"the stack in {state.root} is unsupervised: its supervisor (pid {stale.get('supervisor_pid')}) is gone "
        f"but {len(leftovers)} of its processes still run; 'tango-suite up' cleans and restarts it, "
        "'tango-suite down' stops them"
    )


def clean_stale(state: StackState, stale: dict[str, Any]) -> None:
    """Stop what a dead stack left running and forget it; say so when it was unsupervised.
    `up` cleans rather than adopts: a new supervisor could not tell how the old one left them."""
    leftovers = leftover_pids(state, stale)
    for pid in leftovers:
        stop_process(pid, state.root)
    state.clear()
    if leftovers:
        print(
            f"tango-suite: cleaned stale state of an unsupervised stack in {state.root}: its supervisor "
            f"(pid {stale.get('supervisor_pid')}) was gone; stopped its {len(leftovers)} leftover processes "
            f"(pids {', '.join(map(str, leftovers))}); starting afresh"
        )
    elif stale.get("phase") != "failed":
        print(f"tango-suite: cleaned stale state of a crashed run in {state.root} (no leftover processes)")


def _parse_tango_host(value: str) -> str:
    host, _, port = value.rpartition(":")
    if host not in (LOOPBACK, "localhost") or not port.isdigit():
        raise UsageError(f"--tango-host '{value}': expected {LOOPBACK}:PORT (the stack binds to loopback only)")
    if not 1 <= int(port) <= 65535:
        raise UsageError(f"--tango-host '{value}': port {int(port)} is not between 1 and 65535")
    return f"{LOOPBACK}:{int(port)}"


def _parse_tiled_uri(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise UsageError(f"--tiled-uri '{value}': expected an http:// or https:// address of a Tiled server")
    return value.rstrip("/")


def _ensure_writable(state: StackState) -> None:
    """Create the state directory and prove it can be written, or say in one line why not."""
    try:
        state.ensure()
        probe = state.root / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"state dir {state.root} is not writable: {exc.strerror or exc}") from exc


def cmd_up(args: argparse.Namespace) -> int:
    state = _state(args)
    tango_host = _parse_tango_host(args.tango_host)
    if args.hang_timeout <= 0:
        raise UsageError(f"--hang-timeout {args.hang_timeout:g}: expected a positive number of seconds")
    _ensure_writable(state)
    with state.starting():
        supervisor = _start_locked(state, args, tango_host)
    if supervisor is None:
        return 0
    return follow(state, supervisor, detach=args.detach)


def _start_locked(state: StackState, args: argparse.Namespace, tango_host: str) -> subprocess.Popen | None:
    """Under the start-up lock: check, clean a dead stack explicitly, start, wait until ready."""
    current = running_state(state)
    if current:
        print(f"tango-suite: the stack is already up on {current['tango_host']} (state dir {state.root})")
        print("'tango-suite status' shows it; 'tango-suite down' stops it.")
        return None
    stale = state.read()
    if stale is not None:
        clean_stale(state, stale)
    options = StackOptions(
        state_dir=str(state.root),
        tango_host=tango_host,
        config_path=args.config and str(Path(args.config).resolve()),
        redis=not args.no_redis,
        bridges=not args.no_bridges,
        extra_servers=json.loads(os.environ.get(EXTRA_SERVERS_ENV, "{}")),
        sardana=args.sardana,
        tiled=not args.no_tiled,
        tiled_port=DEFAULT_TILED_PORT if tango_host == DEFAULT_TANGO_HOST else None,
        pva_standard_ports=tango_host == DEFAULT_TANGO_HOST,
        tiled_uri=_parse_tiled_uri(args.tiled_uri) if args.tiled_uri else None,
        hang_timeout=args.hang_timeout,
    )
    if options.sardana and not sardana_available():
        raise UsageError("--sardana needs Sardana in this environment: pip install -e '.[sardana]'")
    config = runnable(load_config(options.config_path, options.extra_servers), options)
    port = int(tango_host.rsplit(":", 1)[1])
    if port_in_use(port):
        raise UsageError(
            f"port {port} on {LOOPBACK} is already in use (Tango database, --tango-host); "
            f"pick a free one with --tango-host {LOOPBACK}:PORT"
        )
    if options.tiled and not options.tiled_uri and options.tiled_port and port_in_use(options.tiled_port):
        raise UsageError(
            f"port {options.tiled_port} on {LOOPBACK} is already in use (Tiled of the default stack); "
            "use --no-tiled, or --tiled-uri URI for a Tiled that runs already"
        )
    wants_redis = not args.no_redis and any(s.server == "RedisBridge" for s in config.servers)
    if wants_redis:
        try:
            redis_server_path()
        except FileNotFoundError as exc:
            raise UsageError(f"{exc} (needed by the RedisBridge in {config.source}; or use --no-redis)") from exc
    print(f"tango-suite: starting on {options.tango_host} (state dir {state.root})", flush=True)
    supervisor = spawn_supervisor(state, options)
    print(status_table(stack_status(wait_until_up(state, supervisor))))
    return supervisor


def wait_until_up(state: StackState, supervisor: subprocess.Popen, *, quiet: bool = False) -> dict[str, Any]:
    """Follow state.json until the stack is ready, printing each component's progress.

    Raises UsageError with the supervisor's reason when the start-up fails.
    """
    seen: dict[str, str] = {}
    deadline = time.monotonic() + UP_TIMEOUT
    while True:
        current = state.read() or {}
        for component in current.get("components", []):
            if seen.get(component["name"]) != component["status"]:
                seen[component["name"]] = component["status"]
                if not quiet:
                    print(f"  {component['name']:<28} {component['status']}", flush=True)
        phase = current.get("phase")
        if phase == "ready":
            return current
        if phase == "failed" or supervisor.poll() is not None:
            supervisor.wait(timeout=DOWN_TIMEOUT)
            reason = current.get("error") or f"the supervisor exited; see {state.supervisor_log}"
            state.clear()
            raise UsageError(f"start-up failed: {reason}")
        if time.monotonic() > deadline:
            stop_stack(state, state.read() or {})
            raise UsageError(f"start-up took longer than {UP_TIMEOUT:g} s; see {state.log_dir}")
        time.sleep(0.1)


def follow(state: StackState, supervisor: subprocess.Popen, *, detach: bool) -> int:
    """Return at once with --detach; else wait for the supervisor, stopping the stack on Ctrl-C."""
    if detach:
        tango_host = (state.read() or {}).get("tango_host")
        print(f"The stack is up. 'tango-suite env' prints TANGO_HOST={tango_host}; 'tango-suite down' stops it.")
        return 0
    print("The stack is up; press Ctrl-C to stop it.", flush=True)
    try:
        while supervisor.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\ntango-suite: stopping")
        stop_stack(state, state.read() or {})
    return 0


def stop_stack(state: StackState, current: dict[str, Any]) -> None:
    """Ask the supervisor to stop everything gently; then stop whatever of ours is left, by PID."""
    supervisor = current.get("supervisor_pid")
    if supervisor is not None and started_by(supervisor, state.root):
        os.kill(supervisor, signal.SIGTERM)
        deadline = time.monotonic() + DOWN_TIMEOUT
        while pid_alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop_process(supervisor, state.root, grace=1.0)
    for component in current.get("components", []):
        if component.get("pid"):
            stop_process(component["pid"], state.root)
    state.clear()


def cmd_down(args: argparse.Namespace) -> int:
    state = _state(args)
    current = state.read()
    if current is None:
        print(f"tango-suite: no stack is running in {state.root}")
        return 0
    stop_stack(state, current)
    print(f"tango-suite: stopped the stack in {state.root}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.tango_host:
        return cmd_deployed_status(args)
    state = _state(args)
    current = running_state(state)
    if not current:
        unsupervised = unsupervised_message(state)
        if args.json:
            previous = state.read() if unsupervised else None
            rows = [{**row, "status": "unsupervised"} for row in stack_status(previous)] if previous else []
            print(json.dumps(rows, indent=2))
        else:
            print(f"tango-suite: {unsupervised or f'no stack is running in {state.root}'}")
        return 1
    rows = stack_status(current)
    print(json.dumps(rows, indent=2) if args.json else status_table(rows))
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from .deploy import DeployError, run_deploy

    try:
        return run_deploy(args.tango_host, args.config, args.host, args.ds_path, write=args.write, adopt=args.adopt)
    except DeployError as exc:
        raise UsageError(str(exc)) from exc


def cmd_deployed_status(args: argparse.Namespace) -> int:
    from .deploy import DeployError, run_status

    try:
        return run_status(args.tango_host, as_json=args.json)
    except DeployError as exc:
        raise UsageError(str(exc)) from exc


def cmd_env(args: argparse.Namespace) -> int:
    state = _state(args)
    current = running_state(state)
    if not current:
        print(f"tango-suite: {unsupervised_message(state) or f'no stack is running in {state.root}'}", file=sys.stderr)
        return 1
    print(f"export TANGO_HOST={current['tango_host']}")
    services = current.get("services", {})
    if services.get("redis_url"):
        print(f"export TANGO_SUITE_REDIS_URL={services['redis_url']}")
    if services.get("redis_password_file"):
        password = Path(services["redis_password_file"]).read_text().strip()
        print(f"export TANGO_SUITE_REDIS_PASSWORD={password}")
    for key, value in services.get("pva", {}).items():
        print(f"export {key}={value}")
    tiled = services.get("tiled")
    if tiled:
        print(f"export TILED_URI={tiled['uri']}")
        if tiled.get("api_key_file"):
            print(f"export TILED_API_KEY={Path(tiled['api_key_file']).read_text().strip()}")
    return 0


def _require_running(args: argparse.Namespace) -> dict[str, Any]:
    state = _state(args)
    current = running_state(state)
    if not current:
        raise UsageError(f"no stack is running in {state.root}: start one with 'tango-suite up --detach'")
    return current


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(_require_running(args))


def cmd_shell(args: argparse.Namespace) -> int:
    from IPython import start_ipython

    from .kept_runs import tiled_settings
    from .session import bluesky_namespace

    current = _require_running(args)
    os.environ["TANGO_HOST"] = current["tango_host"]
    namespace = bluesky_namespace(current["tango_host"], tiled=tiled_settings(current))
    names = ", ".join(sorted(namespace["devices"]))
    argv = ["--no-banner", "--quick", "-c", args.code] if args.code else ["--quick", "--no-confirm-exit"]
    if not args.code:
        print(f"tango-suite shell on {current['tango_host']}: RE, bec, bp, bps and devices {names}")
        if namespace["keeper"]:
            print(f"Runs are kept in Tiled at {namespace['keeper'].settings.uri}")
    start_ipython(argv=argv, user_ns=namespace)
    return 0


def cmd_tiled_import(args: argparse.Namespace) -> int:
    import httpx

    from .kept_runs import import_backups, tiled_settings

    settings = tiled_settings(_require_running(args))
    if settings is None:
        raise UsageError("this stack keeps no runs in Tiled (it was started with --no-tiled)")
    try:
        uids = import_backups(settings)
    except (OSError, ValueError, httpx.HTTPError) as exc:
        raise UsageError(f"import into Tiled at {settings.uri}: {exc}") from exc
    print(f"tango-suite: imported {len(uids)} runs from {settings.backup_dir} into {settings.uri}")
    for uid in uids:
        print(f"  {uid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
