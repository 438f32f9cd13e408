"""vyre-runtime: run VIR0 programs over byte streams on a resident megakernel (CPU or GPU).

The names most users need; everything else lives in its own module (see README.md, Layout).
"""

from vyre_runtime.errors import VyreError
from vyre_runtime.megakernel import Megakernel

__all__ = ["Megakernel", "VyreError"]
__version__ = "0.1.0"
