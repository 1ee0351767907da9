"""The test suite's root: its directory is on sys.path, so both tests/unit
and tests/cluster import the helpers they share (helpers.py)."""
