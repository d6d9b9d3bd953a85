"""Sardana macros of the tango-suite stack (the MacroServer's MacroPath: `tango_servers.stack.sardana`)."""
