"""The narrow interface a Pilatus driver implements (camserver client or simulator). No Tango here.

A backend produces frames; everything else (file writing, counters, Tango attributes) lives in
`control.py`, `writer.py` and `device.py`. Names and enum members follow LimaCCDs and the Lima
Pilatus plugin so users meet the words they already know.
"""

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

GAP_VALUE = -1
"""Pixel value of module gaps (no sensor there), as the Pilatus writes them."""

VALID_RANGES = (1e-6, 1e5, 0.0, 1e5)
"""LimaCCDs `valid_ranges` (s): min/max exposure, min/max latency."""


class TriggerMode(enum.IntEnum):
    """LimaCCDs `acq_trigger_mode` labels, in Lima's order."""

    INTERNAL_TRIGGER = 0
    INTERNAL_TRIGGER_MULTI = 1
    EXTERNAL_TRIGGER = 2
    EXTERNAL_TRIGGER_MULTI = 3
    EXTERNAL_GATE = 4
    EXTERNAL_START_STOP = 5

    @property
    def is_external(self) -> bool:
        return self in EXTERNAL_MODES


EXTERNAL_MODES = frozenset(
    {TriggerMode.EXTERNAL_TRIGGER, TriggerMode.EXTERNAL_TRIGGER_MULTI, TriggerMode.EXTERNAL_GATE}
)
SUPPORTED_TRIGGER_MODES = frozenset(TriggerMode) - {TriggerMode.EXTERNAL_START_STOP}


class CamState(enum.IntEnum):
    """Camserver states, spelled as the Lima Pilatus plugin's `cam_state`."""

    STANDBY = 0
    SETTING_ENERGY = 1
    SETTING_THRESHOLD = 2
    RUNNING = 3
    KILL_ACQUISITION = 4
    ERROR = 5
    DISCONNECTED = 6


class ThresholdGain(enum.IntEnum):
    """Pilatus `setthreshold` gain settings (Lima Pilatus plugin `threshold_gain`)."""

    DEFAULT = 0
    LOW = 1
    MID = 2
    HIGH = 3
    ULTRA_HIGH = 4
    AUTO = 5


@dataclass(frozen=True)
class Geometry:
    """Detector size in pixels and the module tiling that puts gaps (value -1) between modules.

    The Pilatus 2M is 3 x 8 modules of 487 x 195 pixels with 7-pixel gaps between module
    columns and 17-pixel gaps between module rows: 1475 x 1679 pixels.
    """

    width: int = 1475
    height: int = 1679
    module_width: int = 487
    module_height: int = 195
    gap_x: int = 7
    gap_y: int = 17
    dtype: str = "int32"

    def __post_init__(self) -> None:
        if min(self.width, self.height, self.module_width, self.module_height) < 1:
            raise ValueError(f"detector and module sizes must be positive, got {self}")
        if min(self.gap_x, self.gap_y) < 0:
            raise ValueError(f"module gaps must not be negative, got {self}")

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns), the numpy shape of one frame."""
        return (self.height, self.width)

    @property
    def frame_nbytes(self) -> int:
        return self.width * self.height * np.dtype(self.dtype).itemsize

    def gap_mask(self) -> np.ndarray:
        """Boolean (rows, columns) array, True where a pixel lies in a gap between modules."""
        cols = np.arange(self.width) % (self.module_width + self.gap_x) >= self.module_width
        rows = np.arange(self.height) % (self.module_height + self.gap_y) >= self.module_height
        return rows[:, None] | cols[None, :]


@dataclass(frozen=True)
class AcquisitionSettings:
    """What one acquisition does: `nb_frames` 0 means until stopped.

    `acq_mode`, `acc_max_expo_time` and `acc_time_mode` are Lima's (CtAcquisition); a backend
    gets settings with the accumulation already split into its own frames (SINGLE).
    """

    nb_frames: int = 1
    expo_time: float = 1.0
    latency_time: float = 0.0
    trigger_mode: TriggerMode = TriggerMode.INTERNAL_TRIGGER
    acq_mode: str = "SINGLE"
    acc_max_expo_time: float = 1.0  # Lima's default
    acc_time_mode: str = "LIVE"

    @property
    def frame_period(self) -> float:
        return self.expo_time + self.latency_time


@dataclass(frozen=True)
class Frame:
    """One frame as the detector delivers it; `index` counts from 0 in each acquisition."""

    index: int
    data: np.ndarray
    timestamp: float
    sample_position: float | None = None


class BackendListener(Protocol):
    """What a backend calls, always from its own worker thread, never while holding its lock."""

    def frame_ready(self, frame: Frame) -> None:
        """A new frame. May block to apply back-pressure (the backend then waits)."""

    def acquisition_ended(self, frames: int, error: str | None) -> None:
        """The acquisition finished (all frames, stop or abort) or failed (`error` set)."""

    def cam_state_changed(self, state: CamState) -> None: ...


@runtime_checkable
class PilatusBackend(Protocol):
    """A Pilatus detector: thresholds, acquisitions and frames."""

    geometry: Geometry

    def set_listener(self, listener: BackendListener) -> None: ...

    @property
    def cam_state(self) -> CamState: ...

    @property
    def energy_threshold(self) -> float:
        """keV"""

    @property
    def threshold_gain(self) -> ThresholdGain: ...

    def set_threshold(self, energy_kev: float, gain: ThresholdGain) -> None:
        """Start setting the threshold and return at once; cam_state is SETTING_THRESHOLD until done.

        Raises BackendBusy while an acquisition runs.
        """

    def threshold_time_left(self) -> float:
        """Seconds until a threshold change completes (0.0 when none is in progress)."""

    def start(self, settings: AcquisitionSettings) -> None:
        """Arm and start an acquisition. Raises BackendBusy when it cannot start now."""

    def soft_trigger(self) -> None:
        """One frame in INTERNAL_TRIGGER_MULTI. Raises BackendBusy otherwise."""

    def stop(self) -> None:
        """End the acquisition after the frame in progress."""

    def abort(self) -> None:
        """End the acquisition now."""

    def close(self) -> None:
        """Stop the worker and release the hardware."""


@runtime_checkable
class TriggerInput(Protocol):
    """The TTL input of a simulated detector: a real one is wired, the simulator is told by software."""

    def external_pulses(self, count: int) -> None:
        """`count` trigger pulses arrived (each makes one frame while armed in an external mode)."""


@runtime_checkable
class SampleInput(Protocol):
    """Where a simulated sample sits: the frames' counts depend on this axis position."""

    def set_sample_position(self, position: float) -> None: ...


class BackendBusy(RuntimeError):
    """The request conflicts with what the detector is doing; the message says what to wait for."""


BACKENDS = ("sim",)


def make_backend(
    kind: str, geometry: Geometry, *, peak: tuple[float, float, float], noise_bank_size: int, threshold_time: float
) -> PilatusBackend:
    """The backend named by the device property `backend`; `peak` is the sample model's
    (position, width, counts). Raises ValueError naming the kinds this server provides."""
    if kind != "sim":
        raise ValueError(f"unknown backend '{kind}': this server provides {', '.join(repr(k) for k in BACKENDS)}")
    from .sim import SampleModel, SimulatedPilatus  # the simulator implements this module's Protocol

    position, width, counts = peak
    model = SampleModel(
        peak_position=position, peak_width=width, peak_counts=counts, noise_bank_size=max(1, noise_bank_size)
    )
    return SimulatedPilatus(geometry, model, threshold_time=threshold_time)
