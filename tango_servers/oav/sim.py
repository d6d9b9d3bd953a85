"""Simulated on-axis viewer: a backlit sample pin and loop seen along the X-ray beam.

No Tango here. One worker thread renders frames at the configured rate and hands them to
the registered listeners. Rendering is vectorised numpy on a precomputed background and
noise bank, so a 1024 x 768 frame costs a few milliseconds.

Geometry (what the device feeds in through `set_axis_position` and `set_optics`):
- screen x (columns, to the right) follows the goniometer `x` axis (the rotation axis, mm);
- the sample's `y` and `z` stages sit on top of omega: at omega = 0, +y moves the sample down
  the screen, at omega = 90 deg, -z does; the loop plane turns with omega, so the loop looks
  widest face-on and a thin line edge-on;
- at x = y = z = 0 the loop centre sits `sample offset` away from the rotation axis, which
  crosses the beam at the optics centre pixel.
"""

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from .backend import Frame, FrameListener, ImageMode

log = logging.getLogger(__name__)

NOMINAL_EXPOSURE = 0.02  # s: the exposure at which the scene radiance maps 1:1 to pixel values
FRAME_RATE_LIMITS = (0.1, 60.0)
EXPOSURE_LIMITS = (1e-4, 1.0)
GAIN_LIMITS = (0.1, 16.0)
_NOISE_ROWS = 257  # the noise field is this much taller than a frame; frames take shifted windows
_NOISE_STEP = 97  # window shift per frame (co-prime with _NOISE_ROWS: every shift comes round)
_NOISE_MAX = 8  # |noise| <= this; the scene keeps this much headroom so uint8 adds never wrap


@dataclass(frozen=True)
class SampleGeometry:
    """Sizes of the mounted sample in mm (loop plane angle in degrees)."""

    loop_length: float = 0.30  # along the pin
    loop_width: float = 0.20  # across the pin, in the loop plane
    loop_thickness: float = 0.012
    loop_face_angle: float = 0.0  # omega at which the loop faces the camera
    stem_length: float = 0.45
    stem_diameter: float = 0.03
    pin_diameter: float = 0.40
    taper_length: float = 0.35  # the pin narrows to the stem over this length
    offset_x: float = 0.0  # loop centre relative to the centring point, axes at zero
    offset_y: float = 0.04
    offset_z: float = -0.03


@dataclass(frozen=True)
class SceneState:
    """Everything a frame depends on besides its counter."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    omega: float = 0.0
    microns_per_pixel_x: float = 2.87
    microns_per_pixel_y: float = 2.87
    centre_x: float = 512.0
    centre_y: float = 384.0
    exposure: float = NOMINAL_EXPOSURE
    gain: float = 1.0
    mode: ImageMode = ImageMode.MONO8


# Scene radiance (pixel value at nominal exposure and unity gain).
_LOOP_RIM = 50.0
_LOOP_FILM = 0.86  # fraction of the background the liquid film in the loop lets through
_STEM = 60.0
_PIN_DARK = 28.0
_PIN_HIGHLIGHT = 45.0
_RGB_TINT = np.array([1.0, 0.96, 0.86])  # warm backlight


class SimCamera:
    """A simulated OAV camera; implements `CameraBackend` and `SampleScene`."""

    def __init__(
        self,
        width: int = 1024,
        height: int = 768,
        mode: ImageMode | str = ImageMode.MONO8,
        frame_rate: float = 25.0,
        seed: int = 0,
        geometry: SampleGeometry | None = None,
    ) -> None:
        if width < 16 or height < 16:
            raise ValueError(f"image size {width}x{height} is too small (16x16 at least)")
        self.width = int(width)
        self.height = int(height)
        self.geometry = geometry or SampleGeometry()
        self._state = SceneState(centre_x=self.width / 2, centre_y=self.height / 2, mode=ImageMode.parse(mode))
        self._frame_rate = _checked("frame rate", frame_rate, FRAME_RATE_LIMITS)
        rng = np.random.default_rng(seed)
        self._background = _make_background(self.width, self.height, rng)
        noise = rng.standard_normal(size=(self.height + _NOISE_ROWS, self.width), dtype=np.float32) * 2.5
        self._noise = np.clip(np.rint(noise), -_NOISE_MAX, _NOISE_MAX).astype(np.int8).view(np.uint8)
        self._lut_cache: tuple[tuple[float, ImageMode], np.ndarray] | None = None

        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._listeners: list[FrameListener] = []
        self._acquiring = False
        self._closed = False
        self._counter = 0
        self._last: Frame | None = None
        self._frame_times: deque[float] = deque(maxlen=64)
        self._thread = threading.Thread(target=self._run, name="oav-sim", daemon=True)
        self._thread.start()

    # -- CameraBackend -------------------------------------------------------------------------
    @property
    def mode(self) -> ImageMode:
        return self._state.mode

    @property
    def acquiring(self) -> bool:
        return self._acquiring

    def start(self) -> None:
        self._acquiring = True
        self._wake.set()

    def stop(self) -> None:
        self._acquiring = False
        self._wake.set()

    @property
    def frame_rate(self) -> float:
        return self._frame_rate

    def set_frame_rate(self, hz: float) -> None:
        self._frame_rate = _checked("frame rate", hz, FRAME_RATE_LIMITS)
        self._wake.set()

    @property
    def measured_frame_rate(self) -> float:
        """Frames per second over the last (up to 64) frames; 0 when stopped."""
        times = list(self._frame_times)
        if not self._acquiring or len(times) < 2 or time.monotonic() - times[-1] > 2.0 / self._frame_rate:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    @property
    def exposure(self) -> float:
        return self._state.exposure

    def set_exposure(self, seconds: float) -> None:
        self._update(exposure=_checked("exposure", seconds, EXPOSURE_LIMITS))

    @property
    def gain(self) -> float:
        return self._state.gain

    def set_gain(self, gain: float) -> None:
        self._update(gain=_checked("gain", gain, GAIN_LIMITS))

    def last_frame(self) -> Frame | None:
        return self._last

    def add_frame_listener(self, listener: FrameListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def status(self) -> str:
        if self._closed:
            return "simulated camera closed"
        if not self._acquiring:
            return f"simulated camera stopped after frame {self._counter}"
        return f"simulated camera acquiring at {self._frame_rate:g} frames/s (frame {self._counter})"

    def close(self) -> None:
        self._closed = True
        self._acquiring = False
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)

    # -- SampleScene ---------------------------------------------------------------------------
    def set_axis_position(self, axis: str, value: float) -> None:
        if axis not in ("x", "y", "z", "omega"):
            raise ValueError(f"unknown goniometer axis {axis!r}; expected x, y, z or omega")
        self._update(**{axis: float(value)})

    def set_optics(
        self, microns_per_pixel_x: float, microns_per_pixel_y: float, centre_x: float, centre_y: float
    ) -> None:
        if microns_per_pixel_x <= 0 or microns_per_pixel_y <= 0:
            raise ValueError("microns per pixel must be positive")
        self._update(
            microns_per_pixel_x=float(microns_per_pixel_x),
            microns_per_pixel_y=float(microns_per_pixel_y),
            centre_x=float(centre_x),
            centre_y=float(centre_y),
        )

    @property
    def scene(self) -> SceneState:
        """The current scene (axes, optics, exposure); immutable snapshot."""
        return self._state

    # -- rendering -----------------------------------------------------------------------------
    def render(self, counter: int, state: SceneState | None = None) -> np.ndarray:
        """The image of frame `counter` for `state` (default: the current scene).

        Deterministic: the same counter, state and seed always give the same pixels, which is
        how tests compare a re-encoded stream against its source.
        """
        st = state or self._state
        scene = self._background.copy()
        self._draw_sample(scene, st)
        row = (counter * _NOISE_STEP) % _NOISE_ROWS
        scene += self._noise[row : row + self.height]  # uint8 modular add; headroom keeps it exact
        return np.take(self._lut(st), scene, axis=0)

    def _lut(self, st: SceneState) -> np.ndarray:
        factor = st.exposure / NOMINAL_EXPOSURE * st.gain
        key = (factor, st.mode)
        cached = self._lut_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        levels = np.arange(256, dtype=np.float64) * factor
        if st.mode is ImageMode.RGB:
            levels = levels[:, None] * _RGB_TINT[None, :]
        lut = np.clip(np.rint(levels), 0, 255).astype(np.uint8)
        self._lut_cache = (key, lut)
        return lut

    def _draw_sample(self, img: np.ndarray, st: SceneState) -> None:
        g = self.geometry
        px_x = 1000.0 / st.microns_per_pixel_x  # pixels per mm
        px_y = 1000.0 / st.microns_per_pixel_y
        omega = math.radians(st.omega)
        across = (st.y + g.offset_y) * math.cos(omega) - (st.z + g.offset_z) * math.sin(omega)
        axis_row = st.centre_y + across * px_y
        loop_cx = st.centre_x + (st.x + g.offset_x) * px_x
        half_len = g.loop_length / 2 * px_x
        rim = max(g.loop_thickness * px_y, 1.5)
        half_h = max(g.loop_width / 2 * abs(math.cos(omega - math.radians(g.loop_face_angle))) * px_y, rim)
        stem_end = loop_cx - half_len
        stem_start = stem_end - g.stem_length * px_x
        taper_start = stem_start - g.taper_length * px_x
        stem_half = max(g.stem_diameter / 2 * px_y, 0.75)
        pin_half = g.pin_diameter / 2 * px_y

        self._draw_pin(img, axis_row, taper_start, stem_start, pin_half, stem_half)
        _fill_band(img, axis_row, stem_half, stem_start, stem_end + rim, _STEM)
        self._draw_loop(img, loop_cx, axis_row, half_len, half_h, rim)

    def _draw_pin(
        self, img: np.ndarray, row: float, taper_start: float, taper_end: float, half: float, end_half: float
    ) -> None:
        h, w = img.shape
        r0, r1 = _clip_range(row - half, row + half + 1, h)
        if r0 >= r1:
            return
        rows = np.arange(r0, r1, dtype=np.float32)
        rel = (rows - row) / half
        # A backlit metal cylinder: a dark silhouette with a faint highlight above its axis.
        shade = _PIN_DARK + (_PIN_HIGHLIGHT - _PIN_DARK) * np.exp(-(((rel + 0.35) / 0.3) ** 2))
        body_end = min(math.floor(taper_start), w)
        if body_end > 0:
            img[r0:r1, :body_end] = shade.astype(np.uint8)[:, None]
        c0, c1 = _clip_range(taper_start, taper_end, w)
        if c0 >= c1:
            return
        cols = np.arange(c0, c1, dtype=np.float32)
        frac = (cols - taper_start) / max(taper_end - taper_start, 1.0)
        col_half = half + (end_half - half) * frac
        inside = np.abs(rows - row)[:, None] <= col_half[None, :]
        region = img[r0:r1, c0:c1]
        region[inside] = np.broadcast_to(shade.astype(np.uint8)[:, None], inside.shape)[inside]

    def _draw_loop(self, img: np.ndarray, cx: float, cy: float, half_w: float, half_h: float, rim: float) -> None:
        h, w = img.shape
        r0, r1 = _clip_range(cy - half_h, cy + half_h + 1, h)
        c0, c1 = _clip_range(cx - half_w, cx + half_w + 1, w)
        if r0 >= r1 or c0 >= c1:
            return
        dy = (np.arange(r0, r1, dtype=np.float32)[:, None] - cy) / half_h
        dx = (np.arange(c0, c1, dtype=np.float32)[None, :] - cx) / half_w
        outer = dx * dx + dy * dy <= 1.0
        region = img[r0:r1, c0:c1]
        inner_w, inner_h = half_w - rim, half_h - rim
        if inner_w > 0.5 and inner_h > 0.5:
            dyi = dy * (half_h / inner_h)
            dxi = dx * (half_w / inner_w)
            film = dxi * dxi + dyi * dyi < 1.0
            region[film] = (region[film] * _LOOP_FILM).astype(np.uint8)
            ring = outer & ~film
        else:
            ring = outer
        region[ring] = np.uint8(_LOOP_RIM)

    # -- worker --------------------------------------------------------------------------------
    def _update(self, **changes) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)

    def _run(self) -> None:
        next_due = time.monotonic()
        while not self._closed:
            if not self._acquiring:
                self._wake.wait()
                self._wake.clear()
                next_due = time.monotonic()
                continue
            delay = next_due - time.monotonic()
            if delay > 0 and self._wake.wait(delay):
                self._wake.clear()
                # Re-evaluate: stopped, closed or a new frame rate.
                next_due = min(next_due, time.monotonic() + 1.0 / self._frame_rate)
                continue
            self._emit()
            period = 1.0 / self._frame_rate
            next_due += period
            now = time.monotonic()
            if next_due < now - period:
                next_due = now  # fell behind (loaded machine): drop frames, do not burst

    def _emit(self) -> None:
        self._counter += 1
        timestamp = time.time()
        image = self.render(self._counter)
        image.flags.writeable = False
        frame = Frame(self._counter, timestamp, image)
        self._last = frame
        self._frame_times.append(time.monotonic())
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(frame)
            except Exception:
                log.exception("OAV frame listener %r failed", listener)


def _checked(what: str, value: float, limits: tuple[float, float]) -> float:
    value = float(value)
    low, high = limits
    if not (low <= value <= high) or math.isnan(value):
        raise ValueError(f"{what} {value:g} is outside {low:g} .. {high:g}")
    return value


def _clip_range(start: float, stop: float, size: int) -> tuple[int, int]:
    return max(math.floor(start), 0), min(math.ceil(stop), size)


def _fill_band(img: np.ndarray, row: float, half: float, start: float, stop: float, value: float) -> None:
    h, w = img.shape
    r0, r1 = _clip_range(row - half, row + half, h)
    c0, c1 = _clip_range(start, stop, w)
    if r0 < r1 and c0 < c1:
        img[r0:r1, c0:c1] = np.uint8(value)


def _make_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A backlit field: bright centre, vignetted corners, a slight tilt and a few dust specks."""
    nx = (np.arange(width, dtype=np.float32) - width / 2) / (width / 2)
    ny = (np.arange(height, dtype=np.float32)[:, None] - height / 2) / (height / 2)
    field = 205.0 * (1.0 - 0.22 * (nx * nx + ny * ny)) + 8.0 * nx - 5.0 * ny
    for _ in range(12):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(2.0, 6.0)
        r0, r1 = _clip_range(cy - 4 * radius, cy + 4 * radius, height)
        c0, c1 = _clip_range(cx - 4 * radius, cx + 4 * radius, width)
        yy = np.arange(r0, r1, dtype=np.float32)[:, None] - cy
        xx = np.arange(c0, c1, dtype=np.float32)[None, :] - cx
        field[r0:r1, c0:c1] -= 25.0 * np.exp(-(xx * xx + yy * yy) / (2 * radius * radius))
    field = np.clip(field, _NOISE_MAX, 255 - _NOISE_MAX)
    return np.rint(field).astype(np.uint8)
