"""rollcall: who is in the building, from face recognition at the doors; the ``rollcall`` command lives here."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The installed distribution's version (a wheel built under another version, as upgrades are, says so).
    __version__ = version("rollcall")
except PackageNotFoundError:  # a source tree without metadata
    __version__ = "0.1.0"
