"""Real Sardana (the suite's Pool): its motors work through conventions, with no roles declared."""

from bluesky import RunEngine
from bluesky.plans import scan

from ophyd_tango import connect


def test_sardana_motor_and_pseudo_counter(make_stack, validate_documents):
    stack = make_stack(redis=False, bridges=False, sardana=True)
    motors = connect("motor/*/*", tango_host=stack.tango_host)
    motor = next(m for m in motors.values() if m.tango_class == "Motor")
    assert motor.roles.get("setpoint") == "Position" and motor.roles.get("stop") == "Stop"
    start = motor.position
    motor.move(start + 0.2, timeout=30)
    assert abs(motor.position - (start + 0.2)) < 1e-3
    pseudo = next(iter(connect("pc/*/*", tango_host=stack.tango_host).values()))
    assert pseudo.roles.get("readback") == "Value"
    documents = []
    RunEngine({})(scan([], motor, start, start + 0.1, 2), lambda name, doc: documents.append((name, doc)))
    validate_documents(documents)
    events = [doc for name, doc in documents if name == "event"]
    assert [round(e["data"][motor.name] - start, 4) for e in events] == [0.0, 0.1]
