"""One way to derive a seed: every seeded stream in the project is named by its parts.

`derive_seed("elbo", "data")`, `derive_seed("shard", 0, 3)`: the CRC-32 of the parts' text
joined by "-", a 32-bit seed for `torch.Generator.manual_seed`. The same parts give the same
seed on every machine and Python (no salted `hash`). Parts are named by their text, so
1 and "1" name one stream, and 1 and 1.0 two; no part may contain "-" (so negative numbers
are refused), hence two different lists of texts never join to the same text, and distinct
names share a seed only by a CRC-32 collision (about one pair in 4 billion).
"""
from __future__ import annotations

import zlib


def derive_seed(*parts) -> int:
    """The seed of the stream named by `parts`: ints, floats, strings or None, none of whose
    text holds '-'. Anything else (bools, tensors, lists, ...) is refused with a ValueError."""
    if not parts:
        raise ValueError("name the stream: derive_seed needs at least one part")
    for part in parts:
        if part is not None and (isinstance(part, bool) or not isinstance(part, (int, float, str))):
            raise ValueError(f"seed parts must be ints, floats, strings or None, got {part!r} ({type(part).__name__})")
        if "-" in str(part):
            raise ValueError(f"seed parts may not contain '-' (it joins them; numbers must be >= 0), got {part!r}")
    return zlib.crc32("-".join(map(str, parts)).encode())
