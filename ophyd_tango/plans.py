"""bluesky plans for Tango hardware that the generic plans cannot express.

from ophyd_tango.plans import fly_scan
RE(fly_scan([pilatus], omega, 0, 10, 1000, 0.005))   # 1000 frames at 200 points/s
"""

from __future__ import annotations

import weakref
from collections.abc import Generator, Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import Msg, short_uid

from ._flyer import DetectorFlyer, FlyPoints, PsoFlyer

__all__ = ["fly_scan", "flyer_for"]

STREAM_PERIOD = 0.2  # seconds between batches of events while the fly runs

_flyers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def flyer_for(device: Any) -> PsoFlyer | DetectorFlyer:
    """The flyer of a TangoDevice (made once per device): an axis gives its PSO flyer, a
    file-writing detector its DetectorFlyer; a flyer is returned as is."""
    if isinstance(device, PsoFlyer | DetectorFlyer):
        return device
    flyer = _flyers.get(device)
    if flyer is None:
        flyer = PsoFlyer(device) if device.roles.movable else DetectorFlyer(device)
        _flyers[device] = flyer
    return flyer


def fly_scan(
    detectors: Sequence[Any],
    axis: Any,
    start: float,
    stop: float,
    num: int,
    exposure: float,
    *,
    md: dict[str, Any] | None = None,
) -> Generator[Msg, Any, Any]:
    """Fly `axis` from `start` to `stop` with the PSO firing `num` pulses, one per `exposure`
    seconds, at start + k * (stop - start) / num (k = 1..num); each pulse triggers one frame of
    every detector (armed for `num` frames in its fly trigger mode).

    Emits one event stream, "primary", with one event per point: the captured position (data
    key: the axis name), the pulse time, each detector's frame index and, through
    StreamResource/StreamDatum, the frame in the detector's HDF5 file. Events stream while the
    axis flies: every STREAM_PERIOD seconds, one for each point whose pulse is captured and whose
    frames are saved. The run fails (naming the
    device) when a pulse or a frame is missing, a device faults or stops answering; an abort or
    stop disarms the PSO, stops the axis and aborts the detectors (files closed).
    """
    pso = flyer_for(axis)
    det_flyers = [flyer_for(det) for det in detectors]
    flyers = [*det_flyers, pso]
    points = FlyPoints(pso, det_flyers)
    axis_name = pso.axis.name
    _md = {
        "plan_name": "fly_scan",
        "plan_args": {
            "detectors": [repr(det) for det in detectors],
            "axis": repr(axis),
            "start": start,
            "stop": stop,
            "num": num,
            "exposure": exposure,
        },
        "detectors": [flyer.detector.name for flyer in det_flyers],
        "motors": [axis_name],
        "num_points": num,
        "num_intervals": num - 1,
        "hints": {"dimensions": [([axis_name], "primary")]},
        "pso_distance": abs(stop - start) / num,
        "pulse_rate": 1.0 / exposure,
    }
    _md.update(md or {})

    @bpp.stage_decorator(flyers)
    @bpp.run_decorator(md=_md)
    def inner() -> Generator[Msg, Any, Any]:
        yield from bps.configure(pso, {"start": start, "stop": stop, "num": num, "exposure": exposure})
        for flyer in det_flyers:
            yield from bps.configure(flyer, {"num": num, "exposure": exposure})
        for flyer in det_flyers:  # armed before the first pulse can come
            yield from bps.kickoff(flyer, wait=True)
        yield from bps.kickoff(pso, wait=True)
        yield from bps.declare_stream(points, name="primary")
        group = short_uid("fly_complete")
        yield from bps.complete_all(*flyers, group=group, wait=False)
        done = False
        while not done:  # events (and StreamDatum) for the points that landed, while the fly goes on
            done = yield from bps.wait(group, timeout=STREAM_PERIOD, error_on_timeout=False)
            yield from bps.trigger(points, wait=True)
            for _ in range(points.get_index(), points.ready()):
                # bare Msgs: a plan stub call formats a stack trace, 1 ms per point
                yield Msg("create", name="primary")
                yield Msg("read", points)
                yield Msg("save")

    return (yield from inner())
