"""Lima's ACCUMULATION acquisition mode: how an exposure is split into sub-frames, and their sum. No Tango here.

The spec is Lima core `control/src/CtAcquisition.cpp` (`_updateAccPars`, `_apply`) and
`control/src/CtAccumulation.cpp`. An acquisition of `acq_nb_frames` frames of `acq_expo_time`
each takes `acc_nb_frames` sub-frames per frame from the detector, none longer than
`acc_max_expo_time`; their sum is the frame clients read and files hold (Lima's default
`acc_out_type` Bpp32S). The image operations (bin, flip, rotation, roi) apply to each sub-frame
first, as CtAccumulation runs SoftOpInternalMgr before it adds.
"""

from dataclasses import dataclass, replace

import numpy as np

from .backend import GAP_VALUE, VALID_RANGES, AcquisitionSettings, Frame, TriggerMode

ACQ_MODES = ("SINGLE", "CONCATENATION", "ACCUMULATION")
ACC_TIME_MODES = ("LIVE", "REAL")
LIMA_ROUNDING_S = 1e-6  # _updateAccPars: a remainder below this is no extra sub-frame


@dataclass(frozen=True)
class AccumulationSplit:
    """acc_nb_frames sub-frames of acc_expo_time each, acc_dead_time between the first and the last."""

    nb_frames: int
    expo_time: float
    dead_time: float

    @property
    def live_time(self) -> float:
        return self.nb_frames * self.expo_time


def split_exposure(settings: AcquisitionSettings, min_latency: float = VALID_RANGES[2]) -> AccumulationSplit | None:
    """Lima's split of `acq_expo_time` (None outside ACCUMULATION, where LimaCCDs reads -1).

    LIVE: the fewest sub-frames of at most acc_max_expo_time whose exposures add up to
    acq_expo_time. REAL: acq_expo_time also covers the minimum latency between sub-frames
    (`valid_ranges`' min latency, the detector's).
    """
    if settings.acq_mode != "ACCUMULATION":
        return None
    expo, longest = settings.expo_time, settings.acc_max_expo_time
    if settings.acc_time_mode == "LIVE":
        whole = int(expo / longest)
        if expo - whole * longest > LIMA_ROUNDING_S:
            count, sub = whole + 1, expo / (whole + 1)
        else:
            count, sub = whole, longest
        return AccumulationSplit(count, sub, (count - 1) * min_latency)
    count = int(expo / (longest + min_latency)) + 1
    dead = (count - 1) * min_latency
    return AccumulationSplit(count, (expo - dead) / count, dead)


def hardware_settings(settings: AcquisitionSettings, split: AccumulationSplit | None) -> AcquisitionSettings:
    """What the detector itself does: every sub-frame is one of its frames (CtAcquisition::_apply)."""
    if split is None:
        return settings
    return replace(
        settings, nb_frames=settings.nb_frames * split.nb_frames, expo_time=split.expo_time, acq_mode="SINGLE"
    )


def triggers_per_frame(settings: AcquisitionSettings, split: AccumulationSplit | None) -> int:
    """Detector frames one softTrigger (or startAcq) takes in INTERNAL_TRIGGER_MULTI."""
    if split is None or settings.trigger_mode != TriggerMode.INTERNAL_TRIGGER_MULTI:
        return 1
    return split.nb_frames


class Accumulator:
    """Sums each run of `nb_frames` sub-frames into one frame (frames arrive in order).

    The frame keeps its first sub-frame's time and sample position; module gaps (-1 in every
    sub-frame) stay -1 rather than -nb_frames, so the file's pixel mask and underload value hold.
    """

    def __init__(self, nb_frames: int):
        self.nb_frames = max(1, nb_frames)
        self._running: tuple[Frame, np.ndarray] | None = None  # the first sub-frame and the sum so far

    def add(self, sub_frame: Frame) -> Frame | None:
        """The accumulated frame once `sub_frame` completes it, else None."""
        position = sub_frame.index % self.nb_frames
        if position == 0 or self._running is None:
            self._running = (sub_frame, np.array(sub_frame.data, dtype=np.int32, copy=True))
        else:
            np.add(self._running[1], sub_frame.data, out=self._running[1])
        if position != self.nb_frames - 1:
            return None
        (first, total), self._running = self._running, None
        np.maximum(total, GAP_VALUE, out=total)
        return replace(first, index=sub_frame.index // self.nb_frames, data=total)
