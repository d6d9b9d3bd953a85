"""Every notebook in notebooks/ runs to completion against a live stack, and is committed without outputs.

One stack for all notebooks (the shipped configuration with small detectors, the bridges, Redis and,
when installed, Sardana), started by the launcher `tango-suite up` uses. Each notebook runs in its
own kernel with the stack's settings in the environment, as `eval "$(tango-suite env)"` leaves them.
"""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from tango_servers.stack.testing import RunningStack  # noqa: E402

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 120  # seconds; the slowest cell (a scan, a fly scan, a macro) takes a few
SARDANA = importlib.util.find_spec("sardana") is not None and importlib.util.find_spec("sardana_config") is not None
NEEDS_SARDANA = {"04-sardana.ipynb"}
# Lines a notebook must print: its cells that show these are there and ran (their asserts passed).
PRINTED = {
    "01-quickstart.ipynb": ("threshold 6200 eV; cam_state STANDBY",),
    "04-sardana.ipynb": (
        "after mv: threshold 6200 eV, cam_state STANDBY, acq_status Ready",  # pilatus_energy, a motor
        "pilatus_ctrl: saving_frame_per_file 1000 -> 1",  # the pre-scan hook, after the bluesky scan
        "the peak at omega =",  # the ascanct cell
    ),
}


def test_notebooks_are_there() -> None:
    names = [path.name for path in NOTEBOOKS]
    assert names == [
        "01-quickstart.ipynb", "02-fly-scan.ipynb", "03-bridges.ipynb", "04-sardana.ipynb", "05-foreign-devices.ipynb"
    ]  # fmt: skip


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    """What nbstripout leaves: no outputs, no execution counts, no per-cell run metadata."""
    notebook = json.loads(path.read_text())
    nbformat.validate(nbformat.from_dict(notebook))
    for number, cell in enumerate(notebook["cells"], 1):
        where = f"{path.name} cell {number}: run 'nbstripout {path.name}'"
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{where} (outputs)"
            assert cell["execution_count"] is None, f"{where} (execution count)"
        assert not set(cell["metadata"]) & {"execution", "collapsed", "scrolled"}, f"{where} (metadata)"
    assert "widgets" not in notebook["metadata"], f"{path.name}: widget state in the metadata"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_nbstripout_would_change_nothing(path: Path) -> None:
    """The same check with nbstripout itself, as a pre-commit hook or `git config filter` runs it."""
    nbstripout = shutil.which("nbstripout", path=str(Path(sys.executable).parent)) or shutil.which("nbstripout")
    if nbstripout is None:
        pytest.skip("nbstripout is not installed: pip install -e '.[notebooks]'")
    result = subprocess.run([nbstripout, "--verify", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"run 'nbstripout {path}' before committing: {result.stdout}{result.stderr}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_against_the_stack(
    path: Path, notebook_stack: RunningStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path.name in NEEDS_SARDANA and not SARDANA:
        pytest.skip("Sardana is not installed: pip install -e '.[sardana]'")
    # The kernel inherits this environment: the settings `tango-suite env` prints, and the state
    # dir for what they leave out (Sardana's Door). Plots go to the inline backend (no display).
    monkeypatch.setenv("TANGO_HOST", notebook_stack.tango_host)
    monkeypatch.setenv("TANGO_SUITE_REDIS_URL", notebook_stack.redis_url or "")
    for key, value in notebook_stack.pva.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TANGO_SUITE_HOME", str(notebook_stack.state_dir))
    monkeypatch.delenv("TANGO_SUITE_STATE_DIR", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)

    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    client.execute()  # raises CellExecutionError (with the cell and traceback) on any error

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert [o for o in outputs if "image/png" in o.get("data", {})], f"{path.name} shows no figure"
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    for line in PRINTED.get(path.name, ()):
        assert line in printed, f"{path.name} did not print {line!r}"
