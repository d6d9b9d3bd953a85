"""bluesky next to Sardana: ophyd_tango drives Sardana's own Motor and experimental channels."""

import pytest

ophyd_tango = pytest.importorskip("ophyd_tango")


def test_ophyd_tango_moves_a_sardana_motor(sardana_stack):
    motor = ophyd_tango.TangoDevice(sardana_stack.trl("x"), name="x_sardana", timeout=10.0)
    assert motor.roles.get("setpoint") == "Position"
    motor.set(0.4).wait(30)
    assert motor.read()["x_sardana"]["value"] == pytest.approx(0.4, abs=1e-3)
    assert sardana_stack.proxy("sim/aerotech/x").read_attribute("position").value == pytest.approx(0.4, abs=1e-3)
    motor.set(0).wait(30)


def test_ophyd_tango_counts_with_a_sardana_channel(sardana_stack):
    image = ophyd_tango.TangoDevice(sardana_stack.trl("oav_image"), name="oav_image", timeout=10.0)
    assert image.roles.get("trigger") == "Start"
    image.integrationtime.set(0.1).wait(5)
    image.trigger().wait(30)
    frame = sardana_stack.proxy("oav_image").read_attribute("Value").value
    assert frame.shape == (240, 320)


def test_the_pilatus_channel_counts_only_in_a_measurement_group(sardana_stack):
    """sardana-limaccd's LimaCCDTwoDController declares no default_timer: counted on its own, the
    Pool refuses it (count it with `ct` or a scan, through a measurement group)."""
    image = ophyd_tango.TangoDevice(sardana_stack.trl("pilatus_image"), name="pilatus_image", timeout=10.0)
    image.integrationtime.set(0.1).wait(5)
    with pytest.raises(Exception, match="default_timer not defined"):
        image.trigger().wait(30)
