"""Sardana controller plugins. The Pool loads each module here by file name (its PoolPath)."""
