"""The string value sets of the LimaCCDs settings, and how a written string is checked. No Tango here.

LimaCCDs (Lima-tango-python `lima/server/LimaCCDs.py`) types every setting as a DevString, takes
writes in any case (`data.upper()`) and answers `getAttrStringValueList(name)` with the value set.
`LIMA_VALUES` holds Lima's sets; `SUPPORTED` the members this server honours (a member Lima has
but this detector cannot do is refused with the reason, not silently ignored).
"""

from collections.abc import Iterable

from .accumulation import ACC_TIME_MODES, ACQ_MODES
from .backend import SUPPORTED_TRIGGER_MODES, TriggerMode
from .image import BIN_MODES, ROTATIONS

LIMA_VALUES: dict[str, tuple[str, ...]] = {
    # The camera's own list, as LimaCCDs answers for acq_trigger_mode (getTriggerModeList).
    "acq_trigger_mode": tuple(m.name for m in TriggerMode if m in SUPPORTED_TRIGGER_MODES),
    "acq_mode": ACQ_MODES,
    "acc_time_mode": ACC_TIME_MODES,
    "saving_mode": ("MANUAL", "AUTO_FRAME", "AUTO_HEADER"),
    "saving_overwrite_policy": ("ABORT", "OVERWRITE", "APPEND", "MULTISET"),
    "saving_managed_mode": ("SOFTWARE", "HARDWARE"),
    "image_rotation": ROTATIONS,
    "image_bin_mode": BIN_MODES,
    "video_mode": ("Y32",),  # the Pilatus's Bpp32S frames as a 32-bit grey video image
}

UNSUPPORTED_WHY: dict[tuple[str, str], str] = {
    # CtBuffer: concatenation packs concat_nb_frames hardware frames into one buffer, for cameras
    # whose hardware delivers blocks of frames; the Pilatus delivers its frames one at a time.
    (
        "acq_mode",
        "CONCATENATION",
    ): "the Pilatus delivers frames one at a time, it has no blocks of frames to concatenate",
    ("saving_managed_mode", "HARDWARE"): "the Pilatus saves nothing itself: this server writes the files",
}


class BadValue(ValueError):
    """A written string outside the value set, or one this server cannot honour."""


def choose(name: str, value: str, allowed: Iterable[str]) -> str:
    """`value` spelled as in `allowed` (case-insensitive match), or BadValue listing `allowed`."""
    allowed = tuple(allowed)
    for member in allowed:
        if member.upper() == str(value).strip().upper():
            return member
    raise BadValue(f"{name} {value!r} is not one of {', '.join(allowed)}")


def lima_choice(name: str, value: str) -> str:
    """A LimaCCDs setting's value in Lima's spelling; refused when outside the set or not honoured."""
    member = choose(name, value, LIMA_VALUES[name])
    why = UNSUPPORTED_WHY.get((name, member))
    if why:
        usable = [m for m in LIMA_VALUES[name] if (name, m) not in UNSUPPORTED_WHY]
        raise BadValue(f"{name} {member} is not available: {why}; use {', '.join(usable)}")
    return member
