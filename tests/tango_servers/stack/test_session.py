"""`tango-suite demo` and `tango-suite shell -c` against the session stack, as a user runs them."""

import re
import subprocess
import sys
from pathlib import Path


def suite(stack, *args: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("tango-suite")), *args, "--state-dir", str(stack.state_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def live_table_rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in text.splitlines()
        if re.match(r"^\|\s+\d+ \|", line)
    ]


def test_demo_scans_omega_through_the_pilatus_peak(stack) -> None:
    result = suite(stack, "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    header = next(line for line in result.stdout.splitlines() if "seq_num" in line)
    assert "omega" in header and "pilatus_roi_sum" in header
    rows = live_table_rows(result.stdout)
    assert len(rows) == 13
    omegas = [float(row[2]) for row in rows]
    counts = [float(row[3]) for row in rows]
    assert omegas == [-3 + 0.5 * i for i in range(13)]
    assert omegas[counts.index(max(counts))] == 0.0  # the sample model's peak
    assert "finished" in result.stdout


def test_shell_runs_a_scripted_scan_without_a_terminal(stack) -> None:
    code = "uid, = RE(count([pilatus], 3)); print('devices:', sorted(devices)); print('run', uid)"
    result = suite(stack, "shell", "-c", code)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(live_table_rows(result.stdout)) == 3  # BestEffortCallback's table
    names = re.search(r"devices: \[(.*)\]", result.stdout).group(1)
    for name in ("pilatus", "x", "y", "z", "omega", "oav", "aerotech"):
        assert f"'{name}'" in names
    assert re.search(r"run [0-9a-f-]{36}", result.stdout)


def test_shell_reports_errors_with_a_failing_exit_code(stack) -> None:
    result = suite(stack, "shell", "-c", "RE(mv(omega, 1e9))")
    assert result.returncode != 0
    assert "omega" in result.stdout + result.stderr  # the refused move names the axis
