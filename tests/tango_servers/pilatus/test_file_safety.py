"""Issue 20, data safety: no saving setting makes the Pilatus write, truncate or delete a file
outside its data roots or one its acquisition did not create (the shared stack's data root is the
temp dir; the tests' files live in tmp_path below it)."""

import os
import tempfile
from pathlib import Path

import pytest
import tango

from tango_servers.stack.waiting import wait_until

OUTSIDE = Path("/usr")  # a directory outside the data root (never written: every attempt is refused)


def refused(call) -> str:
    with pytest.raises(tango.DevFailed) as info:
        call()
    return info.value.args[0].desc


def write(proxy: tango.DeviceProxy, name: str, value) -> str:
    return refused(lambda: proxy.write_attribute(name, value))


def test_the_reported_truncate_and_delete_is_refused_at_every_step(pilatus, tmp_path):
    victim = tmp_path / "x" / "important.dat"
    victim.parent.mkdir()
    victim.write_text("precious")
    text = write(pilatus, "saving_directory", "/")
    # The one data-root message of every server (tango_servers.common.data_roots): path and roots named.
    assert text.startswith("saving_directory '/' is outside the data roots ")
    assert tempfile.gettempdir() in text and text.endswith("(device property data_roots)")
    assert "saving_prefix 'proc/' may not contain '/'" in write(pilatus, "saving_prefix", "proc/")
    pilatus.saving_next_number = os.getpid()
    suffix = f"/../..{victim}"
    assert "saving_suffix" in write(pilatus, "saving_suffix", suffix)
    pilatus.saving_overwrite_policy = "OVERWRITE"
    pilatus.prepareAcq()  # with the settings that were accepted: into saving_directory only
    pilatus.abortAcq()
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # the empty prepared file is gone
    assert pilatus.saving_directory == str(tmp_path) and pilatus.saving_prefix == "scan_"


def test_prefix_and_index_format_cannot_leave_the_directory(pilatus, tmp_path):
    assert "may not contain" in write(pilatus, "saving_prefix", "../../../outside/esc_")
    assert "may not contain" in write(pilatus, "saving_prefix", "..esc_")
    assert "may not contain" in write(pilatus, "saving_suffix", "\\..\\x.h5")
    assert "saving_index_format" in write(pilatus, "saving_index_format", "/%04d")
    assert "saving_directory" in write(pilatus, "saving_directory", "relative")
    pilatus.prepareAcq()
    pilatus.startAcq()
    wait_until(lambda: pilatus.acq_status == "Ready", 10, message="one frame")
    assert [p.name for p in tmp_path.iterdir()] == ["scan_0000.h5"]


def test_symlink_inside_the_root_pointing_outside_is_refused(pilatus, tmp_path):
    (tmp_path / "link").symlink_to(OUTSIDE)
    text = write(pilatus, "saving_directory", str(tmp_path / "link"))
    assert f"saving_directory '{tmp_path / 'link'}' is outside the data roots" in text
    assert f"(it resolves to {OUTSIDE})" in text
    # A directory accepted when written and swapped for such a link afterwards: prepareAcq refuses.
    (tmp_path / "d").mkdir()
    pilatus.saving_directory = str(tmp_path / "d")
    (tmp_path / "d").rmdir()
    (tmp_path / "d").symlink_to(OUTSIDE)
    assert "outside the data roots" in refused(pilatus.prepareAcq)
    assert pilatus.acq_status == "Ready"


def test_overwrite_never_follows_a_link_nor_truncates_another_name(pilatus, tmp_path):
    victim = tmp_path / "victim.dat"
    victim.write_text("precious")
    pilatus.saving_overwrite_policy = "OVERWRITE"
    (tmp_path / "scan_0000.h5").symlink_to(victim)
    assert "not a plain file with a single name" in refused(pilatus.prepareAcq)
    (tmp_path / "scan_0000.h5").unlink()
    os.link(victim, tmp_path / "scan_0000.h5")  # a hard link: truncating it would empty the victim
    assert "not a plain file with a single name" in refused(pilatus.prepareAcq)
    assert victim.read_text() == "precious"
    # A plain file of the acquisition's own name is replaced; nothing else in the directory is touched.
    (tmp_path / "scan_0000.h5").unlink()
    (tmp_path / "scan_0000.h5").write_text("old frames")
    (tmp_path / "scan_0000.h5.bak").write_text("kept")
    pilatus.prepareAcq()
    pilatus.startAcq()
    wait_until(lambda: pilatus.acq_status == "Ready", 10, message="one frame")
    assert (tmp_path / "scan_0000.h5").read_bytes()[:4] == b"\x89HDF"
    assert victim.read_text() == "precious" and (tmp_path / "scan_0000.h5.bak").read_text() == "kept"


def test_abort_deletes_only_the_file_the_acquisition_created(pilatus, tmp_path):
    pilatus.prepareAcq()
    prepared = tmp_path / "scan_0000.h5"
    assert prepared.exists()
    replacement = tmp_path / "theirs.h5"
    replacement.write_text("someone else's file, moved in after prepareAcq")
    replacement.replace(prepared)
    pilatus.abortAcq()
    assert prepared.read_text().startswith("someone else's")


def test_saving_next_number_is_bounded_and_stays_readable(pilatus, tmp_path):
    with pytest.raises((tango.DevFailed, OverflowError, ValueError, TypeError)):
        pilatus.saving_next_number = 2**63 - 1
    assert "above the maximum" in write(pilatus, "saving_next_number", 2**31 - 1)
    largest = 2**31 - 2
    pilatus.saving_next_number = largest
    pilatus.acq_nb_frames = 1
    pilatus.prepareAcq()
    pilatus.startAcq()
    wait_until(lambda: pilatus.acq_status == "Ready", 10, message="one frame")
    assert (tmp_path / f"scan_{largest}.h5").exists()
    assert pilatus.saving_next_number == 2**31 - 1  # readable after the last file
    assert f"past the largest, {largest}" in refused(pilatus.prepareAcq)
    pilatus.saving_frame_per_file = 1
    pilatus.acq_nb_frames = 2
    pilatus.saving_next_number = largest
    (tmp_path / f"scan_{largest}.h5").unlink()
    assert "needs file numbers up to 2147483647" in refused(pilatus.prepareAcq)
    assert pilatus.acq_status == "Ready"


def test_docs_form_of_detector_size_and_a_huge_file_number_at_start(make_stack, configs, tmp_path):
    (tmp_path / "pilatus_0004.h5").write_text("")
    (tmp_path / f"pilatus_{2**63 - 1}.h5").write_text("")  # left by an unbounded older server
    config = configs.pilatus(
        detector_size=["125, 67"],
        module_size=["60x30"],
        default_directory=[str(tmp_path)],
        sample_axis=[""],
        trigger_source=[""],
    )
    pilatus = make_stack(config, **configs.options).proxy("sim/pilatus/1")
    assert pilatus.state() == tango.DevState.ON
    assert (pilatus.image_width, pilatus.image_height) == (125, 67)
    assert pilatus.saving_next_number == 5
