"""Named, independent random streams (common random numbers by construction).

Each stochastic source gets its own :class:`numpy.random.Generator` derived from
``SeedSequence(seed, spawn_key=(replication, crc32(name)))``. Adding a machine therefore leaves
every other machine's draws unchanged, and two scenario variants share draws where names match.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["RandomStreams", "stable_crc32"]


def stable_crc32(name: str) -> int:
    """CRC-32 of ``name`` (UTF-8): stable across processes, unlike the salted ``hash()``."""
    return zlib.crc32(name.encode("utf-8")) & 0xFFFFFFFF


class RandomStreams:
    """Factory of one generator per named stochastic source for one (seed, replication)."""

    def __init__(self, seed: int, replication: int = 0) -> None:
        if seed < 0 or replication < 0:
            raise ValueError("seed and replication must be non-negative")
        self.seed = int(seed)
        self.replication = int(replication)
        self._issued: set[str] = set()

    def stream(self, name: str) -> np.random.Generator:
        """Return a fresh generator for ``name``; asking twice for one name is an error, so two
        sources never share (and silently correlate) a stream."""
        if name in self._issued:
            raise ValueError(f"random stream {name!r} requested twice")
        self._issued.add(name)
        seq = np.random.SeedSequence(self.seed, spawn_key=(self.replication, stable_crc32(name)))
        return np.random.Generator(np.random.PCG64(seq))
