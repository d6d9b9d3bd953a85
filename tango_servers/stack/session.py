"""The bluesky session of a running stack: a RunEngine with callbacks and every device by name.

Shared by `tango-suite demo` and `tango-suite shell`.
"""

import os
import sys
from typing import Any

DEVICE_PATTERN = "sim/*/*"


def bluesky_namespace(tango_host: str, *, plots: bool = True) -> dict[str, Any]:
    """A namespace for IPython or a script: `RE`, `bec`, plans, plan stubs and the stack's devices."""
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
    if sys.stdout.isatty():
        run_engine.waiting_hook = ProgressBarManager()
    namespace: dict[str, Any] = {"RE": run_engine, "bec": bec, "bp": bp, "bps": bps}
    namespace.update({name: getattr(bp, name) for name in bp.__all__} if hasattr(bp, "__all__") else {})
    for name in ("count", "scan", "rel_scan", "grid_scan", "list_scan", "fly"):
        namespace.setdefault(name, getattr(bp, name))
    for name in ("mv", "mvr", "sleep", "abs_set", "rd"):
        namespace.setdefault(name, getattr(bps, name))
    namespace["devices"] = connect(DEVICE_PATTERN, tango_host=tango_host, into=namespace)
    return namespace
