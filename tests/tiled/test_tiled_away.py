"""Nothing is lost when Tiled goes away mid-scan: the scan runs to its end, its documents are kept
in the stack's backup directory, the user is told once, and `tango-suite tiled import` sends them
once Tiled is back. Tiled here is one the test starts and stops (the stack points at it with
--tiled-uri), so the supervisor cannot bring it back early."""

import os

import bluesky.plan_stubs as bps
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count, scan

from ophyd_tango import TangoDevice
from tango_servers.stack import cli
from tango_servers.stack.kept_runs import RunKeeper, tiled_client
from tango_servers.stack.processes import free_port, pid_alive, port_in_use, stop_child
from tango_servers.stack.testing import shipped_servers, small_pilatus
from tango_servers.stack.tiled_server import stack_api_key, start_tiled, tiled_uri, wait_for_tiled

POSITIONS = np.linspace(-1.0, 1.0, 6)


class OwnTiled:
    """A Tiled server on a fixed port for the stack in `root`, stopped and started by the test."""

    def __init__(self, root, log):
        self.root, self.log = root, log
        self.port = free_port()
        self.uri = tiled_uri(self.port)
        self.process = None

    def start(self):
        self.process = start_tiled(self.port, self.root, self.log, dict(os.environ))
        wait_for_tiled(self.uri, self.process)

    def stop(self):
        if self.process is not None:
            stop_child(self.process)


@pytest.fixture
def own_tiled(tmp_path, monkeypatch):
    root = tmp_path / "stack0"  # the state dir make_stack gives its first stack: Tiled reads its data/
    monkeypatch.setenv("TILED_API_KEY", stack_api_key(root))
    tiled = OwnTiled(root, tmp_path / "tiled.log")
    tiled.start()
    try:
        yield tiled
    finally:
        tiled.stop()


def test_tiled_stopped_mid_scan_loses_nothing(own_tiled, make_stack, capsys):
    config = {"servers": {**shipped_servers("Automation1"), **small_pilatus("away")}}
    running = make_stack(config, redis=False, bridges=False, tiled_uri=own_tiled.uri)
    assert running.state_dir == own_tiled.root
    omega = TangoDevice(running.trl("sim/aerotech/omega"), name="omega")
    pilatus = TangoDevice(running.trl("sim/pilatus/1"), name="pilatus")
    run_engine = RunEngine({}, context_managers=[])
    documents = []
    run_engine.subscribe(lambda name, doc: documents.append((name, doc)))
    messages = []
    run_engine.subscribe(RunKeeper(running.tiled, tell=messages.append))
    steps = []

    def stop_tiled_at_third_step(detectors, step, pos_cache):
        steps.append(step)
        if len(steps) == 3:
            own_tiled.stop()
        yield from bps.one_nd_step(detectors, step, pos_cache)

    plan = scan([pilatus], omega, POSITIONS[0], POSITIONS[-1], len(POSITIONS), per_step=stop_tiled_at_third_step)
    (uid,) = run_engine(plan)
    (second,) = run_engine(count([pilatus], 2))  # Tiled still away: straight to the backup

    stops = [doc for name, doc in documents if name == "stop"]
    assert [s["exit_status"] for s in stops] == ["success", "success"]
    assert len([name for name, _ in documents if name == "event"]) == len(POSITIONS) + 2
    backups = sorted(running.tiled.backup_dir.glob("*.jsonl"))
    assert {p.name for p in backups} == {f"{uid.split('-')[0]}.jsonl", f"{second.split('-')[0]}.jsonl"}
    assert len(messages) == 1 and str(running.tiled.backup_dir) in messages[0], messages

    own_tiled.start()
    assert cli.main(["tiled", "import", "--state-dir", str(running.state_dir)]) == 0
    assert uid in capsys.readouterr().out
    client = tiled_client(running.tiled)
    primary = client[uid]["primary"]
    np.testing.assert_allclose(primary["omega"].read(), POSITIONS, atol=1e-6)
    assert primary["pilatus_image"].shape == (len(POSITIONS), 67, 125)
    assert client[uid].stop["exit_status"] == "success"
    assert client[second]["primary"]["pilatus_image"].shape == (2, 67, 125)
    assert not list(running.tiled.backup_dir.glob("*.jsonl"))  # imported once, not twice
    assert cli.main(["tiled", "import", "--state-dir", str(running.state_dir)]) == 0
    assert "imported 0 runs" in capsys.readouterr().out


def test_import_with_tiled_away_says_so_in_one_line(own_tiled, make_stack, capsys):
    running = make_stack({"servers": small_pilatus("import")}, redis=False, bridges=False, tiled_uri=own_tiled.uri)
    own_tiled.stop()
    assert cli.main(["tiled", "import", "--state-dir", str(running.state_dir)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()  # Tiled's client may say "Retrying…" first
    ours = [line for line in lines if line.startswith("tango-suite:")]
    assert len(ours) == 1 and ours[0].startswith(f"tango-suite: import into Tiled at {own_tiled.uri}:"), lines


def test_down_leaves_no_tiled_behind(make_stack):
    running = make_stack({"servers": small_pilatus("down")}, redis=False, bridges=False, tiled=True)
    tiled = running.component("tiled")
    assert tiled["status"] == "running"
    running.down()
    assert not pid_alive(tiled["pid"])
    assert not port_in_use(tiled["port"])
    assert running.state.read() is None
