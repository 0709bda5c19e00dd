"""A stand-in for huggingface_hub in the loaders' tests: it records every snapshot_download
call and never reaches the network."""
import sys
import types

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_hub(monkeypatch, snapshot=None, error=None):
    """Replace huggingface_hub by a module whose snapshot_download records its call and
    returns `snapshot` (or raises `error`); the list of recorded calls."""
    calls = []

    def snapshot_download(repo_id, **kwargs):
        calls.append({"repo_id": repo_id, **kwargs})
        if error is not None:
            raise error
        return str(snapshot)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot_download))
    return calls
