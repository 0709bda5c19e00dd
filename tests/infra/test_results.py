import json
import os
import stat

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




# ---- caches checked when read ----------------------------------------------------------------

def _entry_path():
    return next(results.cache_dir().glob("thing-*.json"))


@pytest.mark.parametrize("damage, words", [
    (lambda text: text.replace('"value": [7]', '"value": [8]'), "fails its checksum"),
    (lambda text: text[: len(text) // 2], "cannot be read as JSON"),
    (lambda text: "not json at all", "cannot be read as JSON"),
    (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "sha256"}), "has no checksum"),
    (lambda text: text.replace('"sha256": "', '"sha256": "0'), "fails its checksum"),
], ids=["edited", "truncated", "not-json", "older-format", "wrong-checksum"])
def test_a_bad_cache_entry_is_computed_again_with_a_warning_naming_it(damage, words):
    calls = []

    def compute():
        calls.append(1)
        return {"value": [7]}

    assert results.cached("thing", {"a": 1}, compute) == {"value": [7]}
    path = _entry_path()
    path.write_text(damage(path.read_text()))
    assert not results.is_cached("thing", {"a": 1}, code=compute.__module__)  # quietly: cached() says it
    with pytest.warns(results.CacheWarning, match=words) as caught:
        assert results.cached("thing", {"a": 1}, compute) == {"value": [7]}
    assert str(path) in str(caught[0].message) and len(calls) == 2
    assert results.is_cached("thing", {"a": 1}, code=compute.__module__)  # written whole again


def test_a_cache_entry_of_another_computation_is_not_used():
    results.cached("thing", {"a": 1}, lambda: {"v": 1})
    path = _entry_path()
    stored = json.loads(path.read_text())
    stored.pop("sha256")
    stored["params"]["a"] = 2  # moved here from another key, its checksum made to match
    path.write_text(results._sealed_text(stored))
    with pytest.warns(results.CacheWarning, match="another computation's parameters"):
        assert results.cached("thing", {"a": 1}, lambda: {"v": 3}) == {"v": 3}


# ---- files get the user's usual permissions ------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_of_a_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        written = results.write_json({"a": 1}, tmp_path / "new.json")
        with open(tmp_path / "plain.txt", "w"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "kept.json"
    path.write_text("{}")
    path.chmod(0o640)
    results.write_json({"a": 1}, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and json.loads(path.read_text()) == {"a": 1}


# ---- where a tool may write ----------------------------------------------------------------------

def test_an_output_file_is_checked_before_any_work(tmp_path):
    tool = "mdmlib.tests"
    with pytest.raises(results.OutputError, match="is a folder"):
        results.check_output_file(tmp_path, tool)
    with pytest.raises(results.OutputError, match="does not exist"):
        results.check_output_file(tmp_path / "missing" / "run.json", tool)
    mine, theirs, other_tool = tmp_path / "mine.json", tmp_path / "notes.json", tmp_path / "other.json"
    theirs.write_text('{"important": true}')
    results.write_json({results.WRITTEN_BY: "another tool"}, other_tool)
    for path in (theirs, other_tool):
        with pytest.raises(results.OutputError, match="was not written by mdmlib.tests"):
            results.check_output_file(path, tool)
    assert theirs.read_text() == '{"important": true}'
    assert results.check_output_file(mine, tool) == mine  # new: fine
    results.write_json({results.WRITTEN_BY: tool}, mine)
    assert results.check_output_file(mine, tool) == mine  # its own: may be replaced


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a POSIX user whom permissions bind")
def test_an_output_in_a_read_only_folder_is_refused(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(results.OutputError, match="cannot write"):
        results.check_output_file(tmp_path / "ro" / "run.json", "mdmlib.tests")


# ---- the finished parts of a long run -------------------------------------------------------------

def test_kept_parts_come_back_only_for_the_same_run(tmp_path):
    kept = results.KeptParts(tmp_path / "run.partial", "mdmlib.tests").check()
    run = {"seed": 1, "checkpoint": "abc"}
    kept.put("float32@8", run, {"x": torch.tensor([1.5, 2.0])})
    assert kept.get("float32@8", run) == {"x": [1.5, 2.0]} and kept.get("float64@8", run) is None
    with pytest.warns(results.CacheWarning, match=r"other parameters \(seed\)"):
        assert kept.get("float32@8", {**run, "seed": 2}) is None
    path = next((tmp_path / "run.partial").glob("*.json"))
    path.write_text(path.read_text().replace("1.5", "9.5"))
    with pytest.warns(results.CacheWarning, match="fails its checksum"):
        assert kept.get("float32@8", run) is None
    (tmp_path / "run.partial" / "mine.txt").write_text("a note of the user's")
    kept.clear()  # removes what it wrote and leaves the rest
    assert sorted(p.name for p in (tmp_path / "run.partial").iterdir()) == [".written_by", "float32_8.json", "mine.txt"]
    (tmp_path / "run.partial" / "float32_8.json").unlink()
    (tmp_path / "run.partial" / "mine.txt").unlink()
    kept.clear()
    assert not (tmp_path / "run.partial").exists()


def test_a_folder_not_made_to_keep_parts_is_refused(tmp_path):
    (tmp_path / "run.partial").mkdir()
    (tmp_path / "run.partial" / "data.json").write_text("{}")
    with pytest.raises(results.OutputError, match="was not made by mdmlib.tests"):
        results.KeptParts(tmp_path / "run.partial", "mdmlib.tests").check()
    (tmp_path / "file.partial").write_text("x")
    with pytest.raises(results.OutputError, match="was not made by"):
        results.KeptParts(tmp_path / "file.partial", "mdmlib.tests").check()
    assert (tmp_path / "run.partial" / "data.json").read_text() == "{}"


def test_the_temporary_file_is_private_while_it_is_written(tmp_path):
    seen = []

    def write(tmp):
        seen.append(stat.S_IMODE(os.stat(tmp).st_mode))
        with open(tmp, "w") as f:
            f.write("x")

    old = os.umask(0o000)  # even where a plain open() would give 0666
    try:
        results.write_atomically(tmp_path / "x.txt", write)
    finally:
        os.umask(old)
    assert seen == [0o600] and stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o666
