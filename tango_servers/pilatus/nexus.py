"""The layout of a Pilatus HDF5 file: Lima's (CtSaving_Hdf5.cpp) with the NXmx geometry added.

Lima writes (Lima core `control/src/CtSaving_Hdf5.cpp`; `instrument` and the detector group name
are Lima's defaults, HwDetInfoCtrlObj's instrument name and the detector type `Pilatus`)::

    /                                NXroot  (default=entry_0000, creator, file_name, file_time)
    /entry_0000                      NXentry (default=instrument/Pilatus/plot): title, start_time, end_time
      /instrument                    NXinstrument (default=Pilatus/plot)
        /Pilatus                     NXdetector (default=plot)
          data                       (frames, rows, columns), interpretation=image
          time_of_frame              (frames,) s since start_time
          /plot                      NXdata (signal=data): data -> ../data (soft link)
          /header                    NXcollection: key = value, the first frame's header (common + frame's)
          /detector_information      NXcollection: name, type, model, pixel_size, max_image_size, image_lima_type
          /acquisition               NXcollection: mode, exposure_time, latency_time, nb_frames, trigger_mode
            /accumulation            NXcollection (ACCUMULATION): time_mode, max_exposure_time, exposure_time,
                                     live_time, dead_time
          /image_operation           NXcollection: dimension, binning, region_of_interest, flipping, rotation
      /measurement                   NXcollection: data -> the detector data (soft link)

NXmx (https://manual.nexusformat.org/classes/applications/NXmx.html) adds, so that MX
processing (DIALS/dxtbx through the `nxmx` reader, XDS through its HDF5 plugin) finds the
geometry: `definition` = NXmx; NXdetector fields (count_time, frame_time, x/y_pixel_size,
beam_center_x/y, distance, sensor, threshold_energy, saturation_value, pixel_mask, depends_on)
with a `transformations` group and one `module` (NXdetector_module); `beam` (NXbeam,
incident_wavelength); `sample` (NXsample) whose `depends_on` is the omega rotation, one value
per frame; and `/entry_0000/data` (NXdata) linking the frames. Axes follow NeXus's McStas
convention: z along the beam, y up; omega turns about -x; the detector's rows run along -x and
its columns along -y. The geometry is the saved frames' (`pixel_map.py`): after image_bin,
image_flip, image_rotation and image_roi the pixel size is the detector's times the bin, the
fast and slow directions turn and flip with the frame, and the beam centre is counted in the
saved frame's pixels, so the beam hits the pixel at (beam_center_x, beam_center_y) whatever
the image operations.
"""

import datetime
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .accumulation import AccumulationSplit
from .backend import Geometry, TriggerMode
from .image import INT32_MAX, ImageOps
from .pixel_map import saved_axes, saved_point

ENTRY_FORMAT = "entry_{:04d}"  # CtSaving_Hdf5.cpp: "/entry_%04d", the next free one in APPEND
ENTRY = ENTRY_FORMAT.format(0)
INSTRUMENT = "instrument"
DETECTOR = "Pilatus"


@dataclass(frozen=True)
class EntryPaths:
    """The paths inside one entry of a file."""

    entry: str = ENTRY

    @property
    def detector(self) -> str:
        return f"/{self.entry}/{INSTRUMENT}/{DETECTOR}"

    @property
    def data(self) -> str:
        """Where clients find the frames (a soft link to `frames`)."""
        return f"/{self.entry}/measurement/data"

    @property
    def frames(self) -> str:
        return f"{self.detector}/data"

    @property
    def omega(self) -> str:
        return f"/{self.entry}/sample/transformations/omega"


DATA_PATH = EntryPaths().data
"""Where the frames are, for clients (file_event's hinted_location, ophyd_tango's dataset)."""
FRAMES_PATH = EntryPaths().frames
"""The frames dataset itself (DATA_PATH is a soft link to it)."""
DETECTOR_PATH = EntryPaths().detector

PIXEL_SIZE_M = 172e-6
SENSOR_THICKNESS_M = 450e-6
SATURATION_VALUE = 1048575  # 20-bit counters
BIT_DEPTH_READOUT = 20
HC_KEV_ANGSTROM = 12.398419843320026  # photon energy (keV) x wavelength (Angstrom)
CREATOR = "LIMA-1.11.0 (layout of; written by tango-bluesky-suite)"  # fabio recognises Lima files by "LIMA"
_GAP_BIT = 1  # NXdetector pixel_mask bit 0: gap (no sensor)
# Lima's names in the acquisition and image_operation collections (common/src/Constants.cpp and
# CtAcquisition.h convert_2_string) for the LimaCCDs values.
LIMA_ACQ_MODE = {"SINGLE": "Single", "ACCUMULATION": "Accumulation", "CONCATENATION": "Concatenation"}
LIMA_TRIGGER_MODE = {
    TriggerMode.INTERNAL_TRIGGER.name: "IntTrig",
    TriggerMode.INTERNAL_TRIGGER_MULTI.name: "IntTrigMult",
    TriggerMode.EXTERNAL_TRIGGER.name: "ExtTrigSingle",
    TriggerMode.EXTERNAL_TRIGGER_MULTI.name: "ExtTrigMult",
    TriggerMode.EXTERNAL_GATE.name: "ExtGate",
    TriggerMode.EXTERNAL_START_STOP.name: "ExtStartStop",
}
LIMA_ACC_TIME_MODE = {"LIVE": "Live", "REAL": "Real"}
LIMA_ROTATION = {"NONE": "Rotation_0", "90": "Rotation_90", "180": "Rotation_180", "270": "Rotation_270"}
LIMA_BIN_MODE = {"SUM": "Bin_Sum", "MEAN": "Bin_Mean"}
_ACQUISITION_MODE = {  # NXdetector acquisition_mode for the Lima trigger mode
    "EXTERNAL_GATE": "gated",
    "EXTERNAL_TRIGGER": "triggered",
    "EXTERNAL_TRIGGER_MULTI": "triggered",
}


class OpenMode(enum.Enum):
    """How a file is opened for an acquisition, from `saving_overwrite_policy` (CtSaving's open flags).

    APPEND and NEW_SET open an existing file (a missing one is created as under CREATE).
    """

    CREATE = "create"  # ABORT, and OVERWRITE once the old file is unlinked: a new file
    APPEND = "append"  # APPEND: the frames go after those of the file's last entry
    NEW_SET = "new_set"  # MULTISET: the acquisition is the file's next entry_NNNN

    @classmethod
    def for_policy(cls, policy: str) -> "OpenMode":
        """How a LimaCCDs saving_overwrite_policy opens a file (CtSaving: APPEND and MULTISET with ios::app)."""
        return {"APPEND": cls.APPEND, "MULTISET": cls.NEW_SET}.get(policy, cls.CREATE)


class SavingError(OSError):
    """A file could not be created or written; the message names the file and the cause."""


def file_exists_error(path: Path) -> SavingError:
    return SavingError(
        f"{path} already exists and saving_overwrite_policy is ABORT: "
        "change saving_next_number or saving_prefix, or set the policy to OVERWRITE"
    )


def os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


@dataclass(frozen=True)
class FileMetadata:
    """What a file records about the acquisition, written once at open.

    `energy_threshold` is the counting threshold and `photon_energy` the X-ray energy (keV);
    `beam_center` (x, y) is in the detector's pixels (None: the middle of the detector); files
    give it in the saved frame's pixels (`saved_beam_center`). `image` is Lima's image
    operations (None: none); `acq_mode` and the `acc_*` fields Lima's acquisition mode and,
    under ACCUMULATION, its split of each frame (`accumulation`). `omega_start` and
    `omega_increment` (deg) give the rotation of frames that carry no sample position; `header`
    is Lima's `saving_common_header` (key, value pairs; a frame's own header adds to it).
    """

    expo_time: float = 1.0
    latency_time: float = 0.0
    trigger_mode: str = "INTERNAL_TRIGGER"
    trigger_source: str = ""
    frames_requested: int = 0
    energy_threshold: float = 8.0
    threshold_gain: str = "DEFAULT"
    description: str = "Pilatus (simulated)"
    photon_energy: float = 12.4
    detector_distance: float = 0.2
    beam_center: tuple[float, float] | None = None
    omega_start: float = 0.0
    omega_increment: float = 0.0
    header: tuple[tuple[str, str], ...] = field(default=())
    image: ImageOps | None = None
    acq_mode: str = "SINGLE"
    acc_time_mode: str = "LIVE"
    acc_max_expo_time: float = 1.0
    accumulation: AccumulationSplit | None = None

    @property
    def wavelength(self) -> float:
        """Angstrom"""
        return HC_KEV_ANGSTROM / self.photon_energy

    def image_ops(self, geometry: Geometry) -> ImageOps:
        """The image operations that made frames of `geometry` (none: the detector's own frames)."""
        return self.image or ImageOps((geometry.width, geometry.height))

    def saved_beam_center(self, geometry: Geometry) -> tuple[float, float]:
        """Where the beam meets the saved frames of `geometry`, in their pixels."""
        return saved_point(self.image_ops(geometry), self.detector_beam_center(geometry))

    def detector_beam_center(self, geometry: Geometry) -> tuple[float, float]:
        """Where the beam meets the detector, in its own pixels (default: its middle)."""
        ops = self.image_ops(geometry)
        return self.beam_center or (ops.detector[0] / 2, ops.detector[1] / 2)

    def saved_pixel_size(self, geometry: Geometry) -> tuple[float, float]:
        """A saved pixel's width and height (m): the detector's pixel times the image_bin factors."""
        bx, by = self.image_ops(geometry).bin
        return (PIXEL_SIZE_M * bx, PIXEL_SIZE_M * by)

    def count_time(self) -> float:
        """Exposure (s) summed into a frame: acc_live_time under ACCUMULATION, else acq_expo_time."""
        return self.accumulation.live_time if self.accumulation else self.expo_time

    def saturation_value(self, geometry: Geometry) -> int:
        """The counts above which a saved pixel cannot be trusted: the counters' limit times the
        detector pixels a SUM bin adds and the sub-frames ACCUMULATION adds (at most int32's)."""
        ops = self.image_ops(geometry)
        pixels = ops.bin[0] * ops.bin[1] if ops.bin_mode == "SUM" else 1
        frames = self.accumulation.nb_frames if self.accumulation else 1
        return min(INT32_MAX, SATURATION_VALUE * pixels * frames)

    def omega(self, sample_position: float | None, number: int) -> float:
        """Rotation (deg) of the `number`th frame: its sample position when it carries one."""
        if sample_position is not None:
            return sample_position
        return self.omega_start + number * self.omega_increment


@dataclass(frozen=True)
class Layout:
    """The growing datasets of an entry (None: absent from an entry written elsewhere), and the
    header group Lima fills with the first frame's header."""

    frames: h5py.Dataset
    time_of_frame: h5py.Dataset | None
    omega: h5py.Dataset | None
    end_time: h5py.Dataset | None
    header: h5py.Group | None


def next_entry(f: h5py.File) -> EntryPaths:
    """The entry after the last one in `f` (MULTISET adds one entry per acquisition)."""
    last = last_entry(f)
    return EntryPaths(ENTRY_FORMAT.format(0 if last is None else int(last.entry.split("_")[1]) + 1))


def last_entry(f: h5py.File) -> EntryPaths | None:
    """The last of entry_0000, entry_0001 ... in `f` (None: no entry_0000), as CtSaving_Hdf5's findLastEntry."""
    number = 0
    while ENTRY_FORMAT.format(number) in f:
        number += 1
    return EntryPaths(ENTRY_FORMAT.format(number - 1)) if number else None


def open_layout(f: h5py.File, paths: EntryPaths, geometry: Geometry) -> Layout:
    """The datasets of an existing entry, to append frames of `geometry` to (APPEND)."""
    frames = f.get(paths.frames)
    if not isinstance(frames, h5py.Dataset) or frames.ndim != 3:
        raise SavingError(f"{f.filename}: {paths.frames} is not a frames dataset to append to")
    if frames.shape[1:] != geometry.shape or frames.dtype != np.dtype(geometry.dtype):
        raise SavingError(
            f"{f.filename}: You are trying to extend the dataset with mismatching image dimensions "
            f"({frames.dtype} {frames.shape[1:]} in the file, {np.dtype(geometry.dtype)} {geometry.shape} "
            "from the detector): change saving_prefix or saving_next_number"
        )
    if frames.maxshape[0] is not None:
        raise SavingError(f"{f.filename}: {paths.frames} has a fixed size and cannot be extended")

    def growing(path: str) -> h5py.Dataset | None:
        dataset = f.get(path)
        return dataset if isinstance(dataset, h5py.Dataset) and dataset.maxshape == (None,) else None

    return Layout(frames, growing(f"{paths.detector}/time_of_frame"), growing(paths.omega), None, None)


def write_header(group: h5py.Group, header: Mapping[str, str]) -> None:
    """Lima's header (common header and the frame's header) as string datasets `key` = value."""
    for key, value in header.items():
        try:
            group[key] = value
        except (ValueError, TypeError, OSError) as exc:
            raise SavingError(f"header entry {key!r} cannot be written into {group.name}: {exc}") from exc


def write_layout(
    f: h5py.File, geometry: Geometry, md: FileMetadata, paths: EntryPaths = EntryPaths(), **data_filters
) -> Layout:
    """Create every group of the entry `paths` names and its (empty, growing) frame datasets in `f`;
    `data_filters` go to the frames' create_dataset (e.g. hdf5plugin.Bitshuffle())."""
    start = now_iso()
    root = {"NX_class": "NXroot", "default": paths.entry, "creator": CREATOR, "file_name": str(Path(f.filename))}
    _attrs(f, **root, file_time=start)
    entry = _group(f, paths.entry, "NXentry", default=f"{INSTRUMENT}/{DETECTOR}/plot")
    entry["title"] = "Lima 2D detector acquisition"
    entry["definition"] = "NXmx"
    entry["start_time"] = start
    end_time = entry.create_dataset("end_time", data=np.bytes_(" " * 32), dtype="S32")
    instrument = _group(entry, INSTRUMENT, "NXinstrument", default=f"{DETECTOR}/plot")
    instrument["name"] = "simulated beamline"
    det = _group(instrument, DETECTOR, "NXdetector", default="plot")
    frames = det.create_dataset(
        "data",
        shape=(0, *geometry.shape),
        maxshape=(None, *geometry.shape),
        chunks=(1, *geometry.shape),
        dtype=np.dtype(geometry.dtype),
        **data_filters,
    )
    _attrs(frames, interpretation="image", units="counts")
    time_of_frame = _growing(det, "time_of_frame", "s", start=start)
    _group(det, "plot", "NXdata", signal="data")["data"] = h5py.SoftLink(paths.frames)
    header = _group(det, "header", "NXcollection")  # filled with the first frame (write_header)
    _lima_parameters(det, geometry, md)
    _nxmx_detector(det, geometry, md, paths.detector)
    _group(entry, "measurement", "NXcollection")["data"] = h5py.SoftLink(paths.frames)
    _group(entry, "data", "NXdata", signal="data")["data"] = h5py.SoftLink(paths.frames)
    beam = _group(instrument, "beam", "NXbeam")
    _field(beam, "incident_wavelength", md.wavelength, "angstrom")
    sample = _group(entry, "sample", "NXsample")
    sample["name"] = "simulated sample"
    sample["depends_on"] = paths.omega
    omega = _growing(_group(sample, "transformations", "NXtransformations"), "omega", "deg")
    _attrs(omega, transformation_type="rotation", vector=np.array([-1.0, 0.0, 0.0]), depends_on=".")
    return Layout(frames, time_of_frame, omega, end_time, header)


def _lima_parameters(det: h5py.Group, g: Geometry, md: FileMetadata) -> None:
    """Lima's detector_information, acquisition and image_operation collections, with Lima's
    names and types (CtSaving_Hdf5.cpp `_prepare` and `_open`)."""
    ops = md.image_ops(g)
    info = _group(det, "detector_information", "NXcollection")
    info["name"], info["type"], info["model"] = DETECTOR, DETECTOR, md.description
    _xy(_group(info, "pixel_size", "NXcollection"), PIXEL_SIZE_M, PIXEL_SIZE_M)
    _xy(_group(info, "max_image_size", "NXcollection"), np.int32(ops.detector[0]), np.int32(ops.detector[1]))
    info["image_lima_type"] = "Bpp32S"
    acq = _group(det, "acquisition", "NXcollection")
    acq["mode"] = LIMA_ACQ_MODE[md.acq_mode]
    acq["exposure_time"] = np.float64(md.expo_time)
    acq["latency_time"] = np.float64(md.latency_time)
    acq["nb_frames"] = np.int32(md.frames_requested)
    acq["trigger_mode"] = LIMA_TRIGGER_MODE[md.trigger_mode]
    if md.acq_mode == "ACCUMULATION" and md.accumulation is not None:
        acc = _group(acq, "accumulation", "NXcollection")
        acc["time_mode"] = LIMA_ACC_TIME_MODE[md.acc_time_mode]
        acc["max_exposure_time"] = np.float64(md.acc_max_expo_time)
        acc["exposure_time"] = np.float64(md.accumulation.expo_time)
        acc["live_time"] = np.float64(md.accumulation.live_time)
        acc["dead_time"] = np.float64(md.accumulation.dead_time)
    image = _group(det, "image_operation", "NXcollection")
    _xy(_group(image, "dimension", "NXcollection"), *(np.int32(v) for v in ops.size))
    binning = _group(image, "binning", "NXcollection")
    binning["x"], binning["y"] = np.int32(ops.bin[0]), np.int32(ops.bin[1])
    roi = _group(image, "region_of_interest", "NXcollection")
    x, y, width, height = ops.shown_roi  # CtImage::getRoi: the whole frame when no roi is set
    roi["xstart"], roi["ystart"] = np.int32(x), np.int32(y)
    _xy(roi, np.int32(width), np.int32(height))
    flipping = _group(image, "flipping", "NXcollection")
    flipping["x"], flipping["y"] = np.uint8(ops.flip[0]), np.uint8(ops.flip[1])  # a bool: NATIVE_UINT8
    image["rotation"] = LIMA_ROTATION[ops.rotation]
    image["bin_mode"] = LIMA_BIN_MODE[ops.bin_mode]


def _nxmx_detector(det: h5py.Group, g: Geometry, md: FileMetadata, path: str) -> None:
    """The NXdetector fields and the depends_on chain NXmx readers need, for the saved frames:
    pixel size, beam centre and pixel directions follow the image operations (`pixel_map.py`)."""
    det["description"] = md.description
    det["type"] = "Pixel"
    _field(det, "count_time", md.count_time(), "s")
    _field(det, "frame_time", md.expo_time + md.latency_time, "s")
    _field(det, "dead_time", md.latency_time, "s")
    _field(det, "threshold_energy", md.energy_threshold * 1000.0, "eV")
    det["gain_setting"] = md.threshold_gain
    det["trigger_mode"] = md.trigger_mode
    det["trigger_source"] = md.trigger_source
    if md.trigger_mode in _ACQUISITION_MODE:
        det["acquisition_mode"] = _ACQUISITION_MODE[md.trigger_mode]
    det["frames_requested"] = np.int64(md.frames_requested)
    pixel_x, pixel_y = md.saved_pixel_size(g)
    _field(det, "x_pixel_size", pixel_x, "m")
    _field(det, "y_pixel_size", pixel_y, "m")
    beam_x, beam_y = md.saved_beam_center(g)
    _field(det, "beam_center_x", beam_x, "pixel")
    _field(det, "beam_center_y", beam_y, "pixel")
    _field(det, "distance", md.detector_distance, "m")
    det["sensor_material"] = "Si"
    _field(det, "sensor_thickness", SENSOR_THICKNESS_M, "m")
    det["saturation_value"] = np.int64(md.saturation_value(g))
    det["underload_value"] = np.int64(-1)  # module gaps
    det["bit_depth_readout"] = np.int32(BIT_DEPTH_READOUT)
    mask = g.gap_mask().astype(np.uint32) * _GAP_BIT
    det.create_dataset("pixel_mask", data=mask, chunks=g.shape, compression="gzip", compression_opts=1)
    det["pixel_mask_applied"] = False
    transformations = _group(det, "transformations", "NXtransformations")
    translation = f"{path}/transformations/translation"
    transformations["translation"] = np.float64(md.detector_distance)
    _attrs(
        transformations["translation"],
        units="m",
        transformation_type="translation",
        vector=np.array([0.0, 0.0, 1.0]),
        depends_on=".",
    )
    det["depends_on"] = translation
    module = _group(det, "module", "NXdetector_module")
    module["data_origin"] = np.array([0, 0], dtype=np.int32)
    module["data_size"] = np.array(g.shape, dtype=np.int32)
    # On the detector, pixel (0, 0) sits at +x, +y of the beam, its rows along -x and its columns
    # along -y; the saved frame's corner and directions are the detector's, moved by the image
    # operations.
    axes = saved_axes(md.image_ops(g))
    detector_beam = md.detector_beam_center(g)

    def lab(step: tuple[float, float]) -> np.ndarray:
        """A displacement of `step` detector pixels, in m in the laboratory frame."""
        return np.array([-step[0] * PIXEL_SIZE_M, -step[1] * PIXEL_SIZE_M, 0.0])

    corner = lab((axes.origin[0] - detector_beam[0], axes.origin[1] - detector_beam[1]))
    length = float(np.linalg.norm(corner))
    module["module_offset"] = np.float64(length)
    _attrs(
        module["module_offset"],
        units="m",
        transformation_type="translation",
        vector=corner / length if length else np.array([1.0, 0.0, 0.0]),
        offset=np.zeros(3),
        depends_on=translation,
    )
    module_offset = f"{path}/module/module_offset"
    for name, step in (("fast_pixel_direction", axes.fast), ("slow_pixel_direction", axes.slow)):
        direction = lab(step)
        size = float(np.linalg.norm(direction))
        module[name] = np.float64(size)
        _attrs(
            module[name],
            units="m",
            transformation_type="translation",
            vector=direction / size,
            offset=np.zeros(3),
            depends_on=module_offset,
        )


def _growing(group: h5py.Group, name: str, units: str, **attrs: str) -> h5py.Dataset:
    dataset = group.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(1024,), dtype=np.float64)
    _attrs(dataset, units=units, **attrs)
    return dataset


def _group(parent: h5py.Group, name: str, nx_class: str, **attrs: str) -> h5py.Group:
    group = parent.create_group(name)
    _attrs(group, NX_class=nx_class, **attrs)
    return group


def _attrs(node: h5py.HLObject, **attrs) -> None:
    for key, value in attrs.items():
        node.attrs[key] = value


def _field(group: h5py.Group, name: str, value: float, units: str) -> None:
    group[name] = np.float64(value)
    group[name].attrs["units"] = units


def _xy(group: h5py.Group, x: float | np.number[Any], y: float | np.number[Any]) -> None:
    """xsize and ysize, each stored with its own type (a float64 size in metres, an int32 size in pixels)."""
    group["xsize"], group["ysize"] = x, y


def now_iso() -> str:
    """Now in ISO 8601 with the local UTC offset (Lima writes UTC, `%FT%TZ`)."""
    return datetime.datetime.now(datetime.UTC).astimezone().isoformat()
