import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import torch

from mdmlib.infra import results


@pytest.fixture(autouse=True)
def _tmp_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("MDMLIB_FIGURES", str(tmp_path / "fig"))
    monkeypatch.setenv("MDMLIB_CACHE", str(tmp_path / "cache"))


def test_json_and_figure_are_written_whole():
    path = results.save_json({"x": torch.tensor([1.0, 2.0]), "n": 3}, "table")
    assert json.loads(path.read_text()) == {"n": 3, "x": [1.0, 2.0]}
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    assert results.save_figure(fig, "plot").stat().st_size > 0
    plt.close(fig)


def test_other_scales_do_not_overwrite_the_quick_figures(monkeypatch):
    results.save_json({"a": 1}, "table")
    monkeypatch.setenv("MDMLIB_SCALE", "full")
    results.save_json({"a": 2}, "table")
    names = sorted(p.name for p in results.figures_dir().iterdir())
    assert names == ["table.json", "table_full.json"]


def test_failed_writes_leave_nothing_behind():
    with pytest.raises(ValueError):
        results.save_json({"bad": float("nan")}, "nan_table")

    class Broken:
        def savefig(self, *a, **k):
            open(a[0], "w").write("half a png")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        results.save_figure(Broken(), "broken")
    assert list(results.figures_dir().iterdir()) == []


def test_cache_computes_once_per_parameter_set():
    calls = []

    def compute():
        calls.append(1)
        return {"value": torch.tensor([len(calls)])}

    assert not results.is_cached("thing", {"a": 1}, code=compute.__module__)
    assert results.cached("thing", {"a": 1}, compute) == {"value": [1]}
    assert results.is_cached("thing", {"a": 1}, code=compute.__module__) and not results.is_cached("thing", {"a": 2}, code=compute.__module__)
    assert results.cached("thing", {"a": 1}, compute) == {"value": [1]}
    assert results.cached("thing", {"a": 2}, compute) == {"value": [2]}
    assert len(calls) == 2


def test_cache_is_keyed_by_the_environment(monkeypatch):
    # the same parameters computed under another PyTorch, platform or thread count are not reused
    calls = []

    def compute():
        calls.append(1)
        return {"n": len(calls)}

    env = results.environment()
    assert set(env) == {"torch", "platform", "cpu_capability", "threads"} and env["torch"] == torch.__version__
    assert results.cached("thing", {"a": 1}, compute) == {"n": 1}
    monkeypatch.setattr(results, "environment", lambda: {**env, "torch": "0.0"})
    assert results.cached("thing", {"a": 1}, compute) == {"n": 2}
    monkeypatch.setattr(results, "environment", lambda: env)
    assert results.cached("thing", {"a": 1}, compute) == {"n": 1}
    stored = json.loads(next(results.cache_dir().glob("thing-*.json")).read_text())
    assert stored["params"]["environment"]["torch"] in (torch.__version__, "0.0")


def test_cache_folders_are_keyed_by_parameters_and_environment(monkeypatch):
    first = results.cache_folder("net", {"a": 1}, code="mdmlib.infra.results")
    assert first.is_dir() and first.parent == results.cache_dir()
    assert results.cache_folder("net", {"a": 1}, code="mdmlib.infra.results") == first != results.cache_folder("net", {"a": 2}, code="mdmlib.infra.results")
    env = results.environment()
    monkeypatch.setattr(results, "environment", lambda: {**env, "threads": env["threads"] + 1})
    assert results.cache_folder("net", {"a": 1}, code="mdmlib.infra.results") != first
    with pytest.raises(ValueError, match="'environment' and 'code' are added"):
        results.cache_folder("net", {"environment": 1}, code="mdmlib.infra.results")
    with pytest.raises(ValueError, match="plain file name"):
        results.cache_folder("../net", {"a": 1}, code="mdmlib.infra.results")


