"""The Tango subscription engine (public face of `ophyd_tango._subscription`).

    from ophyd_tango.subscription import TangoSubscriber, AttributeUpdate

    subscriber = TangoSubscriber(poll_period=0.5, timeout=3.0)
    sub = subscriber.subscribe("sim/aerotech/x", ["position", "State"], print)
    ...
    sub.close()
    subscriber.close()

Importing this module does not import ophyd, so servers (the bridges) can use it cheaply.
"""

from ._subscription import (
    AttributeUpdate,
    Subscription,
    TangoEventWarning,
    TangoSubscriber,
    device_key,
    error_text,
)

__all__ = [
    "AttributeUpdate",
    "Subscription",
    "TangoEventWarning",
    "TangoSubscriber",
    "device_key",
    "error_text",
]
