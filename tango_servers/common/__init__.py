"""What every server of the suite shares: pushing events from a worker thread, publishing the
bluesky roles, refusing a request with a clear reason, and following another device's attribute.

- `events`: `EventPublisher`, one thread that pushes a device's change events in order
- `roles`: `publish_roles`, the class's default roles into the database once
- `refusals`: `refuse` and `refusals`, a refusal as a DevFailed with a reason and a sentence
- `following`: `AttributeFollower` over the shared subscription engine (`ophyd_tango.core`)
"""

from .events import EventPublisher
from .following import AttributeFollower, split_attribute_name
from .refusals import refusals, refuse
from .roles import publish_roles

__all__ = [
    "AttributeFollower",
    "EventPublisher",
    "publish_roles",
    "refusals",
    "refuse",
    "split_attribute_name",
]
