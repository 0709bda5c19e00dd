"""A tool's --out folder: refused where replacing it would delete what the tool did not make,
replaced whole only after a build succeeds, and left as it was when the build fails."""
import os
from pathlib import Path

import pytest

from mdmlib.infra import outputs
from mdmlib.infra.paths import project_root

MARKER = ".made-by-test"


def test_the_project_its_parents_and_the_current_folder_are_refused(tmp_path, monkeypatch):
    for out in (project_root(), project_root().parent, Path("/")):
        with pytest.raises(outputs.OutputError, match="refusing --out"):
            outputs.check_out(out, MARKER)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(outputs.OutputError, match="current folder"):
        outputs.check_out(Path("."), MARKER)


def test_a_file_or_a_foreign_non_empty_folder_is_refused_and_kept(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(outputs.OutputError, match="did not write"):
        outputs.check_out(foreign, MARKER)
    with pytest.raises(outputs.OutputError, match="did not write"):
        with outputs.replacing(foreign, MARKER, "note"):
            pytest.fail("the build must not start")
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(outputs.OutputError, match="is a file"):
        outputs.check_out(foreign / "notes.txt", MARKER)


def test_a_new_empty_or_own_folder_is_accepted(tmp_path):
    assert outputs.check_out(tmp_path / "new" / "deeper", MARKER) == (tmp_path / "new" / "deeper").resolve()
    (tmp_path / "empty").mkdir()
    assert outputs.check_out(tmp_path / "empty", MARKER) == (tmp_path / "empty").resolve()
    own = tmp_path / "own"
    own.mkdir()
    (own / MARKER).write_text("")
    (own / "old.html").write_text("")
    assert outputs.check_out(own, MARKER) == own.resolve()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission bits")
def test_an_unwritable_parent_is_refused_before_any_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(outputs.OutputError, match="cannot write"):
            outputs.check_out(locked / "out", MARKER)
    finally:
        locked.chmod(0o700)


def test_replacing_swaps_in_the_build_only_when_it_succeeds(tmp_path):
    out = tmp_path / "out"
    with outputs.replacing(out, MARKER, "first") as staged:
        (staged / "a.txt").write_text("one")
    assert (out / "a.txt").read_text() == "one" and (out / MARKER).read_text() == "first"
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # the user's usual mode, not mkdtemp's 0700
    with pytest.raises(RuntimeError, match="broken build"):
        with outputs.replacing(out, MARKER, "second") as staged:
            (staged / "b.txt").write_text("two")
            raise RuntimeError("broken build")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.txt"]  # the first build, untouched
    with outputs.replacing(out, MARKER, "third") as staged:
        (staged / "c.txt").write_text("three")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "c.txt"]  # replaced whole: a.txt is gone
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging or old folders left behind
