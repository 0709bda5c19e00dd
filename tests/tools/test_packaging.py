"""The project's own files agree with each other, and the committed notebooks are clean."""
import json
import re
import tomllib
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
CONDA_TO_PIP = {"pytorch": "torch"}


def _requirement(spec: str) -> tuple[str, str]:
    name, version = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(.*)", spec).groups()
    return CONDA_TO_PIP.get(name.lower(), name.lower()), version.replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_side = dict(_requirement(s) for s in project["dependencies"] + project["optional-dependencies"]["test"])
    conda_side, in_dependencies = {}, False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if not line.startswith(" "):
            in_dependencies = line.startswith("dependencies:")
        # conda entries ("  - name>=v") and, for what conda-forge lacks, the pip block's ("      - name>=v")
        m = re.match(r"^(?:  |      )- ([^:#]+?)\s*(?:#.*)?$", line)
        if in_dependencies and m and not m.group(1).startswith(("python", "pip", "-e")):
            name, version = _requirement(m.group(1))
            conda_side[name] = version
    assert conda_side == pip_side


def test_license_and_python_version_match_the_metadata():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"} and (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    # tests read TOML with tomllib, new in Python 3.11
    assert project["requires-python"] == ">=3.11"
    assert "  - python=3.11\n" in (ROOT / "environment.yml").read_text()
    assert "Python 3.11 or newer" in (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "python3 -m mdmlib.tools.bootstrap pytest"
    assert command in readme and command in ci
    assert "python3 -m mdmlib.tools.bootstrap run" in readme


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_ran_in_order_without_errors(path):
    nb = json.loads(path.read_text())
    counts = [c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code"]
    assert counts == list(range(1, len(counts) + 1)), "not executed top to bottom in a fresh kernel"
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"error output: {out.get('ename')}"
    sources = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "current_scale()" in sources, "every notebook states the scale it ran at"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_outputs_name_no_path_of_the_machine_they_ran_on(path):
    nb = json.loads(path.read_text())
    texts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            texts += out.get("text", []) + out.get("data", {}).get("text/plain", [])
    absolute = re.compile(r"(?:^|[\s'\"(])/[\w.-]+/[\w.-]+")
    assert not [t for t in texts if absolute.search(t)]
