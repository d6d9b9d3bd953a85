"""Pilatus detector: backend interface, frame simulator, NeXus writer, control layer, Tango device.

Modules: `backend` (the interface a camserver driver implements, enums and data types), `sim`
(the simulator: sample model and one worker thread), `writer` (SWMR HDF5/NeXus files, bitshuffle-
LZ4), `control` (acquisition life cycle, counters and saving; no Tango) and `device` (the Tango
class `Pilatus` with LimaCCDs names). See docs/pilatus.md.
"""
