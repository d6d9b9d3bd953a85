"""Sardana on the stack: load the shipped sardana-config YAML, run Pool and MacroServer, set up spock.

The launcher calls three things (all cheap to import: Sardana itself is only imported by the
processes that need it):

    layout = load_sardana_config(tango_host, state_dir)     # YAML -> Tango DB + MacroServer env
    for server in sardana_servers(layout):                   # Pool first, then MacroServer
        start `python -m tango_servers.stack.serve <server.server> <server.instance> -ORBendPoint ...`
        ready when every device in server.devices answers

`serve` finds `Pool` and `MacroServer` through SERVER_TARGETS (give them to it as extra servers).
Command line, for people and for the launcher's subprocess:

    python -m tango_servers.stack.sardana load --tango-host 127.0.0.1:PORT --state-dir DIR [--yaml FILE]
    python -m tango_servers.stack.sardana spock --state-dir DIR [spock/IPython options]
"""

import argparse
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path

INSTANCE = "tango_suite"
SPOCK_PROFILE = "tango_suite"
LAYOUT_FILE = "layout.json"
LOAD_TIMEOUT = 180.0

SERVER_TARGETS = {
    "Pool": "tango_servers.stack.sardana:run_pool",
    "MacroServer": "tango_servers.stack.sardana:run_macroserver",
}
"""Server executable name -> "module:function" for `tango_servers.stack.serve`."""


class SardanaConfigError(RuntimeError):
    """The Sardana configuration could not be loaded; the message says which file and why."""


@dataclass(frozen=True)
class SardanaServer:
    """One Sardana device server the launcher starts and supervises."""

    server: str  # "Pool" or "MacroServer"
    instance: str
    devices: list[str] = field(hash=False)
    follows: str | None = None  # restart this server whenever that one restarts

    @property
    def name(self) -> str:
        return f"{self.server}/{self.instance}"


@dataclass
class SardanaLayout:
    """What a loaded configuration created: servers, devices and where things live."""

    tango_host: str
    yaml: str
    servers: list[SardanaServer]
    pool: str | None  # None when the configuration declares no Pool (Sardana allows that), likewise door
    macro_server: str
    door: str | None
    scan_dir: str
    scan_file: str
    environment_db: str
    ipython_dir: str
    spock_profile: str = SPOCK_PROFILE

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "SardanaLayout":
        data = json.loads(text)
        data["servers"] = [SardanaServer(**s) for s in data["servers"]]
        return cls(**data)


def sardana_available() -> bool:
    """True when sardana and sardana-config are installed (the `sardana` extra)."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("sardana", "sardana_config", "sardana_limaccd", "sardana_tango", "itango")
    )


def default_sardana_yaml() -> Path:
    return Path(str(resources.files("tango_servers.sardana").joinpath("tango_suite.yaml")))


def controller_dir() -> Path:
    return Path(str(resources.files("tango_servers.sardana").joinpath("controllers")))


def macro_dir() -> Path:
    """Our macros (the MacroServer's MacroPath): the YAML's general hooks name them."""
    return Path(str(resources.files("tango_servers.sardana").joinpath("macros")))


# Controller plugins the YAML uses besides our own, by package: the Pool loads them from its pool_path.
# sardana-limaccd: the Pilatus (LimaCCDs); sardana-tango: attributes of the Pilatus camera device.
PLUGIN_PACKAGES = ("sardana_limaccd.ctrl", "sardana_tango.ctrl")


def plugin_dirs() -> list[Path]:
    """The Pool's pool_path: our controllers, then the installed plugins' controller directories."""
    return [controller_dir(), *(Path(str(resources.files(package))) for package in PLUGIN_PACKAGES)]


def sardana_dir(state_dir: Path | str) -> Path:
    return Path(state_dir) / "sardana"


def read_layout(state_dir: Path | str) -> SardanaLayout:
    """The layout the last load into this stack wrote (raises FileNotFoundError if none)."""
    return SardanaLayout.from_json((sardana_dir(state_dir) / LAYOUT_FILE).read_text())


# -- loading (the launcher's side) ---------------------------------------------------------------
def load_sardana_config(
    tango_host: str,
    state_dir: Path | str,
    yaml_path: Path | str | None = None,
    *,
    env: dict[str, str] | None = None,
    timeout: float = LOAD_TIMEOUT,
) -> SardanaLayout:
    """Load the Sardana YAML into the database at `tango_host`; return what it defines.

    Runs in a subprocess (Sardana and Taurus read TANGO_HOST once, at import, and start threads),
    writes the MacroServer environment (ScanDir, ScanFile, ActiveMntGrp) into its file under
    `state_dir/sardana/` and a spock profile under `state_dir/sardana/ipython`.
    Raises SardanaConfigError with the loader's own message when anything is wrong.
    """
    if not sardana_available():
        raise SardanaConfigError(
            "Sardana is not installed in this environment: pip install 'tango-bluesky-suite[sardana]'"
        )
    command = [sys.executable, "-m", "tango_servers.stack.sardana", "load", "--tango-host", tango_host,
               "--state-dir", str(state_dir)]  # fmt: skip
    if yaml_path:
        command += ["--yaml", str(yaml_path)]
    run_env = {**(env if env is not None else os.environ), "TANGO_HOST": tango_host}
    try:
        done = subprocess.run(
            command, env=run_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise SardanaConfigError(f"loading the Sardana configuration took longer than {timeout:g} s") from exc
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        raise SardanaConfigError(lines[-1] if lines else f"the Sardana loader exited with {done.returncode}")
    return read_layout(state_dir)


def sardana_servers(layout: SardanaLayout) -> list[SardanaServer]:
    """The servers to start, in order: the Pool before the MacroServer that connects to it.

    A server with `follows` set must be restarted whenever the server it names restarts.
    """
    return sorted(layout.servers, key=lambda s: s.server != "Pool")


def sardana_server_commands(layout: SardanaLayout, ports: dict[str, int]) -> list[tuple[str, list[str]]]:
    """(server name, argv) for each server, run the way the launcher runs every other server.

    `ports` maps "Pool/tango_suite"-style names to the port each server listens on.
    """
    commands = []
    for server in sardana_servers(layout):
        endpoint = f"giop:tcp:127.0.0.1:{ports[server.name]}"
        argv = [sys.executable, "-m", "tango_servers.stack.serve", server.server, server.instance]
        commands.append((server.name, [*argv, "-ORBendPoint", endpoint]))
    return commands


# -- the servers (run by `tango_servers.stack.serve`) ---------------------------------------------
def _sardana_args(server: str, args: list[str] | None) -> list[str]:
    args = list(args if args is not None else sys.argv)
    # Sardana writes a log file under /tmp/tango by default; the supervisor already logs stdout.
    if not any(a.startswith("--without-log-file") or a.startswith("--log-file-name") for a in args):
        args.insert(2, "--without-log-file=True")
    args[0] = server
    return args


def run_pool(args: list[str] | None = None) -> None:
    """The Sardana Pool server: `run_pool(["Pool", "tango_suite", "-ORBendPoint", ...])`."""
    import sardana.tango.pool

    sardana.tango.pool.run(args=_sardana_args("Pool", args))


def run_macroserver(args: list[str] | None = None) -> None:
    """The Sardana MacroServer server (with its Doors)."""
    import sardana.tango.macroserver

    sardana.tango.macroserver.run(args=_sardana_args("MacroServer", args))


# -- the loader (runs in its own process, TANGO_HOST set) ----------------------------------------
def _apply(tango_host: str, state_dir: Path, yaml_path: Path) -> SardanaLayout:
    from dsconfig.json2tango import apply_config
    from sardana_config.common import remove_defaults
    from sardana_config.environment import get_env_vars_from_config, sync_env_db
    from sardana_config.load import get_device_name
    from sardana_config.validate import sanity_check_config
    from sardana_config.yaml2dsconfig import build_dsconfig
    from sardana_config.yaml_utils import load_yaml_roundtrip

    from .database import database_proxy

    base = sardana_dir(state_dir)
    base.mkdir(parents=True, exist_ok=True)
    config = load_yaml_roundtrip(str(yaml_path))
    (ms_name, ms_info), *others = config["macro_servers"].items()
    if others:
        raise SardanaConfigError(f"{yaml_path}: exactly one MacroServer is supported")

    # Paths that depend on this install and this stack are filled in here, not in the YAML.
    for pool in config.get("pools", {}).values():
        pool["pool_path"] = [*map(str, plugin_dirs()), *(pool.get("pool_path") or [])]
    ms_info["macro_path"] = [str(macro_dir()), *(ms_info.get("macro_path") or [])]
    environment_db = str(base / Path(ms_info.get("environment_db") or "macroserver.env").name)
    ms_info["environment_db"] = environment_db
    variables = ms_info.setdefault("environment", {}).setdefault("variables", {})
    scan_dir = Path(variables.get("ScanDir") or base / "scans")
    scan_dir.mkdir(parents=True, exist_ok=True)
    variables["ScanDir"] = str(scan_dir)
    scan_files = variables.setdefault("ScanFile", ["tango_suite_scans.h5"])
    scan_file = scan_files[0] if isinstance(scan_files, list) else str(scan_files)
    # Inside the stack's data root (`<state dir>/data`), where the Pilatus may write.
    frames = Path(state_dir) / "data" / "sardana"
    frames.mkdir(parents=True, exist_ok=True)
    config.pop("tango_host", None)

    try:
        sanity_check_config(config, False)
    except RuntimeError as exc:
        raise SardanaConfigError(f"{yaml_path}: {exc}") from exc
    patterns = _reference_patterns(config, frames, time.strftime("%Y%m%d_%H%M%S"))
    config = remove_defaults(config)
    document = build_dsconfig(config)
    _enable_value_references(document, patterns)
    db = database_proxy(tango_host, timeout=10.0)
    # dsconfig draws progress on stdout; the launcher reports progress itself.
    with contextlib.redirect_stdout(io.StringIO()):
        apply_config(document, db, write=True, sleep=0, cleanup_protected_props=True)

    ms_device = get_device_name("MacroServer/{name}/1", ms_name, ms_info)
    # Plain types: the environment is pickled, and YAML round-trip types would leak into it.
    env_vars = json.loads(json.dumps(get_env_vars_from_config(ms_info)))
    sync_env_db(environment_db, updates=env_vars, removals=(), macro_server_device=ms_device)

    servers = []
    pool_device = door = None
    for server, instances in document["servers"].items():
        for instance, classes in instances.items():
            devices = [dev for by_class in classes.values() for dev in by_class]
            servers.append(SardanaServer(server, instance, devices))
            pool_device = next(iter(classes.get("Pool", {})), pool_device)
            door = next(iter(classes.get("Door", {})), door)
    # The MacroServer's event subscriptions into a restarted Pool go stale: restart it too.
    pools = [s.name for s in servers if s.server in ("Pool", "Sardana")]
    servers = [replace(s, follows=pools[0]) if s.server == "MacroServer" and len(pools) == 1 else s for s in servers]
    layout = SardanaLayout(
        tango_host=tango_host,
        yaml=str(yaml_path),
        servers=servers,
        pool=pool_device,
        macro_server=ms_device,
        door=door,
        scan_dir=str(scan_dir),
        scan_file=scan_file,
        environment_db=environment_db,
        ipython_dir=str(base / "ipython"),
    )
    write_spock_profile(layout)
    (base / LAYOUT_FILE).write_text(layout.to_json())
    return layout


# Controllers whose channels hand Sardana file references rather than images: their channels are
# recorded by reference in every measurement group (sardana-config's YAML cannot say so).
REFERENCING_CONTROLLERS = {"LimaCCDTwoDController"}

# sardana-limaccd's pattern: <scheme>://<saving_directory>/<saving_prefix>{index:<format>}<suffix>;
# the controller sets the LimaCCDs saving_* attributes from it (sardana_limaccd.client.saving_for_pattern).
VALUE_REF_PATTERN = "h5file://{directory}/sardana_{channel}_{load}_{{index:05d}}.h5"


def _reference_patterns(config, frames: Path, load: str) -> dict[str, str]:
    """channel name (lower case) -> its value_ref_pattern, for the channels of REFERENCING_CONTROLLERS.

    Each such element also gets ValueRefEnabled and ValueRefPattern as memorized attribute values,
    so that it is recorded by reference when counted on its own too. The pattern's prefix names
    the channel and this load: a new `up --sardana` never meets the files of an earlier one (the
    detector refuses to overwrite them: saving_overwrite_policy ABORT).
    """
    patterns = {}
    for pool in config.get("pools", {}).values():
        for controller in pool.get("controllers", {}).values():
            if controller.get("python_class") not in REFERENCING_CONTROLLERS:
                continue
            for name, element in controller.get("elements", {}).items():
                pattern = VALUE_REF_PATTERN.format(directory=frames, channel=name.lower(), load=load)
                attributes = element.setdefault("attributes", {})
                attributes.update(ValueRefEnabled=True, ValueRefPattern=pattern)
                patterns[name.lower()] = pattern
    return patterns


def _enable_value_references(document: dict, patterns: dict[str, str]) -> None:
    """Set value_ref_enabled and the value_ref_pattern of those channels in each measurement group."""
    for instances in document.get("servers", {}).values():
        for classes in instances.values():
            for device in classes.get("MeasurementGroup", {}).values():
                prop = device.get("attribute_properties", {}).get("Configuration", {}).get("__value")
                if not prop:
                    continue
                configuration = json.loads(prop[0])
                for controller in configuration.get("controllers", {}).values():
                    for channel in controller.get("channels", {}).values():
                        pattern = patterns.get(channel.get("name", "").lower())
                        if pattern:
                            channel["value_ref_enabled"] = True
                            channel["value_ref_pattern"] = pattern
                prop[0] = json.dumps(configuration)


SPOCK_PROFILE_TEXT = '''"""spock profile for the tango-suite stack on {tango_host} (written by tango-suite)."""
#
# spock reads the next two lines to decide whether the profile needs an upgrade.
# spock_creation_version = {version}
# door_name = {door}
#
import itango  # noqa: F401  (spock's Tango completion)

import sardana.spock

config = get_config()  # noqa: F821  (provided by IPython)
config.Spock.macro_server_name = "{macro_server}"
config.Spock.door_name = "{door}"
sardana.spock.load_config(config)
'''


def write_spock_profile(layout: SardanaLayout) -> Path:
    """An IPython profile dir `<ipython_dir>/profile_tango_suite` that connects spock to our Door."""
    import sardana.release

    profile = Path(layout.ipython_dir) / f"profile_{layout.spock_profile}"
    profile.mkdir(parents=True, exist_ok=True)
    text = SPOCK_PROFILE_TEXT.format(
        tango_host=layout.tango_host,
        version=sardana.release.version,
        door=f"tango://{layout.tango_host}/{layout.door}",
        macro_server=f"tango://{layout.tango_host}/{layout.macro_server}",
    )
    (profile / "ipython_config.py").write_text(text)
    return profile


def spock_command(layout: SardanaLayout, *spock_args: str) -> tuple[list[str], dict[str, str]]:
    """argv and extra environment that run spock against this stack's Door."""
    spock = Path(sys.executable).with_name("spock")
    argv = [str(spock), f"--profile={layout.spock_profile}", *spock_args]
    return argv, {"TANGO_HOST": layout.tango_host, "IPYTHONDIR": layout.ipython_dir}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tango_servers.stack.sardana", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    load = sub.add_parser("load", help="load the Sardana YAML into the stack's database")
    load.add_argument("--tango-host", required=True)
    load.add_argument("--state-dir", required=True, type=Path)
    load.add_argument("--yaml", type=Path, default=None)
    spock = sub.add_parser("spock", help="run spock against the stack's Door (extra arguments go to spock)")
    spock.add_argument("--state-dir", required=True, type=Path)
    args, rest = parser.parse_known_args(argv)

    if args.command == "load":
        if os.environ.get("TANGO_HOST") != args.tango_host:
            # Taurus resolves names against TANGO_HOST: it must be set before Sardana is imported.
            os.environ["TANGO_HOST"] = args.tango_host
        yaml_path = (args.yaml or default_sardana_yaml()).resolve()
        try:
            layout = _apply(args.tango_host, args.state_dir.resolve(), yaml_path)
        except SardanaConfigError as exc:
            print(f"sardana: {exc}", file=sys.stderr)
            return 1
        print(layout.to_json())
        return 0

    layout = read_layout(args.state_dir.resolve())
    command, extra_env = spock_command(layout, *rest)
    os.execve(command[0], command, {**os.environ, **extra_env})
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
