"""Sardana on our devices: Pool controllers, the sardana-config YAML, and a Door client.

- `controllers/`: our part of the Pool's PoolPath: Automation1 motors, the Automation1 PSO as a
  trigger/gate (hardware-triggered `ascanct`), an ROI-sum pseudo counter on the Pilatus image,
  and the OAV camera. The Pilatus itself is sardana-limaccd's `LimaCCDTwoDController`, unchanged.
- `tango_suite.yaml`: the Pool, MacroServer, Door, controllers, elements and measurement groups
  that `tango-suite up --sardana` loads (see `tango_servers.stack.sardana`).
- `door.py`: run macros through a Door's Tango interface and collect their output.
"""
