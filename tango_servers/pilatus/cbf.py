"""CBF files, the Pilatus's own format: one frame per file, written with fabio.

As Lima's CBF saving (`control/src/CtSaving_Cbf.cpp`; `CtSaving::Parameters::checkValid` refuses
saving_frame_per_file above 1 for CBF) and as camserver writes them: CBF_BYTE_OFFSET compression and a PILATUS_1.2
mini header (`_array_data.header_convention`, `_array_data.header_contents`), the header DIALS,
XDS and fabio read the geometry from, plus Lima's headers as CIF items. fabio does the encoding
(`fabio.cbfimage.CbfImage`). Under APPEND and MULTISET, CtSaving_Cbf opens an existing file with
"a" and adds a data block per frame after the ones there; so does `CbfFile`.
"""

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import fabio.cbfimage

from .backend import Frame, Geometry
from .nexus import (
    SENSOR_THICKNESS_M,
    FileMetadata,
    OpenMode,
    SavingError,
    file_exists_error,
    now_iso,
    os_reason,
)

HEADER_CONVENTION = "PILATUS_1.2"
DEFAULT_CATEGORY = "Misc"  # CtSaving_Cbf: the category of a header key without one
LIMA_HEADER_KEY_SEPARATOR = "/"  # CtSaving_Cbf: "category/column"
_GAIN_TEXT = {  # camserver's words for the setthreshold gains
    "DEFAULT": "mid gain",
    "LOW": "low gain",
    "MID": "mid gain",
    "HIGH": "high gain",
    "ULTRA_HIGH": "uhigh gain",
    "AUTO": "autog gain",
}


def pilatus_header(geometry: Geometry, md: FileMetadata, frame: Frame, frame_number: int, directory: Path) -> str:
    """The `_array_data.header_contents` camserver writes, one `# key value` line each, for the
    saved frame: Pixel_size, Beam_xy and Count_cutoff follow the image operations."""
    beam_x, beam_y = md.saved_beam_center(geometry)
    pixel_x, pixel_y = md.saved_pixel_size(geometry)
    omega = md.omega(frame.sample_position, frame_number)
    lines = [
        f"Detector: {md.description}",
        now_iso(),
        f"Pixel_size {pixel_x * 1e6:.0f}e-6 m x {pixel_y * 1e6:.0f}e-6 m",
        f"Silicon sensor, thickness {SENSOR_THICKNESS_M:.6f} m",
        f"Exposure_time {md.expo_time:.7f} s",
        f"Exposure_period {md.expo_time + md.latency_time:.7f} s",
        "Tau = 0 s",
        f"Count_cutoff {md.saturation_value(geometry)} counts",
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


def lima_cbf_items(header: Mapping[str, str]) -> dict[str, str]:
    """Lima's header as CIF items, as CtSaving_Cbf fills them: a key `category/column` becomes
    `_category.column`, a key without `/` `_Misc.key`; a value starting with `#` goes on a line of
    its own (MOSFLM's reading)."""
    items = {}
    for key, value in header.items():
        category, _, column = key.rpartition(LIMA_HEADER_KEY_SEPARATOR)
        items[f"_{category or DEFAULT_CATEGORY}.{column}"] = f"\n{value}" if value.startswith("#") else value
    return items


class CbfFile:
    """One CBF file, a data block per frame (`mode` CREATE: the file's one frame; APPEND and NEW_SET:
    added after the data blocks already in the file, as CtSaving_Cbf opens files with "a").

    A new file is created (empty, so an existing file is refused at once) when opened and removed
    if closed without a frame. A block added to an existing file is written with fabio beside it
    first and then appended, so a failed write leaves the file as it was.
    """

    saving_format: int

    def __init__(
        self,
        path: Path,
        geometry: Geometry,
        saving_format: int,
        metadata: FileMetadata,
        *,
        mode: OpenMode = OpenMode.CREATE,
    ):
        self.path = Path(path)
        self.geometry = geometry
        self.saving_format = saving_format
        self.metadata = metadata
        self.frames = 0
        self.data_path = ""  # a CBF has no inner path
        self._created = mode == OpenMode.CREATE or not os.path.lexists(self.path)
        if not self._created:
            return
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError as exc:
            raise file_exists_error(self.path) from exc
        except OSError as exc:
            raise SavingError(f"cannot create {self.path}: {os_reason(exc)}") from exc

    def write(self, frame: Frame, chunk: object = None, header: Mapping[str, str] | None = None) -> None:
        """Add the frame as a data block `image_<frame>` (`chunk` is ignored: fabio compresses).

        The block's items: camserver's PILATUS_1.2 header, then Lima's common header and the
        frame's own header (`header`) as CIF items, which override it."""
        if frame.data.shape != self.geometry.shape:
            raise SavingError(f"frame {frame.index} is {frame.data.shape}, the file expects {self.geometry.shape}")
        contents = pilatus_header(self.geometry, self.metadata, frame, frame.index, self.path.parent)
        items = {"_array_data.header_convention": HEADER_CONVENTION, "_array_data.header_contents": contents}
        items.update(lima_cbf_items({**dict(self.metadata.header), **(header or {})}))
        try:
            if self._created and self.frames == 0:  # the file's first block: fabio writes it in place
                fabio.cbfimage.CbfImage(data=frame.data, header=items).write(str(self.path))
            else:
                _append(self.path, _data_block(self.path.parent, f"image_{frame.index}", frame, items))
        except OSError as exc:
            raise SavingError(f"cannot write frame {frame.index} to {self.path}: {os_reason(exc)}") from exc
        self.frames += 1

    def close(self) -> None:
        if self.frames == 0 and self._created:
            with contextlib.suppress(OSError):
                self.path.unlink()


def _data_block(directory: Path, name: str, frame: Frame, items: Mapping[str, str]) -> bytes:
    """One CBF data block `data_<name>` of `frame`, as fabio writes it (in a hidden folder beside the file)."""
    scratch = tempfile.mkdtemp(dir=directory, prefix=".cbf-")
    try:
        path = os.path.join(scratch, f"{name}.cbf")
        fabio.cbfimage.CbfImage(data=frame.data, header=dict(items)).write(path)
        with open(path, "rb") as block:
            return block.read()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _append(path: Path, block: bytes) -> None:
    """Append `block` to `path` (never through a symbolic link); on failure the file is cut back."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


BLOCK_END = b"--CIF-BINARY-FORMAT-SECTION----\r\n;"


def read_data_blocks(path: Path) -> list[fabio.cbfimage.CbfImage]:
    """Every data block of a CBF file (APPEND and MULTISET add one per frame) read by fabio, which
    reads only the first block of a file by itself."""
    parts = Path(path).read_bytes().split(BLOCK_END)[:-1]
    return [fabio.cbfimage.CbfImage().read(io.BytesIO(part.lstrip(b"\r\n") + BLOCK_END)) for part in parts]
