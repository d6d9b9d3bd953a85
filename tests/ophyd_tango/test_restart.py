"""A server restart mid-session: the same TangoDevice reads, moves and monitors again."""

import json

from ophyd_tango import TangoDevice
from tango_servers.stack.config import default_config_path
from tango_servers.stack.waiting import wait_until


def test_axis_works_again_after_its_server_restarts(make_stack):
    shipped = json.loads(default_config_path().read_text())
    stack = make_stack({"servers": {"Automation1": shipped["servers"]["Automation1"]}}, redis=False, bridges=False)
    x = TangoDevice(stack.trl("sim/aerotech/x"), name="x")
    readbacks = []
    x.subscribe(lambda value, **kw: readbacks.append(value), event_type="readback", run=False)
    x.move(1.0, timeout=20)
    assert x.position == 1.0

    old = stack.kill_server("Automation1/sim")
    stack.wait_server_back("Automation1/sim", old)

    wait_until(lambda: x.read()["x"]["value"] == 1.0, 20, message="x readable after the restart")
    x.move(2.0, timeout=20)
    assert x.locate()["readback"] == 2.0
    wait_until(lambda: readbacks and readbacks[-1] == 2.0, 20, message="readback events after the restart")
    x.move(0.0, timeout=20)
