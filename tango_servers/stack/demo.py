"""`tango-suite demo`: a short scan of omega through the Pilatus peak, printed as a LiveTable."""

from typing import Any

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
    print(f"Scanning {omega.name} from {DEMO_RANGE[0]} to {DEMO_RANGE[1]} deg, reading {pilatus.name}:")
    (uid,) = run_engine(scan([pilatus], omega, *DEMO_RANGE, DEMO_POINTS), LiveTable(fields))
    print(f"Run {uid} finished. Try it yourself: 'tango-suite shell' gives you RE, omega, pilatus, ...")
    return 0
