"""The Automation1 server with its simulated PSO counter restarting from 2**31 + 10 at each
PsoArm: a test sees pulse counts past the 32-bit range without firing two billion pulses."""

from tango_servers.aerotech import device
from tango_servers.aerotech.device import Automation1Axis, Automation1Controller  # noqa: F401  (its classes)
from tango_servers.aerotech.sim import Automation1Sim

OFFSET = 2**31 + 10
_arm = Automation1Sim._pso_arm


def _arm_past_2_31(self: Automation1Sim, t: float) -> None:
    _arm(self, t)
    self._pso.count = OFFSET


def main(args: list[str] | None = None) -> None:
    Automation1Sim._pso_arm = _arm_past_2_31  # type: ignore[method-assign]
    device.main(args)


if __name__ == "__main__":
    main()
