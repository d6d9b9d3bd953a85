"""What Lima's Pilatus camera plugin adds over LimaCCDs, without Tango (`camera.py` maps it).

The plugin (Lima-camera-pilatus `tango/Pilatus.py`, `src/PilatusCamera.cpp`) shares the detector
control with the LimaCCDs device of its server; so does this one, through `share_control` /
`shared_control` (the plugin's module-level `get_control()`). Camserver state changes reach the
camera devices from the backend's own thread (`watch_cam_state`). Names and value sets are the
plugin's: `threshold_gain` DEFAULT, LOW, MID, HIGH, ULTRA_HIGH, AUTO; `fill_mode` ON, OFF;
`cam_state` the labels of its `__CamStatus`.

Threshold and energy follow camserver: `setthreshold [gain] <eV>` sets the counting threshold;
`setenergy <eV>` sets the X-ray energy and puts the threshold at half of it. Either takes the
backend's threshold time, with `acq_status` Configuration meanwhile (the control layer's slow
path), and the call returns at once.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .backend import CamState, Frame, ThresholdGain
from .control import AcqStatus, AcquisitionControl, ControlRefused

THRESHOLD_GAINS = tuple(gain.name for gain in ThresholdGain)
FILL_MODES = ("ON", "OFF")
CAM_STATES = (  # the plugin's __CamStatus labels, in its order
    "ERROR",
    "DISCONNECTED",
    "STANDBY",
    "SETTING_ENERGY",
    "SETTING_THRESHOLD",
    "SETTING_EXPOSURE",
    "SETTING_NB_IMAGE_IN_SEQUENCE",
    "SETTING_EXPOSURE_PERIOD",
    "SETTING_HARDWARE_TRIGGER_DELAY",
    "SETTING_EXPOSURE_PER_FRAME",
    "SETTING_ROI",
    "KILL_ACQUISITION",
    "RUNNING",
    "ANYCMD",
)
THRESHOLD_RANGE_EV = (2000, 40000)
READOUT_TIME = 950e-6  # s: Lima's value for a Pilatus3 X (PilatusInterface.cpp RoiCtrlObj)
MAX_FRAME_RATE = 250  # Hz: Lima's value for a Pilatus3 2M full frame
SENSOR_CHANNELS = (0, 1, 2)
# A plausible reading per channel (temperature in C, relative humidity in %): the simulator has no sensors.
_TEMPERATURE_HUMIDITY = ((24.9, 5.1), (25.6, 4.8), (26.2, 5.4))
CAMSERVER_COMMANDS = ("setthreshold [gain] <eV>", "setenergy <eV>", "gapfill -1|0", "delay <s>", "nexpframe <n>")


class NoControl(ControlRefused):
    """The LimaCCDs device of this server has no detector control (not started, or in FAULT)."""

    reason = "Pilatus_NoControl"


_shared: AcquisitionControl | None = None
_shared_lock = threading.Lock()
_cam_state_watchers: list[Callable[[CamState], None]] = []


class _CamStateTee:
    """The backend's listener: everything goes to the control, camserver states to the watchers too."""

    def __init__(self, control: AcquisitionControl) -> None:
        self._control = control

    def frame_ready(self, frame: Frame) -> None:
        self._control.frame_ready(frame)

    def acquisition_ended(self, frames: int, error: str | None) -> None:
        self._control.acquisition_ended(frames, error)

    def cam_state_changed(self, state: CamState) -> None:
        self._control.cam_state_changed(state)
        with _shared_lock:
            watchers = list(_cam_state_watchers)
        for watcher in watchers:
            watcher(state)


def share_control(control: AcquisitionControl | None) -> None:
    """Make `control` the detector control of this server process (the LimaCCDs device calls it);
    the camera devices then hear its backend's camserver states (`watch_cam_state`)."""
    global _shared
    if control is not None:
        control.backend.set_listener(_CamStateTee(control))
    with _shared_lock:
        _shared = control


def shared_control() -> AcquisitionControl:
    """The detector control the LimaCCDs device of this process shares; NoControl when none."""
    with _shared_lock:
        control = _shared
    if control is None:
        raise NoControl("the LimaCCDs device of this server has no detector control: see its State and Status")
    return control


def watch_cam_state(watcher: Callable[[CamState], None], *, stop: bool = False) -> None:
    """Call `watcher(state)` (from the backend's thread) at each camserver state change; `stop`: no more."""
    with _shared_lock:
        if stop:
            _cam_state_watchers.remove(watcher)
        else:
            _cam_state_watchers.append(watcher)


def cam_state_label(state: CamState) -> str:
    """The plugin's label of a backend state."""
    return state.name if state.name in CAM_STATES else "ANYCMD"


def choose(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """`value` as one of `allowed` (case-insensitive, as Lima's AttrHelper); refused otherwise."""
    label = str(value).strip().upper()
    if label not in allowed:
        raise ControlRefused(f"{name} '{value}' is not one of {', '.join(allowed)}")
    return label


@dataclass(frozen=True)
class CamserverSettings:
    """Camserver settings the simulated backend does not model (they are kept and reported)."""

    fill_mode: bool = False
    trigger_delay: float = 0.0
    nb_exposure_per_frame: int = 1
    energy_ev: float | None = None  # None: never set; read as twice the threshold, camserver's rule


class PilatusCamera:
    """The camera plugin's attributes and commands over the shared detector control."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.settings = CamserverSettings()

    @property
    def control(self) -> AcquisitionControl:
        return shared_control()

    @property
    def connected(self) -> bool:
        """The LimaCCDs device of this process shares its detector control."""
        return _shared is not None

    # -- threshold and energy -----------------------------------------------------------------
    @property
    def threshold(self) -> int:
        """eV"""
        return round(self.control.backend.energy_threshold * 1000)

    @property
    def energy(self) -> float:
        """keV"""
        energy_ev = self.settings.energy_ev
        return (2 * self.threshold if energy_ev is None else energy_ev) / 1000

    @property
    def gain(self) -> str:
        return self.control.backend.threshold_gain.name

    def set_threshold(self, threshold_ev: int, gain: str | None = None) -> None:
        low, high = THRESHOLD_RANGE_EV
        if not low <= threshold_ev <= high:
            raise ControlRefused(f"threshold {threshold_ev} eV is outside {low}..{high} eV")
        label = None if gain is None else choose("threshold_gain", gain, THRESHOLD_GAINS)
        self.control.set_threshold(threshold_ev / 1000, None if label is None else ThresholdGain[label])

    def set_gain(self, gain: str) -> None:
        self.control.set_threshold(gain=ThresholdGain[choose("threshold_gain", gain, THRESHOLD_GAINS)])

    def set_energy(self, energy_kev: float) -> None:
        low, high = (2 * limit / 1000 for limit in THRESHOLD_RANGE_EV)
        if not low <= energy_kev <= high:
            raise ControlRefused(f"energy_threshold {energy_kev} keV is outside {low:g}..{high:g} keV")
        with self._lock:
            self.control.set_threshold(energy_kev / 2)
            self.settings = replace(self.settings, energy_ev=energy_kev * 1000)

    # -- other camserver settings -------------------------------------------------------------
    def set_fill_mode(self, mode: str) -> None:
        self._configure(fill_mode=choose("fill_mode", mode, FILL_MODES) == "ON")

    def set_trigger_delay(self, delay: float) -> None:
        if not delay >= 0:
            raise ControlRefused(f"trigger_delay {delay} s must be 0 or more")
        self._configure(trigger_delay=float(delay))

    def set_nb_exposure_per_frame(self, count: int) -> None:
        if count < 1:
            raise ControlRefused(f"nb_exposure_per_frame {count} must be 1 or more")
        self._configure(nb_exposure_per_frame=int(count))

    def _configure(self, **changes: Any) -> None:
        """Replace the named CamserverSettings fields (refused unless idle when anything changes)."""
        with self._lock:
            updated = replace(self.settings, **changes)
            if updated != self.settings:
                self._refuse_unless_idle("change camserver settings")
            self.settings = updated

    # -- state and sensors --------------------------------------------------------------------
    @property
    def cam_state(self) -> str:
        return cam_state_label(self.control.backend.cam_state)

    def temperature_humidity(self) -> list[float]:
        """temperature, humidity, temperature, humidity ... one pair per sensor channel"""
        return [value for pair in _TEMPERATURE_HUMIDITY for value in pair]

    # -- commands -----------------------------------------------------------------------------
    def send_command(self, command: str) -> None:
        """Run a camserver command line (the ones CAMSERVER_COMMANDS lists)."""
        words = command.split()
        keyword = words[0].lower() if words else ""
        try:
            if keyword == "setthreshold" and len(words) in (2, 3):
                gain = _camserver_gain(words[1]) if len(words) == 3 else None
                self.set_threshold(int(float(words[-1])), gain)
            elif keyword == "setenergy" and len(words) == 2:
                self.set_energy(float(words[1]) / 1000)
            elif keyword == "gapfill" and len(words) == 2 and words[1] in ("-1", "0"):
                self.set_fill_mode("ON" if words[1] == "-1" else "OFF")
            elif keyword == "delay" and len(words) == 2:
                self.set_trigger_delay(float(words[1]))
            elif keyword == "nexpframe" and len(words) == 2:
                self.set_nb_exposure_per_frame(int(words[1]))
            else:
                raise ControlRefused(
                    f"camserver command '{command}' is not simulated: use one of {'; '.join(CAMSERVER_COMMANDS)}"
                )
        except ValueError as exc:
            raise ControlRefused(f"camserver command '{command}': {exc}") from exc

    def reset_high_voltage(self, sleep_time: int) -> None:
        """Power-cycle the modules: their threshold is lost, so it is set again (the slow path)."""
        self._refuse_unless_idle("reset the high voltage")
        self.control.set_threshold()

    def _refuse_unless_idle(self, what: str) -> None:
        control = self.control
        busy = control.acq_status in (AcqStatus.Running, AcqStatus.Configuration)
        if busy or control.backend.cam_state != CamState.STANDBY:
            raise ControlRefused(
                f"cannot {what}: the detector is not idle (cam_state {self.cam_state}, "
                f"acq_status {control.acq_status.name}); retry when cam_state is STANDBY"
            )


def _camserver_gain(word: str) -> str:
    """camserver's gain words (lowG, midG, highG, uhighG, autoG) as threshold_gain labels."""
    gains = {"lowg": "LOW", "midg": "MID", "highg": "HIGH", "uhighg": "ULTRA_HIGH", "autog": "AUTO"}
    if word.lower() not in gains:
        raise ControlRefused(f"camserver gain '{word}' is not one of lowG, midG, highG, uhighG, autoG")
    return gains[word.lower()]
