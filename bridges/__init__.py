"""Bridge servers that republish Tango attributes to other systems (EPICS PVAccess, Redis)."""
