"""sim/pilatus/1 as a LimaCCDs device: the Tango types, string value sets and commands of
Lima-tango-python's LimaCCDs.py, driven with raw PyTango and with sardana-limaccd's client."""

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import pytest
import tango
from sardana_limaccd.client import Lima, LimaImageFormat

from tango_servers.pilatus import data_array
from tango_servers.pilatus.writer import DATA_PATH
from tango_servers.stack.waiting import wait_until

STRING_SETTINGS = {
    "acq_trigger_mode": (
        "INTERNAL_TRIGGER",
        "EXTERNAL_TRIGGER",
        "EXTERNAL_TRIGGER_MULTI",
        "EXTERNAL_GATE",
        "INTERNAL_TRIGGER_MULTI",
    ),
    "acq_mode": ("SINGLE", "CONCATENATION", "ACCUMULATION"),
    "acc_time_mode": ("LIVE", "REAL"),
    "saving_mode": ("MANUAL", "AUTO_FRAME", "AUTO_HEADER"),
    "saving_overwrite_policy": ("ABORT", "OVERWRITE", "APPEND", "MULTISET"),
    "saving_managed_mode": ("SOFTWARE", "HARDWARE"),
    "saving_format": ("HDF5", "HDF5BS"),
    "image_rotation": ("NONE", "90", "180", "270"),
    "image_bin_mode": ("SUM", "MEAN"),
    "video_mode": ("Y32",),
}
NOT_HONOURED = {
    ("acq_mode", "CONCATENATION"),
    ("saving_managed_mode", "HARDWARE"),
}


def refused(call) -> str:
    with pytest.raises(tango.DevFailed) as info:
        call()
    return info.value.args[0].desc


def test_settings_are_devstrings_with_lima_value_sets(pilatus):
    for name, values in STRING_SETTINGS.items():
        assert pilatus.get_attribute_config(name).data_type == tango.CmdArgType.DevString, name
        listed = pilatus.getAttrStringValueList(name)
        assert set(values) <= set(listed), (name, listed)
    assert pilatus.get_attribute_config("acq_status").data_type == tango.CmdArgType.DevString
    assert pilatus.acq_status == "Ready"
    assert pilatus.getAttrStringValueList("no_such_attribute") == []  # as LimaCCDs answers
    assert "EXTERNAL_START_STOP" not in pilatus.getAttrStringValueList("acq_trigger_mode")


def test_every_value_written_in_any_case_reads_back_in_lima_spelling(pilatus):
    for name, values in STRING_SETTINGS.items():
        before = pilatus.read_attribute(name).value
        for value in values:
            if (name, value) in NOT_HONOURED:
                continue
            pilatus.write_attribute(name, value.lower())
            assert pilatus.read_attribute(name).value == value, name
        pilatus.write_attribute(name, before)


def test_bad_values_are_refused_listing_the_allowed_ones_and_the_device_stays_usable(pilatus):
    text = refused(lambda: pilatus.write_attribute("acq_trigger_mode", "SOMETIMES"))
    assert "acq_trigger_mode 'SOMETIMES' is not one of INTERNAL_TRIGGER," in text and "EXTERNAL_GATE" in text
    text = refused(lambda: pilatus.write_attribute("acq_trigger_mode", "EXTERNAL_START_STOP"))
    assert "is not one of" in text
    text = refused(lambda: pilatus.write_attribute("saving_format", "TIFF"))
    assert "saving_format 'TIFF' is not one of HDF5, HDF5BS" in text
    text = refused(lambda: pilatus.write_attribute("saving_overwrite_policy", "keep"))
    assert "saving_overwrite_policy 'keep' is not one of ABORT, OVERWRITE, APPEND, MULTISET" in text
    text = refused(lambda: pilatus.write_attribute("saving_managed_mode", "HARDWARE"))
    assert "use SOFTWARE" in text
    text = refused(lambda: pilatus.write_attribute("acq_mode", "concatenation"))
    assert "acq_mode CONCATENATION is not available" in text and "use SINGLE, ACCUMULATION" in text
    for name, value in (("image_bin", [0, 2]), ("image_rotation", "45"), ("image_roi", [1, 1, 500, 5])):
        assert name in refused(lambda name=name, value=value: pilatus.write_attribute(name, value))
    assert pilatus.acq_trigger_mode == "INTERNAL_TRIGGER"
    assert pilatus.saving_overwrite_policy == "ABORT"
    pilatus.prepareAcq()
    pilatus.startAcq()
    wait_until(lambda: pilatus.acq_status == "Ready" and pilatus.last_image_saved == 0, 10, message="one frame")


def test_lima_attributes_have_lima_types(pilatus):
    types = {
        "acq_nb_frames": tango.CmdArgType.DevLong,
        "saving_next_number": tango.CmdArgType.DevLong,
        "saving_frame_per_file": tango.CmdArgType.DevLong,
        "last_image_saved": tango.CmdArgType.DevLong,
        "image_width": tango.CmdArgType.DevULong,
        "image_sizes": tango.CmdArgType.DevULong,
        "camera_pixelsize": tango.CmdArgType.DevDouble,
        "valid_ranges": tango.CmdArgType.DevDouble,
        "image_flip": tango.CmdArgType.DevBoolean,
        "image_bin": tango.CmdArgType.DevULong,
        "image_roi": tango.CmdArgType.DevLong,
        "acc_nb_frames": tango.CmdArgType.DevLong,
        "acc_max_expo_time": tango.CmdArgType.DevDouble,
        "acc_saturated_threshold": tango.CmdArgType.DevLong64,
        "last_image": tango.CmdArgType.DevEncoded,
        "saving_common_header": tango.CmdArgType.DevString,
    }
    for name, data_type in types.items():
        assert pilatus.get_attribute_config(name).data_type == data_type, name
    assert pilatus.camera_type == "Pilatus"
    assert list(pilatus.camera_pixelsize) == [172e-6, 172e-6]
    assert list(pilatus.image_sizes) == [1, 4, pilatus.image_width, pilatus.image_height]
    assert list(pilatus.image_bin) == [1, 1] and list(pilatus.image_flip) == [False, False]
    assert list(pilatus.image_roi) == [0, 0, pilatus.image_width, pilatus.image_height]
    assert pilatus.saving_index_format == "%04d"
    assert pilatus.saving_managed_mode == "SOFTWARE"
    assert pilatus.acq_mode == "SINGLE" and pilatus.acc_nb_frames == -1 and pilatus.acc_expo_time == -1  # LimaCCDs'
    assert pilatus.ready_for_next_acq is True
    commands = {c.cmd_name: c for c in pilatus.command_list_query()}
    assert commands["readImageSeq"].in_type == tango.CmdArgType.DevVarLong64Array
    assert commands["readImage"].out_type == tango.CmdArgType.DevEncoded
    assert commands["getImage"].out_type == tango.CmdArgType.DevVarCharArray
    assert commands["getAttrStringValueList"].out_type == tango.CmdArgType.DevVarStringArray
    assert pilatus.info().dev_class == "LimaCCDs"


def test_sardana_limaccd_client_reads_capabilities_and_status(pilatus_stack, pilatus):
    lima = Lima(f"tango://{pilatus_stack.tango_host}/sim/pilatus/1", tango_client_timeout=3000)
    assert "EXTERNAL_GATE" in lima.capabilities["acq_trigger_mode"]
    assert "HDF5" in lima.capabilities["saving_format"]
    assert lima.camera_type == "Pilatus"
    status, ready_for_next, ready, saved = lima.get_status()
    assert status == "Ready" and ready_for_next is False and ready >= saved >= -1
    lima["acq_trigger_mode"] = "internal_trigger_multi"
    assert lima["acq_trigger_mode"] == "INTERNAL_TRIGGER_MULTI"
    lima("reset")
    assert lima["acq_status"] == "Ready"


def test_sardana_limaccd_acquisition_saves_and_reads_frames(pilatus_stack, pilatus, tmp_path):
    """sardana-limaccd's own Acquisition and Saving objects, as its LimaCCD controller uses them."""
    lima = Lima(f"tango://{pilatus_stack.tango_host}/sim/pilatus/1", tango_client_timeout=3000, dataArrayVersion=4)
    lima.saving.enabled = True
    lima.saving.pattern = f"file://{tmp_path}/sardana_{{index:03d}}.h5"
    lima.saving.prepare()
    assert (pilatus.saving_prefix, pilatus.saving_index_format, pilatus.saving_format) == ("sardana_", "%03d", "HDF5")
    acquisition = lima.acquisition(3, 1, 0.01, 0.0, "INTERNAL_TRIGGER")
    acquisition.prepare()
    acquisition.start()
    wait_until(
        lambda: acquisition.calc_status(*lima.get_status()) == "Ready" and pilatus.acq_status == "Ready",
        10,
        message="sardana-limaccd to see the acquisition done",
    )
    frames = [acquisition.next_frame() for _ in range(3)]
    assert all(frame.shape == (pilatus.image_height, pilatus.image_width) for frame in frames)
    # The frame references name the file the frames are in: saving_next_number read after startAcq.
    assert acquisition.next_ref_frames() == [f"h5file://{tmp_path}/sardana_000.h5"] * 3
    with h5py.File(tmp_path / "sardana_000.h5", "r") as f:
        for i, frame in enumerate(frames):
            assert (f[DATA_PATH][i] == frame).all()


def test_plugin_device_names(pilatus):
    assert pilatus.getPluginDeviceNameFromType("RoiCounterDeviceServer") == ""  # no Lima plugins here
    assert pilatus.getPluginDeviceNameFromType("LimaCCDs") == ""  # the device itself is no plugin


@pytest.mark.parametrize("version", [2, 3, 4])
def test_data_array_versions_decode_with_sardana_limaccd(version):
    frames = np.arange(2 * 3 * 5, dtype=np.int32).reshape(2, 3, 5) - 7
    buffer = data_array.encode(frames, category=data_array.Category.IMAGE_STACK, version=version, image_number=4)
    header, decoded = data_array.decode(buffer)
    np.testing.assert_array_equal(decoded, frames)
    assert header.dims == (5, 3, 2) and header.image_number == (None if version == 2 else 4)
    np.testing.assert_array_equal(LimaImageFormat(version).decode(buffer, n=1)[0], frames[0])
    with pytest.raises(ValueError, match="not a DATA_ARRAY"):
        data_array.decode(b"VDEO" + buffer[4:])
