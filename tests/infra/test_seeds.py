"""One seed derivation (mdmlib.infra.seeds): stable values on every machine and run, distinct
streams for distinct names, and bad parts refused with a clear error."""
import os
import subprocess
import sys
import zlib

import pytest

from mdmlib.infra.distributed import shard_seed
from mdmlib.infra.seeds import derive_seed


def test_values_are_stable_and_those_the_notebooks_drew_with():
    # the CRC-32 of the parts' text joined by "-": notebooks 04-08 were run with exactly these seeds
    assert derive_seed("elbo", "data") == zlib.crc32(b"elbo-data") == 668222008
    assert derive_seed("mdm", "float64+trunc", 2048) == 7337786
    assert derive_seed("ar", 0.9) == 3544833444
    assert derive_seed("timed", "ancestral", 8, 64, None) == 2861737100  # None: a default left unset
    assert derive_seed("shard", 0, 3) == shard_seed(0, 3) == 3262759724
    assert all(0 <= derive_seed("shard", s, k) < 2**32 for s in range(5) for k in range(5))


def test_values_do_not_depend_on_the_process():
    # no salted hash: another interpreter, with another PYTHONHASHSEED, gives the same seed
    code = "from mdmlib.infra.seeds import derive_seed; print(derive_seed('elbo', 'data'), derive_seed('fhs', 'float32', 16))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "123"}).stdout.split()
    assert list(map(int, out)) == [derive_seed("elbo", "data"), derive_seed("fhs", "float32", 16)]


def test_distinct_names_give_distinct_seeds():
    names = [("shard", s, k) for s in range(30) for k in range(30)]
    names += [("mdm", p, n) for p in ("float32", "float64", "float64+trunc", "exact") for n in (8, 64, 512, 2048)]
    names += [("ar", t) for t in (0.5, 0.7, 0.9, 1.0, 1.1)] + [("elbo", "data"), ("elbo", "time_linear"), ("data",), ("t_cat",)]
    assert len({derive_seed(*n) for n in names}) == len(names)
    assert derive_seed("shard", 1, 23) != derive_seed("shard", 12, 3)  # the joiner keeps the parts apart
    assert derive_seed(1) != derive_seed(1.0)  # parts are named by their text


@pytest.mark.parametrize("parts, message", [
    ((), "at least one part"),
    (("shard", -1, 0), "may not contain '-'"),
    (("a-b",), "may not contain '-'"),
    (("flag", True), "must be ints, floats, strings or None"),
    (("list", [1, 2]), "must be ints, floats, strings or None"),
    (("bytes", b"x"), "must be ints, floats, strings or None"),
])
def test_bad_parts_are_refused_with_a_clear_error(parts, message):
    with pytest.raises(ValueError, match=message):
        derive_seed(*parts)
