"""running_stack_settings(): how notebooks find the stack (the variables `tango-suite env` prints, else a state dir)."""

import os
from pathlib import Path

import pytest

from tango_servers.stack.session import running_stack_settings
from tango_servers.stack.state import StackState

PVA = {"EPICS_PVA_NAME_SERVERS": "127.0.0.1:5075", "EPICS_PVA_AUTO_ADDR_LIST": "NO"}


def write_state(root: Path, *, tango_host: str = "127.0.0.1:10000", pid: int | None = None, phase: str = "ready"):
    state = StackState(root)
    state.ensure()
    state.write(
        {
            "phase": phase,
            "supervisor_pid": os.getpid() if pid is None else pid,  # a live process stands for the supervisor
            "tango_host": tango_host,
            "services": {
                "tango_host": tango_host,
                "redis_url": "redis://127.0.0.1:6400/0",
                "pva": PVA,
                "sardana": {"door": "door/tango_suite/1"},
            },
        }
    )


def test_everything_from_the_state_dir(tmp_path: Path) -> None:
    write_state(tmp_path)
    settings = running_stack_settings({"TANGO_SUITE_STATE_DIR": str(tmp_path)})
    assert settings == {
        "tango_host": "127.0.0.1:10000",
        "redis_url": "redis://127.0.0.1:6400/0",
        "pva": PVA,
        "door": "tango://127.0.0.1:10000/door/tango_suite/1",
    }
    assert running_stack_settings({"TANGO_SUITE_HOME": str(tmp_path)}) == settings


def test_the_variables_of_tango_suite_env_win(tmp_path: Path) -> None:
    write_state(tmp_path)
    environ = {
        "TANGO_SUITE_HOME": str(tmp_path),
        "TANGO_HOST": "127.0.0.1:10000",
        "TANGO_SUITE_REDIS_URL": "redis://127.0.0.1:7000/1",
        "EPICS_PVA_NAME_SERVERS": "127.0.0.1:6000",
    }
    settings = running_stack_settings(environ)
    assert settings["redis_url"] == "redis://127.0.0.1:7000/1"
    assert settings["pva"] == {"EPICS_PVA_NAME_SERVERS": "127.0.0.1:6000"}
    assert settings["door"] == "tango://127.0.0.1:10000/door/tango_suite/1"  # only the state dir knows it


def test_a_state_dir_of_another_stack_is_not_mixed_in(tmp_path: Path) -> None:
    write_state(tmp_path, tango_host="127.0.0.1:10000")
    settings = running_stack_settings({"TANGO_SUITE_HOME": str(tmp_path), "TANGO_HOST": "127.0.0.1:20000"})
    assert settings == {"tango_host": "127.0.0.1:20000", "redis_url": None, "pva": {}, "door": None}


@pytest.mark.parametrize("phase, pid", [("stopped", None), ("ready", 2**22 + 1)], ids=["stopped", "dead-supervisor"])
def test_no_stack_without_tango_host_or_a_live_state(tmp_path: Path, phase: str, pid: int | None) -> None:
    write_state(tmp_path, phase=phase, pid=pid)
    with pytest.raises(LookupError, match="tango-suite env"):
        running_stack_settings({"TANGO_SUITE_STATE_DIR": str(tmp_path)})
