"""Sardana on our devices: Pool controllers, the sardana-config YAML, and a Door client.

- `controllers/`: the Pool's plugin directory (its PoolPath): Automation1 motors, the Pilatus
  (Lima-compatible acquisition, frames referenced in the scan file), an ROI-sum pseudo counter
  on the Pilatus image, and the OAV camera.
- `tango_suite.yaml`: the Pool, MacroServer, Door, controllers, elements and measurement groups
  that `tango-suite up --sardana` loads (see `tango_servers.stack.sardana`).
- `door.py`: run macros through a Door's Tango interface and collect their output.
"""
