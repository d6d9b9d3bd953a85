"""Aerotech Automation1 motion controller: backend interface, simulator, program language, Tango devices.

Modules: `backend` (the interface a driver implements), `sim` (the simulator), `profile`
(trapezoidal moves), `program` (the AeroScript-like language), `limits` (move checks) and
`device` (the Tango classes `Automation1Controller` and `Automation1Axis`).
"""
