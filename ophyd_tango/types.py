"""Tango type mapping (public face of `ophyd_tango._types`): the one place that knows Tango types.

    from ophyd_tango.types import attribute_type

    info = proxy.get_attribute_config_ex(["position"])[0]
    t = attribute_type(info)
    t.kind, t.numpy_dtype, t.shape, t.bluesky_dtype, t.dtype_numpy, t.choices, t.limits()
    t.data_key("tango://host:port/sim/aerotech/x/position", value)   # event-model DataKey
    t.from_tango(v), t.to_bluesky(v), t.to_tango(v)

Importing this module does not import ophyd.
"""

from ._types import (
    NOT_SPECIFIED,
    STATE_LABELS,
    STRING_DTYPE_NUMPY,
    AttributeType,
    attribute_type,
    bluesky_dtype,
    dtype_numpy,
    numpy_dtype,
    shape,
)

__all__ = [
    "NOT_SPECIFIED",
    "STATE_LABELS",
    "STRING_DTYPE_NUMPY",
    "AttributeType",
    "attribute_type",
    "bluesky_dtype",
    "dtype_numpy",
    "numpy_dtype",
    "shape",
]
