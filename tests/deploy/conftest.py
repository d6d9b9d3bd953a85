"""The production Tango path: MariaDB, Tango's C++ DataBaseds and Starter from Debian packages.

- `facility` (session): MariaDB with the packaged Tango schema, DataBaseds and a Starter for this host,
  on free loopback ports in a temporary directory; skipped with the install command when missing.
"""

from collections.abc import Iterator

import pytest

from tango_servers.stack.mariadb import Facility, start_facility


@pytest.fixture(scope="session")
def facility(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Facility]:
    try:
        running = start_facility(tmp_path_factory.mktemp("facility"))
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        yield running
    finally:
        running.stop()
