"""ophyd_tango: Tango devices for ophyd and bluesky, built from what the server declares.

The subscription engine and the type mapping are importable without ophyd:

    from ophyd_tango.subscription import TangoSubscriber, AttributeUpdate
    from ophyd_tango.types import attribute_type, AttributeType
"""

from ._subscription import AttributeUpdate, Subscription, TangoEventWarning, TangoSubscriber
from ._types import AttributeType, attribute_type

__all__ = [
    "AttributeType",
    "AttributeUpdate",
    "Subscription",
    "TangoEventWarning",
    "TangoSubscriber",
    "attribute_type",
]
