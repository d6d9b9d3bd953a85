"""`tango-suite demo`: a short scan of omega through the Pilatus peak, printed as a LiveTable,
kept in the stack's Tiled and read back from there."""

from typing import Any, cast

import numpy as np

from .kept_runs import TiledSettings, keep_runs, tiled_client, tiled_settings
from .session import DEVICE_PATTERN

DEMO_RANGE = (-3.0, 3.0)
DEMO_POINTS = 13


def run_demo(current: dict[str, Any]) -> int:
    from bluesky import RunEngine
    from bluesky.callbacks import LiveTable
    from bluesky.plans import scan

    from ophyd_tango import connect

    devices = connect(DEVICE_PATTERN, tango_host=current["tango_host"])
    omega, pilatus = devices["omega"], devices["pilatus"]
    fields = [*omega.hints["fields"], *pilatus.hints["fields"]]
    run_engine = RunEngine({})
    settings = tiled_settings(current)
    keeper = keep_runs(run_engine, settings)
    print(f"Scanning {omega.name} from {DEMO_RANGE[0]} to {DEMO_RANGE[1]} deg, reading {pilatus.name}:")
    run_engine.subscribe(LiveTable(fields))
    # A RunEngine built without call_returns_result returns the run uids.
    (uid,) = cast(tuple[str, ...], run_engine(scan([pilatus], omega, *DEMO_RANGE, DEMO_POINTS)))
    print(f"Run {uid} finished.")
    if settings is not None and keeper is not None and not keeper.told:
        read_back(settings, uid, omega.name, pilatus.hints["fields"][0])
    print("Try it yourself: 'tango-suite shell' gives you RE, omega, pilatus, ...")
    return 0


def read_back(settings: TiledSettings, uid: str, motor: str, detector_field: str) -> None:
    """Read the run back from Tiled, print where its peak is and how to do this by hand."""
    run = tiled_client(settings)[uid]
    primary = run["primary"]  # column by column: the frames stay on the server
    positions, counts = np.asarray(primary[motor].read()), np.asarray(primary[detector_field].read())
    peak = positions[int(counts.argmax())]
    print(f"Read back from Tiled at {settings.uri}: run {run.start['uid']}, {len(positions)} points,", end=" ")
    print(f"peak at {motor} = {peak:g}")
    print('By hand:  eval $(tango-suite env); python -c "from tiled.client import from_uri; import os; ')
    print(f"          run = from_uri(os.environ['TILED_URI'])['{uid}']; print(run['primary']['{motor}'].read())\"")
