"""spock, Sardana's command line, run without a terminal against the stack's Door."""

import os
import subprocess

from tango_servers.stack.sardana import spock_command


def run_spock(layout, *args: str, stdin: str | None = None) -> str:
    command, env = spock_command(layout, *args)
    done = subprocess.run(
        command,
        input=stdin,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_spock_command_line_runs_ct(layout):
    output = run_spock(layout, "-c", "ct 0.1")
    assert "pilatus_roi" in output
    assert "h5file://" in output


def test_spock_reads_macros_from_piped_input(layout):
    output = run_spock(layout, "--simple-prompt", stdin="wm omega\n")
    assert "omega" in output
    assert "Current" in output
