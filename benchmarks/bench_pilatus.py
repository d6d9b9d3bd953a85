"""Pilatus benchmark: sustained acquire + write rate of full-size (2M) compressed frames.

    python benchmarks/bench_pilatus.py [--frames 300] [--rounds 5] [--directory /tmp]

Measured in the same run, on the same frames (the simulator's sample model, 1475 x 1679 int32):
- baseline: a bare h5py loop writing bitshuffle-LZ4 frames through hdf5plugin's filter, one
  chunk per frame, resize + write + flush per frame (what a straightforward writer does);
- our writer alone, in-process (`NexusFile`: bitshuffle package + write_direct_chunk, SWMR);
- the Pilatus server end to end: startAcq to acq_status Ready (every frame generated, sent
  through the writer thread, flushed and the file closed), as fast as it goes and at the
  Pilatus3 2M's top rate of 250 frames/s (3 ms exposure + 1 ms latency), and with saving off
  (what making frames and pushing the counters' change events costs alone).
Runs are interleaved and repeated; each run is compared with the baseline of its own round
(median of the ratios), and the CPU time per frame (this process for the loops, the server
process for the server) is reported too: shared cores disturb it much less than wall-clock time.
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from tango_servers.pilatus.backend import Frame, Geometry
from tango_servers.pilatus.sim import FramePattern, SampleModel
from tango_servers.pilatus.writer import FileMetadata, NexusFile, SavingFormat
from tango_servers.stack.testing import start_stack
from tango_servers.stack.waiting import wait_until

TARGET_RATE = 250.0


def sample_frames(geometry: Geometry, count: int = 16) -> list[np.ndarray]:
    pattern = FramePattern(geometry, SampleModel())
    return [pattern.frame(x) for x in np.linspace(-2.0, 2.0, count)]


class Measure:
    """Wall-clock rate and CPU milliseconds per frame of one run (CPU of this process or a pid)."""

    def __init__(self, n: int, pid: int | None = None):
        self.n, self.pid = n, pid

    def _cpu(self) -> float:
        if self.pid is None:
            return time.process_time()
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> "Measure":
        self._wall, self._cpu0 = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc) -> None:
        self.rate = self.n / (time.perf_counter() - self._wall)
        self.cpu_ms = (self._cpu() - self._cpu0) / self.n * 1e3


def bare_h5py(path: Path, frames: list[np.ndarray], n: int) -> Measure:
    """The plain h5py + hdf5plugin loop."""
    shape = frames[0].shape
    with Measure(n) as m, h5py.File(path, "w", libver="latest") as f:
        data = f.create_dataset(
            "data", (0, *shape), maxshape=(None, *shape), chunks=(1, *shape), dtype="i4", **hdf5plugin.Bitshuffle()
        )
        for i in range(n):
            data.resize(i + 1, axis=0)
            data[i] = frames[i % len(frames)]
            f.flush()
    return m


def our_writer(path: Path, geometry: Geometry, frames: list[np.ndarray], n: int) -> Measure:
    with Measure(n) as m:
        nexus = NexusFile(path, geometry, SavingFormat.HDF5BS, FileMetadata())
        for i in range(n):
            nexus.write(Frame(i, frames[i % len(frames)], 0.0))
        nexus.close()
    return m


def server_run(pilatus, pid: int, n: int, expo: float, latency: float, saving: str = "AUTO_FRAME") -> Measure:
    """startAcq to acq_status Ready: every frame acquired, written, flushed and the file closed."""
    pilatus.saving_mode = saving
    pilatus.acq_nb_frames = n
    pilatus.acq_expo_time = expo
    pilatus.latency_time = latency
    pilatus.prepareAcq()
    with Measure(n, pid) as m:
        pilatus.startAcq()
        wait_until(lambda: pilatus.acq_status == "Ready", 600, interval=0.005, message="Ready")
    assert pilatus.last_image_acquired == n - 1, pilatus.last_image_acquired
    assert saving == "MANUAL" or pilatus.last_image_saved == n - 1, pilatus.last_image_saved
    for p in Path(pilatus.saving_directory).glob("*.h5"):
        p.unlink()
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--directory", default=None, help="where files go (default: a temp dir)")
    args = parser.parse_args()
    n = args.frames
    work = Path(tempfile.mkdtemp(prefix="bench-pilatus-", dir=args.directory))
    geometry = Geometry()
    results: dict[str, list[Measure]] = {}
    loads = []
    try:
        frames = sample_frames(geometry)
        data_dir = work / "server"
        data_dir.mkdir()
        properties = {
            "sample_axis": [""],
            "trigger_source": [""],
            "data_roots": [str(work)],
            "default_directory": [str(data_dir)],
        }
        config = {"servers": {"Pilatus": {"bench": {"LimaCCDs": {"sim/pilatus/1": {"properties": properties}}}}}}
        stack = start_stack(work / "stack", config=config, redis=False, bridges=False)
        try:
            pilatus = stack.proxy("sim/pilatus/1", timeout=10)
            pid = stack.server_pid("Pilatus/bench")
            pilatus.saving_format = "HDF5BS"
            server_run(pilatus, pid, 20, 1e-6, 0.0)  # warm-up
            runs = {
                "bare h5py loop, hdf5plugin bitshuffle-LZ4 filter (baseline)": lambda: bare_h5py(
                    work / "bare.h5", frames, n
                ),
                "our NexusFile alone, in-process": lambda: our_writer(work / "ours.h5", geometry, frames, n),
                "Pilatus server, exposure 1 us (as fast as it goes)": lambda: server_run(pilatus, pid, n, 1e-6, 0),
                "Pilatus server, asked for 250 frames/s (3 ms + 1 ms)": lambda: server_run(
                    pilatus, pid, n, 0.003, 0.001
                ),
                "Pilatus server, exposure 1 us, saving off (frames and events only)": lambda: server_run(
                    pilatus, pid, n, 1e-6, 0, "MANUAL"
                ),
            }
            for _ in range(args.rounds):
                loads.append(os.getloadavg()[0])
                for what, run in runs.items():
                    results.setdefault(what, []).append(run())
                    for p in work.glob("*.h5"):
                        compressed = p.stat().st_size / n
                        p.unlink()
        finally:
            stack.down()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    baseline = next(iter(results.values()))
    print(f"\nPilatus 2M frames ({geometry.width} x {geometry.height} int32, {geometry.frame_nbytes / 1e6:.1f} MB), ")
    print(f"{n} frames per run, {args.rounds} interleaved rounds, bitshuffle-LZ4 ")
    print(f"{compressed / 1e6:.2f} MB/frame on disk, load average {min(loads):.1f} to {max(loads):.1f}")
    print("| what | frames/s (best) | frames/s (all runs) | vs baseline (median of rounds) | CPU per frame (median) |")
    print("| --- | --- | --- | --- | --- |")
    for what, ms in results.items():
        runs = ", ".join(f"{m.rate:.0f}" for m in ms)
        ratio = statistics.median(m.rate / b.rate for m, b in zip(ms, baseline, strict=True))
        cpu = statistics.median(m.cpu_ms for m in ms)
        print(f"| {what} | {max(m.rate for m in ms):.0f} | {runs} | {ratio:.2f}x | {cpu:.1f} ms |")


if __name__ == "__main__":
    main()
