"""A simulated Pilatus: a sample model, a trigger input and one worker thread. No Tango here.

Frames are cheap enough for 250 frames/s at full 2M size because the expensive part is done once:

* The dense part of the pattern (air-scatter background and two powder rings) is sampled with
  numpy's Poisson generator `noise_bank_size` times at startup. Each frame starts as a copy of
  one of these realisations, picked at random, so background noise repeats between frames
  (honest Poisson statistics per pixel, not per frame sequence).
* The sparse part (Bragg-like spots, a few thousand pixels) is drawn fresh for every frame:
  its mean scales with a Gaussian in the sample axis position, `peak_counts * exp(-(x - x0)**2
  / (2 * w**2))`, and numpy draws Poisson counts for just those pixels. A scan of the axis
  therefore shows a real peak at `peak_position`.
* Module gaps are -1, as the detector writes them.

Counts per frame do not scale with the exposure time: the model is of a sample, not a flux.
"""

import collections
import contextlib
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from .backend import (
    GAP_VALUE,
    SUPPORTED_TRIGGER_MODES,
    AcquisitionSettings,
    BackendBusy,
    BackendListener,
    CamState,
    Frame,
    Geometry,
    ThresholdGain,
    TriggerMode,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleModel:
    """A crystal on a rotation axis: spots light up around `peak_position` (axis units)."""

    peak_position: float = 0.0
    peak_width: float = 1.0
    peak_counts: float = 400.0
    background: float = 1.0
    ring_counts: float = 6.0
    spots: int = 80
    noise_bank_size: int = 8
    seed: int = 20240


class FramePattern:
    """The precomputed pattern of one sample model on one detector geometry."""

    def __init__(self, geometry: Geometry, model: SampleModel):
        self.geometry = geometry
        self.model = model
        self._rng = np.random.default_rng(model.seed)
        gaps = geometry.gap_mask()
        self.bank = self._background_bank(gaps)
        self.spot_index, self.spot_profile = self._spots(gaps)
        self._last_bank = -1

    def _mean_background(self) -> np.ndarray:
        g, m = self.geometry, self.model
        rows = np.arange(g.height, dtype=np.float32)[:, None]
        cols = np.arange(g.width, dtype=np.float32)[None, :]
        cy, cx = 0.55 * g.height, 0.5 * g.width
        r = np.hypot(rows - cy, cols - cx)
        scale = 0.25 * min(g.width, g.height)
        lam = m.background * (1.0 + 2.0 * np.exp(-((r / scale) ** 2)))
        for radius, weight in ((0.45, 1.0), (0.8, 0.5)):
            lam += weight * m.ring_counts * np.exp(-(((r - radius * scale) / 1.5) ** 2))
        return lam

    def _background_bank(self, gaps: np.ndarray) -> np.ndarray:
        lam = self._mean_background()
        bank = np.empty((self.model.noise_bank_size, *self.geometry.shape), dtype=self.geometry.dtype)
        for i in range(len(bank)):
            bank[i] = self._rng.poisson(lam)
            bank[i][gaps] = GAP_VALUE
        return bank

    def _spots(self, gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat pixel indices and relative means (peak 1.0) of Gaussian spots off the gaps."""
        g, m = self.geometry, self.model
        half = 3
        dy, dx = np.mgrid[-half : half + 1, -half : half + 1]
        indices, profiles = [], []
        for _ in range(m.spots):
            y = self._rng.uniform(0, g.height)
            x = self._rng.uniform(0, g.width)
            sigma = self._rng.uniform(0.8, 1.6)
            amplitude = self._rng.uniform(0.2, 1.0)
            py, px = int(y) + dy, int(x) + dx
            inside = (py >= 0) & (py < g.height) & (px >= 0) & (px < g.width)
            py, px = py[inside], px[inside]
            keep = ~gaps[py, px]
            py, px = py[keep], px[keep]
            value = amplitude * np.exp(-((py + 0.5 - y) ** 2 + (px + 0.5 - x) ** 2) / (2 * sigma**2))
            indices.append(py * g.width + px)
            profiles.append(value)
        if not indices:
            return np.empty(0, dtype=np.intp), np.empty(0)
        flat = np.concatenate(indices)
        values = np.concatenate(profiles)
        unique, inverse = np.unique(flat, return_inverse=True)
        return unique, np.bincount(inverse, weights=values)

    def spot_scale(self, position: float | None) -> float:
        """Fraction of the peak intensity at this axis position (unknown position counts as 0.0)."""
        x = 0.0 if position is None else position
        m = self.model
        return float(np.exp(-((x - m.peak_position) ** 2) / (2 * m.peak_width**2)))

    def frame(self, position: float | None) -> np.ndarray:
        """A new frame (a fresh array the caller owns)."""
        pick = int(self._rng.integers(len(self.bank)))
        if pick == self._last_bank and len(self.bank) > 1:
            pick = (pick + 1) % len(self.bank)
        self._last_bank = pick
        data = self.bank[pick].copy()
        if len(self.spot_index):
            lam = self.spot_profile * (self.model.peak_counts * self.spot_scale(position))
            data.ravel()[self.spot_index] += self._rng.poisson(lam).astype(data.dtype)
        return data


class SimulatedPilatus:
    """A Pilatus detector in software, with the same behaviour a camserver driver would show.

    One worker thread makes frames: at the frame period in INTERNAL_TRIGGER, one per
    `soft_trigger()` (after the exposure time) in INTERNAL_TRIGGER_MULTI, and one per pulse
    reported through `external_pulses()` in the external modes. Setting the threshold takes
    `threshold_time` seconds during which acquisitions are refused.
    """

    def __init__(
        self,
        geometry: Geometry | None = None,
        model: SampleModel | None = None,
        *,
        threshold_time: float = 3.0,
        energy_threshold: float = 8.0,
    ):
        self.geometry = geometry or Geometry()
        self.pattern = FramePattern(self.geometry, model or SampleModel())
        self.threshold_time = threshold_time
        self._listener: BackendListener | None = None
        self._cond = threading.Condition()
        self._cam_state = CamState.STANDBY
        self._energy = energy_threshold
        self._gain = ThresholdGain.DEFAULT
        self._threshold_until: float | None = None
        self._settings: AcquisitionSettings | None = None
        self._frames_done = 0
        self._next_due = 0.0
        self._trigger_due: collections.deque[float] = collections.deque()
        self._stop_requested = False
        self._notifications: collections.deque[CamState] = collections.deque()
        self._closing = False
        self._sample_position: float | None = None
        self.ignored_pulses = 0
        self._thread = threading.Thread(target=self._run, name="pilatus-sim", daemon=True)
        self._thread.start()

    # -- inputs -------------------------------------------------------------------------------
    def set_listener(self, listener: BackendListener) -> None:
        self._listener = listener

    def set_sample_position(self, position: float) -> None:
        self._sample_position = float(position)

    def external_pulses(self, count: int) -> None:
        with self._cond:
            settings = self._settings
            if settings is None or not settings.trigger_mode.is_external or self._stop_requested:
                self.ignored_pulses += count
                return
            accepted = count
            if settings.nb_frames:
                room = settings.nb_frames - self._frames_done - len(self._trigger_due)
                accepted = max(0, min(count, room))
            self.ignored_pulses += count - accepted
            now = time.monotonic()
            self._trigger_due.extend([now] * accepted)
            self._cond.notify_all()

    # -- state --------------------------------------------------------------------------------
    @property
    def cam_state(self) -> CamState:
        return self._cam_state

    @property
    def energy_threshold(self) -> float:
        return self._energy

    @property
    def threshold_gain(self) -> ThresholdGain:
        return self._gain

    @property
    def sample_position(self) -> float | None:
        return self._sample_position

    def threshold_time_left(self) -> float:
        until = self._threshold_until
        return max(0.0, until - time.monotonic()) if until is not None else 0.0

    # -- commands -----------------------------------------------------------------------------
    def set_threshold(self, energy_kev: float, gain: ThresholdGain) -> None:
        with self._cond:
            if self._settings is not None:
                raise BackendBusy("cannot change the energy threshold during an acquisition: stop it first (stopAcq)")
            self._energy = float(energy_kev)
            self._gain = ThresholdGain(gain)
            self._threshold_until = time.monotonic() + self.threshold_time
            self._set_state(CamState.SETTING_THRESHOLD)

    def start(self, settings: AcquisitionSettings) -> None:
        with self._cond:
            if settings.trigger_mode not in SUPPORTED_TRIGGER_MODES:
                raise BackendBusy(f"trigger mode {settings.trigger_mode.name} is not supported by a Pilatus")
            if self._threshold_until is not None:
                raise BackendBusy(
                    f"the detector is setting its energy threshold ({self.threshold_time_left():.1f} s "
                    "left): start the acquisition when acq_status is Ready"
                )
            if self._settings is not None:
                raise BackendBusy("an acquisition is already running: stop it first (stopAcq)")
            self._settings = settings
            self._frames_done = 0
            self._trigger_due.clear()
            self._stop_requested = False
            self._next_due = time.monotonic() + settings.expo_time
            self._set_state(CamState.RUNNING)

    def soft_trigger(self) -> None:
        with self._cond:
            settings = self._settings
            if settings is None or settings.trigger_mode != TriggerMode.INTERNAL_TRIGGER_MULTI:
                raise BackendBusy(
                    "softTrigger takes a frame only in INTERNAL_TRIGGER_MULTI while the acquisition "
                    "is running: set acq_trigger_mode, then prepareAcq and startAcq"
                )
            queued = self._frames_done + len(self._trigger_due)
            if settings.nb_frames and queued >= settings.nb_frames:
                raise BackendBusy(f"all {settings.nb_frames} frames of this acquisition are already triggered")
            self._trigger_due.append(time.monotonic() + settings.expo_time)
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            if self._settings is not None:
                self._stop_requested = True
                self._trigger_due.clear()
                self._cond.notify_all()

    def abort(self) -> None:
        self.stop()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    # -- worker -------------------------------------------------------------------------------
    def _set_state(self, state: CamState) -> None:
        """Record a state change and wake the worker to report it (caller holds the lock)."""
        self._cam_state = state
        self._notifications.append(state)
        self._cond.notify_all()

    def _next_action(self, now: float) -> tuple[str | None, float | None]:
        """What the worker does next, or how long it may sleep (caller holds the lock)."""
        if self._notifications:
            return "notify", None
        waits = []
        if self._threshold_until is not None:
            if now >= self._threshold_until:
                return "threshold_done", None
            waits.append(self._threshold_until - now)
        settings = self._settings
        if settings is not None:
            if self._stop_requested:
                return "end", None
            if settings.nb_frames and self._frames_done >= settings.nb_frames:
                return "end", None
            if settings.trigger_mode == TriggerMode.INTERNAL_TRIGGER:
                if now >= self._next_due:
                    return "frame", None
                waits.append(self._next_due - now)
            elif self._trigger_due:
                if now >= self._trigger_due[0]:
                    self._trigger_due.popleft()
                    return "frame", None
                waits.append(self._trigger_due[0] - now)
        return None, (min(waits) if waits else None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closing:
                        return
                    action, wait = self._next_action(time.monotonic())
                    if action is not None:
                        break
                    self._cond.wait(wait)
                listener = self._listener
                if action == "notify":
                    state = self._notifications.popleft()
                elif action == "threshold_done":
                    self._threshold_until = None
                    self._set_state(CamState.STANDBY)
                    continue
                elif action == "end":
                    frames = self._frames_done
                    self._settings = None
                    self._stop_requested = False
                    self._trigger_due.clear()
                    self._set_state(CamState.STANDBY)
                elif action == "frame":
                    index = self._frames_done
                    self._frames_done += 1
                    period = self._settings.frame_period if self._settings else 0.0
                    self._next_due = max(self._next_due + period, time.monotonic() - period)
            if listener is None:
                continue
            # Listener calls happen outside the lock: they may block (writer back-pressure).
            with _report_errors():
                if action == "notify":
                    listener.cam_state_changed(state)
                elif action == "end":
                    listener.acquisition_ended(frames, None)
                elif action == "frame":
                    data = self.pattern.frame(self._sample_position)
                    listener.frame_ready(Frame(index, data, time.time(), self._sample_position))


@contextlib.contextmanager
def _report_errors():
    """A listener bug must not kill the worker thread; it goes to the server log instead."""
    try:
        yield
    except Exception:
        logger.exception("Pilatus simulator listener failed")
