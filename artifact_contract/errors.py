"""The contract's one exception, in a leaf module so that every part can raise it.

``manifest``, ``policy``, ``probes`` and ``robustness`` all refuse artifacts the same way;
with the exception here, none of them imports another to do so (no import cycle).
"""

from __future__ import annotations


class ArtifactError(Exception):
    """A model version that must not be written or served; the message names the file and why."""
