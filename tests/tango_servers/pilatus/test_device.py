"""The Pilatus server on a real Tango database, driven as a LimaCCDs client drives it."""

import json

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import tango

from tango_servers.stack.waiting import wait_until

DATA = "/entry/instrument/detector/data"


class EventLog:
    """Collects change events of one attribute (first event is the subscription's current value)."""

    def __init__(self, proxy: tango.DeviceProxy, attribute: str):
        self.values: list = []
        self.errors: list[str] = []
        self._proxy = proxy
        self._id = proxy.subscribe_event(attribute, tango.EventType.CHANGE_EVENT, self._push)

    def _push(self, event: tango.EventData) -> None:
        if event.err:
            self.errors.append(event.errors[0].desc)
        else:
            self.values.append(event.attr_value.value)

    def close(self) -> None:
        self._proxy.unsubscribe_event(self._id)


def wait_ready(proxy: tango.DeviceProxy, timeout: float = 10.0) -> None:
    wait_until(lambda: proxy.acq_status.name == "Ready", timeout, message="acq_status Ready")


def test_internal_trigger_writes_nexus_file(pilatus, tmp_path):
    files = EventLog(pilatus, "file_event")
    try:
        pilatus.acq_nb_frames = 10
        pilatus.prepareAcq()
        pilatus.startAcq()
        wait_ready(pilatus)
        assert pilatus.last_image_saved == 9
        wait_until(lambda: len(files.values) >= 3, 5, message="file_event open and close")
    finally:
        files.close()
    opened, closed = json.loads(files.values[-2]), json.loads(files.values[-1])
    path = tmp_path / "scan_0000.h5"
    assert opened == {
        "file_path": str(path),
        "file_type": "h5",
        "hinted_location": {"data": DATA},
        "done": False,
        "success": False,
    }
    assert closed == {**opened, "done": True, "success": True}
    with h5py.File(path, "r") as f:
        data = f[DATA]
        assert data.shape == (10, pilatus.image_height, pilatus.image_width)
        assert data.dtype == np.int32
        assert f["/entry"].attrs["NX_class"] == "NXentry"
        assert f["/entry/instrument"].attrs["NX_class"] == "NXinstrument"
        assert f["/entry/instrument/detector"].attrs["NX_class"] == "NXdetector"
        assert f["/entry/instrument/detector/count_time"][()] == 0.01
        assert f["/entry/instrument/detector/trigger_mode"][()] == b"INTERNAL_TRIGGER"
        assert data.chunks == (1, *data.shape[1:])
        assert "32008" in data._filters  # bitshuffle
        assert (data[0][:, 60:65] == -1).all()  # module gap
    assert pilatus.saving_next_number == 1
