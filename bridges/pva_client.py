"""A PVAccess client for optimisers and scripts that drive the hardware through PVs (Badger-style).

    from functools import partial
    from bridges.pva_client import Interface, wait_for_readback

    interface = Interface(read_only=False, parallel=True, timeout=5.0, conf=running_stack.pva)
    interface.get_values(["SIM:AEROTECH:X:position"])
    interface.set_values(
        {"SIM:AEROTECH:X:position": 1.5},
        configs={"SIM:AEROTECH:X:position": partial(
            wait_for_readback, readback_pv="SIM:AEROTECH:X:position", tolerance=0.01, count_down=15, offset=0)},
    )

- `read_only=True`: `set_values` logs what it would set and sets nothing (gets still work).
- A put that times out is retried twice, one second apart, then `TimeoutError` is raised.
- A validation function (a `functools.partial` of e.g. `wait_for_readback`) per set PV is called
  after its put as `fn(set_pv=..., set_value=..., context=..., timeout=...)`.
- `parallel=True`: the puts, each followed by its validation, run concurrently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from p4p.client.thread import Context

__all__ = ["Interface", "wait_for_readback"]

logger = logging.getLogger(__name__)

Validation = Callable[..., Any]
POLL_INTERVAL = 0.1


def wait_for_readback(
    set_pv: str,
    set_value: float,
    readback_pv: str,
    tolerance: float,
    count_down: float,
    offset: float,
    context: Context,
    timeout: float,
) -> float:
    """Poll `readback_pv` every 0.1 s until it is within `tolerance` of `set_value + offset`.

    Returns the readback value; raises ValueError when `count_down` seconds pass first. Each get
    waits at most `timeout` seconds. Bind the readback arguments with `functools.partial`; the
    Interface supplies `set_pv`, `set_value`, `context` and `timeout`.
    """
    target = set_value + offset
    deadline = time.monotonic() + count_down
    while True:
        value = context.get(readback_pv, timeout=timeout)
        if np.isclose(value.real, target, atol=tolerance):
            return value.real
        if time.monotonic() + POLL_INTERVAL > deadline:
            break
        time.sleep(POLL_INTERVAL)  # the seed's polling period; the readback PV may not post often
    raise ValueError(
        f"PV {set_pv} (current {readback_pv}: {value.real}) cannot reach expected value ({target}) "
        f"in designated time {count_down}!"
    )


class Interface:
    """Get and set PV values through p4p, with read-only mode, put retries, validation and parallel sets.

    `conf`: EPICS_PVA_* client settings (e.g. `RunningStack.pva`); None uses the environment.
    `context`: an existing p4p Context to use instead (not closed by `close()`).
    """

    def __init__(
        self,
        read_only: bool = False,
        parallel: bool = False,
        timeout: float = 5.0,
        *,
        conf: Mapping[str, str] | None = None,
        context: Context | None = None,
        retries: int = 2,
        retry_delay: float = 1.0,
    ):
        self.read_only = read_only
        self.parallel = parallel
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self._own_context = context is None
        self.context = context or Context("pva", conf=dict(conf) if conf else None, useenv=conf is None)

    def get_values(self, names: Iterable[str]) -> dict[str, Any]:
        """Current value of each PV (p4p's unwrapped values: floats, ints, strings, arrays,
        carrying `.severity` and `.timestamp`)."""
        names = list(names)
        values = self.context.get(names, timeout=self.timeout)
        return dict(zip(names, values, strict=True))

    def get_value(self, name: str) -> Any:
        return self.context.get(name, timeout=self.timeout)

    def set_values(self, values: Mapping[str, Any], configs: Mapping[str, Validation] | None = None) -> dict[str, Any]:
        """Put each value, then run its PV's validation function (if `configs` has one).

        Returns {name: validation result or None}. Sequential by default (stops at the first
        failure); with `parallel=True` all sets run at once and the first failure is raised
        after all have finished. In read-only mode nothing is put and nothing is validated.
        """
        configs = configs or {}
        if self.read_only:
            for name, value in values.items():
                logger.info("read-only: would set %s to %r", name, value)
            return {}
        if not self.parallel or len(values) < 2:
            return {name: self.set_value(name, value, configs.get(name)) for name, value in values.items()}
        with ThreadPoolExecutor(max_workers=len(values), thread_name_prefix="pva-set") as pool:
            futures = {
                name: pool.submit(self.set_value, name, value, configs.get(name)) for name, value in values.items()
            }
        errors = [error for f in futures.values() if (error := f.exception()) is not None]
        if errors:
            raise errors[0]
        return {name: future.result() for name, future in futures.items()}

    def set_value(self, name: str, value: Any, validation: Validation | None = None) -> Any:
        """Put one value (retrying timeouts), then validate it; returns the validation's result."""
        if self.read_only:
            logger.info("read-only: would set %s to %r", name, value)
            return None
        self._put_with_retries(name, value)
        if validation is None:
            return None
        return validation(set_pv=name, set_value=value, context=self.context, timeout=self.timeout)

    def _put_with_retries(self, name: str, value: Any) -> None:
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                self.context.put(name, value, timeout=self.timeout)
                return
            except TimeoutError:
                if attempt == attempts:
                    raise TimeoutError(
                        f"put of {value!r} to {name} timed out {attempts} times ({self.timeout:g} s each)"
                    ) from None
                logger.warning("put to %s timed out (attempt %d of %d); retrying", name, attempt, attempts)
                time.sleep(self.retry_delay)  # the seed's pause between tries

    def close(self) -> None:
        if self._own_context:
            self.context.close()

    def __enter__(self) -> Interface:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
