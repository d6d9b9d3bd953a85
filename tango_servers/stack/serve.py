"""Run one device server by its Tango executable name: `python -m tango_servers.stack.serve Pilatus sim ...`.

Servers come from the `tango_suite.servers` entry points, or from `$TANGO_SUITE_EXTRA_SERVERS`
(a JSON object name -> "module:function" or "/path/to/file.py:function") for test-only servers.
"""

import json
import os
import sys
from collections.abc import Callable

from .config import load_target, server_entry_points

EXTRA_SERVERS_ENV = "TANGO_SUITE_EXTRA_SERVERS"


def server_main(server: str) -> Callable[..., None]:
    extra = json.loads(os.environ.get(EXTRA_SERVERS_ENV, "{}"))
    if server in extra:
        return load_target(extra[server])
    entry_points = server_entry_points()
    if server not in entry_points:
        raise SystemExit(f"serve: unknown server '{server}'; known: {', '.join(sorted(entry_points))}")
    return entry_points[server].load()


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit("usage: python -m tango_servers.stack.serve SERVER INSTANCE [tango options]")
    server = sys.argv[1]
    server_main(server)(args=[server, *sys.argv[2:]])


if __name__ == "__main__":
    main()
