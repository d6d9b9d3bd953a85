"""Pilatus detector: backend interface, frame simulator, file writers, control layer, Tango devices.

Modules: `backend` (the interface a camserver driver implements, enums and data types), `sim`
(the simulator: sample model and one worker thread), `nexus` (the HDF5 layout: Lima's plus NXmx),
`cbf` (CBF files through fabio), `writer` (SWMR HDF5 writing, bitshuffle-LZ4, the writer thread),
`control` (acquisition life cycle, counters and saving; no Tango), `camserver` (the camera
plugin's settings; no Tango), `device` (the Tango class `LimaCCDs`) and `camera` (the Tango class
`Pilatus`, Lima's camera plugin). See docs/pilatus.md.
"""
