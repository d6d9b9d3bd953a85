"""CBF files, the Pilatus's own format: one frame per file, written with fabio.

As Lima's CBF saving (`control/src/CtSaving_Cbf.cpp`, which forces one frame per file) and as
camserver writes them: CBF_BYTE_OFFSET compression and a PILATUS_1.2 mini header
(`_array_data.header_convention`, `_array_data.header_contents`), the header DIALS, XDS and
fabio read the geometry from. fabio does the encoding (`fabio.cbfimage.CbfImage`).
"""

import contextlib
import os
from pathlib import Path

import fabio.cbfimage

from .backend import Frame, Geometry
from .nexus import (
    PIXEL_SIZE_M,
    SATURATION_VALUE,
    SENSOR_THICKNESS_M,
    FileMetadata,
    SavingError,
    file_exists_error,
    now_iso,
    os_reason,
)

HEADER_CONVENTION = "PILATUS_1.2"
_GAIN_TEXT = {  # camserver's words for the setthreshold gains
    "DEFAULT": "mid gain",
    "LOW": "low gain",
    "MID": "mid gain",
    "HIGH": "high gain",
    "ULTRA_HIGH": "uhigh gain",
    "AUTO": "autog gain",
}


def pilatus_header(geometry: Geometry, md: FileMetadata, frame: Frame, frame_number: int, directory: Path) -> str:
    """The `_array_data.header_contents` camserver writes, one `# key value` line each."""
    beam_x, beam_y = md.beam_center_px(geometry)
    omega = md.omega(frame.sample_position, frame_number)
    lines = [
        f"Detector: {md.description}",
        now_iso(),
        f"Pixel_size {PIXEL_SIZE_M * 1e6:.0f}e-6 m x {PIXEL_SIZE_M * 1e6:.0f}e-6 m",
        f"Silicon sensor, thickness {SENSOR_THICKNESS_M:.6f} m",
        f"Exposure_time {md.expo_time:.7f} s",
        f"Exposure_period {md.expo_time + md.latency_time:.7f} s",
        "Tau = 0 s",
        f"Count_cutoff {SATURATION_VALUE} counts",
        f"Threshold_setting: {md.energy_threshold * 1000:.0f} eV",
        f"Gain_setting: {_GAIN_TEXT.get(md.threshold_gain, md.threshold_gain.lower())} (vrf = -0.200)",
        "N_excluded_pixels = 0",
        "Excluded_pixels: (nil)",
        "Flat_field: (nil)",
        "Trim_file: (nil)",
        f"Image_path: {directory}/",
        f"Wavelength {md.wavelength:.5f} A",
        f"Detector_distance {md.detector_distance:.5f} m",
        f"Beam_xy ({beam_x:.2f}, {beam_y:.2f}) pixels",
        f"Start_angle {omega:.4f} deg.",
        f"Angle_increment {md.omega_increment:.4f} deg.",
        "Oscillation_axis OMEGA",
    ]
    return "\r\n".join(f"# {line}" for line in lines)


class CbfFile:
    """One CBF file: created (empty, so an existing file is refused at once) when opened, written
    when its one frame arrives. A file closed without a frame is removed."""

    saving_format: int

    def __init__(self, path: Path, geometry: Geometry, saving_format: int, metadata: FileMetadata, *, overwrite=False):
        self.path = Path(path)
        self.geometry = geometry
        self.saving_format = saving_format
        self.metadata = metadata
        self.frames = 0
        self.data_path = ""  # a CBF has no inner path
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            os.close(os.open(self.path, flags, 0o644))
        except FileExistsError as exc:
            raise file_exists_error(self.path) from exc
        except OSError as exc:
            raise SavingError(f"cannot create {self.path}: {os_reason(exc)}") from exc

    def write(self, frame: Frame, chunk: object = None) -> None:
        """Write the file's one frame (`chunk` is ignored: fabio compresses)."""
        if self.frames:
            raise SavingError(
                f"{self.path} already holds frame {frame.index - 1}: a CBF file holds one frame "
                "(set saving_frame_per_file to 1)"
            )
        header = pilatus_header(self.geometry, self.metadata, frame, frame.index, self.path.parent)
        image = fabio.cbfimage.CbfImage(
            data=frame.data,
            header={"_array_data.header_convention": HEADER_CONVENTION, "_array_data.header_contents": header},
        )
        try:
            image.write(str(self.path))
        except OSError as exc:
            raise SavingError(f"cannot write frame {frame.index} to {self.path}: {os_reason(exc)}") from exc
        self.frames = 1

    def close(self) -> None:
        if self.frames == 0:
            with contextlib.suppress(OSError):
                self.path.unlink()
