"""Tango device servers of the suite: Aerotech Automation1, Pilatus, OAV, and the `tango-suite` launcher."""
