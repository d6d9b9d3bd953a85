"""The simulator and the control layer without a running server: frames, triggers, thresholds, pulses."""

import threading
from dataclasses import replace

import numpy as np
import pytest

from tango_servers.common import split_attribute_name
from tango_servers.pilatus.accumulation import Accumulator, hardware_settings, split_exposure
from tango_servers.pilatus.backend import (
    AcquisitionSettings,
    BackendBusy,
    CamState,
    Frame,
    Geometry,
    PilatusBackend,
    TriggerMode,
)
from tango_servers.pilatus.control import PulseCounter, SavingSettings
from tango_servers.pilatus.image import ROTATIONS, BadImageSetting, ImageGeometry, ImageOps
from tango_servers.pilatus.pixel_map import detector_point, saved_point
from tango_servers.pilatus.sim import FramePattern, SampleModel, SimulatedPilatus
from tango_servers.stack.waiting import wait_until

SMALL = Geometry(125, 67, 60, 30, 5, 7)


class SimListener:
    """What the simulator reports to its listener: frames, the end, camserver states."""

    def __init__(self):
        self.frames = []
        self.ended = threading.Event()
        self.states = []

    def frame_ready(self, frame):
        self.frames.append(frame)

    def acquisition_ended(self, frames, error):
        self.ended.set()

    def cam_state_changed(self, state):
        self.states.append(state)


@pytest.fixture
def sim():
    detector = SimulatedPilatus(SMALL, SampleModel(noise_bank_size=2), threshold_time=0.2)
    recorder = SimListener()
    detector.set_listener(recorder)
    detector.recorder = recorder
    yield detector
    detector.close()


def test_pilatus_2m_geometry_and_gaps():
    g = Geometry()
    assert g.shape == (1679, 1475)
    gaps = g.gap_mask()
    assert gaps[0, 487:494].all() and not gaps[0, 486] and not gaps[0, 494]
    assert gaps[195:212, 0].all() and not gaps[194, 0] and not gaps[212, 0]
    # 3 x 8 modules of 487 x 195 pixels.
    assert (~gaps).sum() == 24 * 487 * 195


def test_frames_have_gaps_poisson_background_and_a_peak_in_position():
    pattern = FramePattern(SMALL, SampleModel(peak_position=2.0, peak_width=0.5, noise_bank_size=3))
    frame = pattern.frame(2.0)
    assert frame.dtype == np.int32 and frame.shape == SMALL.shape
    gaps = SMALL.gap_mask()
    assert (frame[gaps] == -1).all() and (frame[~gaps] >= 0).all()
    background = pattern.frame(100.0).ravel()[pattern.spot_index].sum()
    spots = [pattern.frame(x).ravel()[pattern.spot_index].sum() - background for x in (0.0, 1.5, 2.0, 2.5, 4.0)]
    assert int(np.argmax(spots)) == 2
    assert spots[0] < 0.01 * spots[2] and spots[4] < 0.01 * spots[2]
    # A fresh array every time: the caller may keep it.
    assert pattern.frame(2.0) is not pattern.frame(2.0)


def test_simulator_implements_the_backend_protocol(sim):
    assert isinstance(sim, PilatusBackend)


def test_internal_trigger_takes_nb_frames(sim):
    sim.start(AcquisitionSettings(nb_frames=5, expo_time=0.001))
    assert sim.recorder.ended.wait(5)
    assert [f.index for f in sim.recorder.frames] == [0, 1, 2, 3, 4]
    assert sim.recorder.states == [CamState.RUNNING, CamState.STANDBY]


def test_external_pulses_make_one_frame_each_and_no_more(sim):
    sim.external_pulses(3)  # not armed: ignored
    sim.start(AcquisitionSettings(nb_frames=4, trigger_mode=TriggerMode.EXTERNAL_GATE))
    sim.external_pulses(2)
    wait_until(lambda: len(sim.recorder.frames) == 2, 5)
    sim.external_pulses(5)
    assert sim.recorder.ended.wait(5)
    assert len(sim.recorder.frames) == 4
    assert sim.ignored_pulses == 3 + 3


def test_threshold_is_slow_and_blocks_acquisitions(sim):
    sim.set_threshold(9.5, sim.threshold_gain)
    assert sim.cam_state == CamState.SETTING_THRESHOLD
    with pytest.raises(BackendBusy, match="threshold"):
        sim.start(AcquisitionSettings())
    wait_until(lambda: sim.cam_state == CamState.STANDBY, 5)
    assert sim.energy_threshold == 9.5


def test_start_external_start_stop_is_refused(sim):
    with pytest.raises(BackendBusy, match="not supported"):
        sim.start(AcquisitionSettings(trigger_mode=TriggerMode.EXTERNAL_START_STOP))


@pytest.mark.parametrize(
    ("values", "pulses"),
    [
        ([10, 11, 12, 15], 5),  # first value is the baseline
        ([0, 1, 2, 0, 1, 2, 3], 2 + 3),  # reset to 0 then counting again
        ([7, 3], 3),  # reset event missed: the counter restarted from 0
    ],
)
def test_pulse_counter(values, pulses):
    counter = PulseCounter()
    assert sum(counter.update(v) for v in values) == pulses


def test_pulse_counter_reset_takes_a_new_baseline():
    counter = PulseCounter()
    counter.update(5)
    counter.reset()
    assert counter.update(9) == 0 and counter.update(10) == 1


def test_numbering_continues_after_existing_files(tmp_path):
    for name in ("pilatus_0000.h5", "pilatus_0007.h5", "pilatus_x.h5", "other_0042.h5"):
        (tmp_path / name).write_text("")
    assert SavingSettings(directory=str(tmp_path)).after_existing_files().next_number == 8
    assert SavingSettings(directory=str(tmp_path / "none")).after_existing_files().next_number == 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sim/aerotech/omega", (None, "sim/aerotech/omega", "position")),
        ("sim/aerotech/ctrl/pso_pulse_count", (None, "sim/aerotech/ctrl", "pso_pulse_count")),
        ("tango://h:10000/sim/aerotech/omega", ("h:10000", "sim/aerotech/omega", "position")),
        ("tango://h:10000/a/b/c/d", ("h:10000", "a/b/c", "d")),
    ],
)
def test_followed_attribute_names(name, expected):
    assert split_attribute_name(name, "position") == expected
    with pytest.raises(ValueError, match="neither"):
        split_attribute_name("sim/omega", "position")


@pytest.mark.parametrize(
    ("expo", "longest", "mode", "count", "sub"),
    [
        (2.5, 1.0, "LIVE", 3, 2.5 / 3),  # a remainder: one more, shorter, sub-frame
        (2.0, 1.0, "LIVE", 2, 1.0),  # an exact multiple: sub-frames of acc_max_expo_time
        (0.5, 1.0, "LIVE", 1, 0.5),
        (2.0, 1.0, "REAL", 3, 2.0 / 3),  # CtAcquisition's REAL: int(expo / (max + min_latency)) + 1
        (0.5, 1.0, "REAL", 1, 0.5),
    ],
)
def test_accumulation_splits_the_exposure_as_ctacquisition(expo, longest, mode, count, sub):
    settings = AcquisitionSettings(
        nb_frames=4, expo_time=expo, acq_mode="ACCUMULATION", acc_max_expo_time=longest, acc_time_mode=mode
    )
    split = split_exposure(settings, 0.0)
    assert split.nb_frames == count and split.expo_time == pytest.approx(sub) and split.dead_time == 0.0
    assert split.live_time == pytest.approx(expo)
    hardware = hardware_settings(settings, split)
    assert (hardware.nb_frames, hardware.expo_time, hardware.acq_mode) == (4 * count, split.expo_time, "SINGLE")
    assert split_exposure(AcquisitionSettings(expo_time=expo), 0.0) is None  # SINGLE: LimaCCDs reads -1
    assert split_exposure(replace(settings, acc_time_mode="REAL"), 0.001).dead_time == pytest.approx(
        (split_exposure(replace(settings, acc_time_mode="REAL"), 0.001).nb_frames - 1) * 0.001
    )


def test_accumulator_sums_runs_of_sub_frames_keeping_gaps():
    accumulator = Accumulator(3)
    subs = [np.array([[1, -1], [2, 3]], dtype=np.int32) * (i + 1) for i in range(6)]
    subs = [np.where(s < 0, -1, s) for s in subs]
    out = [accumulator.add(Frame(i, s, float(i))) for i, s in enumerate(subs)]
    assert [f is None for f in out] == [True, True, False, True, True, False]
    np.testing.assert_array_equal(out[2].data, [[6, -1], [12, 18]])
    assert (out[2].index, out[2].timestamp, out[5].index) == (0, 0.0, 1)
    np.testing.assert_array_equal(out[5].data, [[15, -1], [30, 45]])


def test_image_ops_roi_keeps_the_detector_area_through_flip_and_rotation():
    rng = np.random.default_rng(5)
    ids = np.arange(11 * 7, dtype=np.int32).reshape(7, 11)  # each pixel named by its detector index
    for _ in range(300):
        flip = tuple(bool(v) for v in rng.integers(0, 2, 2))
        ops = ImageOps((11, 7)).with_flip(flip).with_rotation(ROTATIONS[rng.integers(4)])
        width, height = ops.full_size
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        ops = ops.with_roi((x, y, int(rng.integers(1, width - x + 1)), int(rng.integers(1, height - y + 1))))
        area = set(ops.apply(ids).ravel())
        moved = ops.with_flip((not flip[0], flip[1])).with_rotation(ROTATIONS[rng.integers(4)])
        assert set(moved.apply(ids).ravel()) == area, (ops, moved)
    with pytest.raises(BadImageSetting, match="Invalid binning"):
        ImageOps((11, 7)).with_bin((0, 1))


def test_image_geometry_carries_the_gap_mask_through_the_operations():
    ops = ImageOps((SMALL.width, SMALL.height)).with_bin((2, 2)).with_rotation("90")
    geometry = ImageGeometry.of(SMALL, ops)
    assert geometry.shape == (SMALL.width // 2, SMALL.height // 2)
    np.testing.assert_array_equal(geometry.gap_mask(), ops.mask(SMALL.gap_mask()))
    assert geometry.gap_mask().any() and ImageGeometry.of(SMALL, ImageOps((SMALL.width, SMALL.height))) is SMALL


def lima_order(frame, bin_xy, flip, rotation, roi):
    """SoftOpInternalMgr's order in plain numpy: bin (factors swapped under 90/270), flip, rotation, roi."""
    bx, by = bin_xy[::-1] if rotation in ("90", "270") else bin_xy
    rows, cols = frame.shape[0] // by, frame.shape[1] // bx
    blocks = frame[: rows * by, : cols * bx].reshape(rows, by, cols, bx).astype(np.int64)
    data = np.where(blocks.min(axis=(1, 3)) < 0, -1, blocks.sum(axis=(1, 3))).astype(np.int32)
    data = data[:, ::-1] if flip[0] else data
    data = data[::-1, :] if flip[1] else data
    data = np.rot90(data, {"NONE": 0, "90": -1, "180": 2, "270": 1}[rotation])
    x, y, w, h = roi
    return data[y : y + h, x : x + w]


def test_image_ops_cut_the_roi_first_and_give_lima_orders_frame():
    rng = np.random.default_rng(7)
    frame = np.where(SMALL.gap_mask(), -1, rng.integers(0, 50, SMALL.shape)).astype(np.int32)
    for _ in range(300):
        bin_xy = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        flip = (bool(rng.integers(2)), bool(rng.integers(2)))
        rotation = ROTATIONS[rng.integers(4)]
        ops = ImageOps((SMALL.width, SMALL.height)).with_bin(bin_xy).with_flip(flip).with_rotation(rotation)
        width, height = ops.full_size
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        roi = (x, y, int(rng.integers(1, width - x + 1)), int(rng.integers(1, height - y + 1)))
        ops = ops.with_roi(roi)
        np.testing.assert_array_equal(ops.apply(frame), lima_order(frame, bin_xy, flip, rotation, ops.shown_roi))


def test_pixel_map_puts_each_detector_pixel_where_the_operations_move_it():
    """`pixel_map` (the files' geometry) agrees with the frames: a lone bright detector pixel
    lands in the saved pixel holding its point, and the saved point maps back to it."""
    rng = np.random.default_rng(11)
    for _ in range(200):
        bin_xy = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        flip = (bool(rng.integers(2)), bool(rng.integers(2)))
        ops = ImageOps((SMALL.width, SMALL.height)).with_bin(bin_xy).with_flip(flip)
        ops = ops.with_rotation(ROTATIONS[rng.integers(4)])
        width, height = ops.full_size
        ops = ops.with_roi((1, 2, width - 3, height - 4))
        x, y = int(rng.integers(0, SMALL.width)), int(rng.integers(0, SMALL.height))
        frame = np.zeros(SMALL.shape, np.int32)
        frame[y, x] = 1
        centre = (x + 0.5, y + 0.5)
        u, v = saved_point(ops, centre)
        np.testing.assert_allclose(detector_point(ops, (u, v)), centre)
        hits = np.argwhere(ops.apply(frame) == 1)
        if len(hits):  # not in an edge pixel the bin drops, nor outside the roi
            assert [int(v), int(u)] == hits[0].tolist(), (ops, (x, y))
