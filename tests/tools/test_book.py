"""The reading version builds, and every page works in a real browser (headless Chromium).

The browser check needs Chromium and ChromeDriver (Debian: `apt-get install chromium
chromium-driver`). Without them it is skipped, unless MDMLIB_REQUIRE_BROWSER=1 (CI sets it),
which turns a missing browser into a failure.
"""
import functools
import http.server
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from mdmlib.infra.outputs import OutputError
from mdmlib.tools import book

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
# flags for a sandboxed machine without network: no background connections, no GPU
CHROMIUM_FLAGS = (
    "--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --disable-quic --no-first-run "
    "--disable-background-networking --disable-component-update --disable-sync"
).split()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("book") / "html"
    pages = book.build(out)
    return out, pages


def _notebook(stem: str) -> dict:
    return json.loads((book.NOTEBOOKS / f"{stem}.ipynb").read_text())


def _has_math(nb: dict) -> bool:
    return any(c["cell_type"] == "markdown" and "$" in "".join(c["source"]) for c in nb["cells"])


def _png_outputs(nb: dict) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))


def test_every_notebook_is_a_page_in_the_order_of_the_parts(built):
    out, pages = built
    stems = [p.stem for p in sorted(book.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))]
    assert [p for p in pages if p[:2].isdigit()] == stems  # numbered in the order of the paper's ideas
    for page in pages:
        assert (out / f"{page}.html").is_file()
    index = (out / "index.html").read_text()
    positions = [index.index(f'href="{stem}.html"') for stem in stems]
    assert positions == sorted(positions)
    for title, part in book.parts():
        assert title in index and part


def _empty_notebook(path: Path) -> None:
    path.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def test_a_notebook_outside_every_part_is_an_error(tmp_path):
    for stem in [s for _, stems in book.parts() for s in stems] + ["99_stray"]:
        _empty_notebook(tmp_path / f"{stem}.ipynb")
    with pytest.raises(book.BookError, match="99_stray"):
        book.assemble(tmp_path / "source", tmp_path)


def test_a_listed_notebook_that_is_missing_or_no_notebooks_at_all_is_an_error(tmp_path):
    with pytest.raises(book.BookError, match="not in"):
        book.assemble(tmp_path / "source", tmp_path)
    with pytest.raises(book.BookError, match="no notebooks folder"):
        book.build(tmp_path / "out", tmp_path / "nothing")
    assert not (tmp_path / "out").exists()


def test_the_parts_are_declared_in_book_index_and_the_readme_map_follows_them():
    stems = [s for _, part in book.parts() for s in part]
    readme = (book.ROOT / "README.md").read_text()
    in_map = [line.split("`")[1] for line in readme.splitlines() if line.startswith("| ") and line.count("`") >= 2 and line[2:4].isdigit()]
    assert in_map == stems  # the README's notebook map lists the book's notebooks in its order


def test_out_is_refused_where_the_book_would_delete_what_it_did_not_make(tmp_path, monkeypatch):
    for out in (book.ROOT, book.ROOT.parent, Path(".")):
        with pytest.raises(OutputError, match="refusing"):
            book.check_out(out)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="did not write"):
        book.build(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(OutputError, match="is a file"):
        book.check_out(foreign / "notes.txt")
    assert book.main(["--out", str(foreign)]) == 2 and (foreign / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]  # nothing added either


def test_a_second_build_replaces_only_its_own_folder(built):
    out, _ = built
    assert (out / book.MARKER).is_file()
    assert book.check_out(out) == out.resolve()  # made by the book: may be replaced


@pytest.fixture(scope="module")
def browser(built):
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("MDMLIB_REQUIRE_BROWSER") == "1":
            pytest.fail("MDMLIB_REQUIRE_BROWSER=1 but chromium and chromedriver were not found")
        pytest.skip("no chromium/chromedriver: install Debian's chromium and chromium-driver to run the browser check")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    out, _ = built
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    yield driver, f"http://127.0.0.1:{server.server_address[1]}"
    driver.quit()
    server.shutdown()
    server.server_close()


MATHJAX_DONE = """
const done = arguments[arguments.length - 1];
if (!window.MathJax || !MathJax.startup) { done("MathJax not loaded"); return; }
MathJax.startup.promise.then(() => done("ok"), (e) => done("MathJax failed: " + e));
"""


def test_every_page_renders_its_math_and_figures_without_console_errors(built, browser):
    driver, base = browser
    _, pages = built
    for page in pages:
        driver.get(f"{base}/{page}.html")
        assert driver.title, f"{page}: no title"
        nb = _notebook(page) if page[:2].isdigit() else None
        if nb is not None and _has_math(nb):
            assert driver.execute_async_script(MATHJAX_DONE) == "ok", page
            assert driver.execute_script("return document.querySelectorAll('mjx-container').length") > 0, f"{page}: no math rendered"
            assert driver.execute_script("return document.querySelectorAll('mjx-merror').length") == 0, f"{page}: a formula failed to typeset"
        images = driver.execute_script("return Array.from(document.images).map(i => [i.src, i.complete && i.naturalWidth > 0])")
        broken = [src for src, ok in images if not ok]
        assert not broken, f"{page}: figures that did not load: {broken}"
        if nb is not None:
            assert len(images) >= _png_outputs(nb), f"{page}: {len(images)} images for {_png_outputs(nb)} figures"
        errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, f"{page}: console errors {errors}"
