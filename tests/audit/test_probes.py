"""The probes: the default set, their categories and blocks, and bad probes refused."""
import pytest
import torch

from mdmlib.audit.probes import Probe, default_probes


def test_probes():
    assert len(default_probes()) == 21
    p = Probe("zipf", 1e-3, 10, "first")
    c = p.categories()
    assert c[0] == 1 - 1e-3 and abs(float(c.sum()) - 1) < 1e-15 and p.mask_index == 0
    probs, copies, log_mu, mask_block = Probe("flat", 1e-3, 10).blocks()
    assert copies.tolist() == [10, 1] and mask_block == 1
    assert torch.allclose(torch.repeat_interleave(probs, copies), Probe("flat", 1e-3, 10).categories(), rtol=0, atol=1e-18)
    for bad in (dict(mu="uniform"), dict(h=0.0), dict(h=1.0), dict(vocab=1), dict(mask="middle")):
        with pytest.raises(ValueError):
            Probe(**{**dict(mu="flat", h=0.1, vocab=10), **bad})
