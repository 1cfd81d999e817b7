"""What the server and the agent must agree on: topics, messages, manifests, trust.

Pure by contract: nothing here opens a socket or a file or reads the clock;
time and storage are passed in by the caller. Importable with the agent's
dependencies alone.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgefleet")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
