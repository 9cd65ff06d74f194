"""``facelens bench``: reproducible speed measurements on generated, public-domain inputs.

The code lives in the :mod:`facelens.benchmarks` package; this module keeps the original import path
(``facelens.bench.register`` is what the command line registers) and re-exports its public names.
"""

from __future__ import annotations

from .benchmarks import *  # noqa: F403
from .benchmarks import __all__  # noqa: F401
from .benchmarks.core import SAMPLE  # noqa: F401
