"""The Pilatus of the shipped configuration: full Pilatus 2M geometry, following the real axes."""

import uuid
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np

from tango_servers.stack.waiting import wait_until


def test_default_pilatus_writes_full_2m_frames(stack):
    pilatus = stack.proxy("sim/pilatus/1")
    assert (pilatus.image_width, pilatus.image_height, pilatus.image_type) == (1475, 1679, "Bpp32S")
    pilatus.abortAcq()
    wait_until(lambda: pilatus.acq_status in ("Ready", "Fault"), 10)
    directory = Path(pilatus.saving_directory)  # the stack's data folder: the only data root
    pilatus.saving_prefix = prefix = f"shipped_{uuid.uuid4().hex[:8]}_"
    pilatus.saving_format = "HDF5BS"
    pilatus.acq_trigger_mode = "INTERNAL_TRIGGER"
    pilatus.acq_nb_frames = 2
    pilatus.acq_expo_time = 0.01
    pilatus.prepareAcq()
    pilatus.startAcq()
    wait_until(lambda: pilatus.acq_status == "Ready", 20, message="2 frames saved")
    with h5py.File(directory / f"{prefix}0000.h5", "r") as f:
        data = f["/entry/instrument/detector/data"]
        assert data.shape == (2, 1679, 1475) and data.dtype == np.int32
        assert (data[0][:, 487:494] == -1).all()  # gap between module columns
    # The axis is followed: the shipped sample axis is the Automation1 omega.
    wait_until(lambda: not np.isnan(pilatus.sample_position), 15, message="omega followed")
