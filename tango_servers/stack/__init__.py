"""The local stack behind the `tango-suite` command.

A stack is a sqlite Tango database (pytango-db), the device servers named in a dsconfig JSON
file, and `redis-server` when a Redis bridge is configured, all on 127.0.0.1 and supervised by
one background process whose state lives in a state directory.
"""

from .config import ConfigError, ServerSpec, SuiteConfig, load_config
from .state import StackState, default_state_dir
from .waiting import wait_until

__all__ = [
    "ConfigError",
    "ServerSpec",
    "StackState",
    "SuiteConfig",
    "default_state_dir",
    "load_config",
    "wait_until",
]
