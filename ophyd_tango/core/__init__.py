"""The one Tango layer: what servers, bridges and ophyd_tango share. It imports neither ophyd
nor bluesky (an import-linter contract in pyproject.toml keeps it so).

- `errors`: one-line error text, unreachable and timeout reasons, DevFailed -> TangoDeviceError
- `names`: device keys and Python identifiers
- `lima_video`: Lima's VIDEO_IMAGE codec (the OAV server encodes, the PVA bridge decodes)
- `types`: the Tango type map (AttributeType: dtype, shape, limits, enum labels, conversion)
- `quality`: Tango quality -> EPICS alarm severity
- `subscription`: the subscription engine (events first, polling as fallback, reconnects)
- `discovery`: the database, exported devices and attribute globs
"""
