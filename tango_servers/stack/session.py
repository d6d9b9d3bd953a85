"""The bluesky session of a running stack: a RunEngine with callbacks and every device by name.

Shared by `tango-suite demo` and `tango-suite shell`.
"""

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .kept_runs import TiledSettings, keep_runs, tiled_settings
from .processes import pid_alive
from .state import MARKER_ENV, StackState, default_state_dir

DEVICE_PATTERN = "sim/*/*"


def bluesky_namespace(tango_host: str, *, plots: bool = True, tiled: TiledSettings | None = None) -> dict[str, Any]:
    """A namespace for IPython or a script: `RE`, `bec`, plans, plan stubs and the stack's devices;
    with `tiled`, every run is kept there by `keeper` (see kept_runs)."""
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("MPLBACKEND", "Agg")
    import bluesky.plan_stubs as bps
    import bluesky.plans as bp
    from bluesky import RunEngine
    from bluesky.callbacks.best_effort import BestEffortCallback
    from bluesky.utils import ProgressBarManager

    from ophyd_tango import connect

    run_engine = RunEngine({})
    bec = BestEffortCallback()
    if not plots:
        bec.disable_plots()
    run_engine.subscribe(bec)
    keeper = keep_runs(run_engine, tiled)
    if sys.stdout.isatty():
        run_engine.waiting_hook = ProgressBarManager()  # type: ignore[assignment]  # bluesky's __init__ types it None
    namespace: dict[str, Any] = {"RE": run_engine, "bec": bec, "bp": bp, "bps": bps, "keeper": keeper}
    namespace.update({name: getattr(bp, name) for name in bp.__all__} if hasattr(bp, "__all__") else {})
    for name in ("count", "scan", "rel_scan", "grid_scan", "list_scan", "fly"):
        namespace.setdefault(name, getattr(bp, name))
    for name in ("mv", "mvr", "sleep", "abs_set", "rd"):
        namespace.setdefault(name, getattr(bps, name))
    namespace["devices"] = connect(DEVICE_PATTERN, tango_host=tango_host, into=namespace)
    return namespace


def _state_root(env: Mapping[str, str]) -> Path:
    return Path(env.get(MARKER_ENV) or env.get("TANGO_SUITE_HOME") or default_state_dir())


def _live_state(env: Mapping[str, str]) -> dict[str, Any]:
    """The state of a live stack in the state dir `env` names, else {}."""
    current = StackState(_state_root(env).expanduser()).read() or {}
    if current.get("phase") in ("failed", "stopped") or not pid_alive(current.get("supervisor_pid")):
        return {}
    return current


def running_stack_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Where the running stack is, for notebooks and scripts: `tango_host`, `redis_url` (or None),
    `pva` (EPICS_PVA_* client settings) and `door` (full name of Sardana's Door, or None).

    The variables `tango-suite env` prints (TANGO_HOST, TANGO_SUITE_REDIS_URL, EPICS_PVA_*) win; the
    rest comes from the state dir of a live stack on the same TANGO_HOST ($TANGO_SUITE_STATE_DIR, else
    $TANGO_SUITE_HOME or ~/.local/state/tango-suite). LookupError when neither names a stack.
    """
    env = os.environ if environ is None else environ
    current = _live_state(env)
    root = _state_root(env)
    tango_host = env.get("TANGO_HOST") or current.get("tango_host")
    if not tango_host:
        raise LookupError(f"no stack found: set TANGO_HOST (see 'tango-suite env') or start one in {root}")
    services = current.get("services", {}) if current.get("tango_host") == tango_host else {}
    door = services.get("sardana", {}).get("door")
    return {
        "tango_host": tango_host,
        "redis_url": env.get("TANGO_SUITE_REDIS_URL") or services.get("redis_url"),
        "pva": {k: v for k, v in env.items() if k.startswith("EPICS_PVA_")} or dict(services.get("pva", {})),
        "door": f"tango://{tango_host}/{door}" if door else None,
    }


def running_stack_tiled(environ: Mapping[str, str] | None = None) -> TiledSettings | None:
    """The Tiled of the running stack found as `running_stack_settings` finds it (None without one);
    TILED_URI and TILED_API_KEY win."""
    env = os.environ if environ is None else environ
    return tiled_settings(_live_state(env), env)
