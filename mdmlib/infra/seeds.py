"""One way to derive a seed: every seeded stream in the project is named by its parts.

`derive_seed("elbo", "data")`, `derive_seed("shard", 0, 3)`: the CRC-32 of the parts'
text joined by "-" (a 32-bit seed). Distinct names give distinct streams (parts may not contain "-", so no
two lists of parts join to the same text), and the same name gives the same seed on
every machine and Python (no salted `hash`).
"""
from __future__ import annotations

import zlib


def derive_seed(*parts) -> int:
    """The seed of the stream named by `parts`: numbers, strings or None, none of whose
    text holds '-' (so negative numbers are refused)."""
    if not parts:
        raise ValueError("name the stream: derive_seed needs at least one part")
    for part in parts:
        if part is not None and (isinstance(part, bool) or not isinstance(part, (int, float, str))):
            raise ValueError(f"seed parts must be numbers, strings or None, got {part!r} ({type(part).__name__})")
        if "-" in str(part):
            raise ValueError(f"seed parts may not contain '-' (it joins them; numbers must be >= 0), got {part!r}")
    return zlib.crc32("-".join(map(str, parts)).encode())
