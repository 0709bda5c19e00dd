"""Where the project's own folders are: the one place that knows the package's depth."""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent  # the mdmlib folder


def project_root() -> Path | None:
    """The checkout that holds mdmlib (its pyproject.toml beside the package), or None
    for an installed wheel, which has no notebooks, figures or git history."""
    root = PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() and (root / "mdmlib").is_dir() else None


def require_project_root(what: str) -> Path:
    """The checkout's root, or a clear error naming what needed it."""
    root = project_root()
    if root is None:
        raise FileNotFoundError(f"{what} needs the project's checkout (its notebooks/ and pyproject.toml); "
                                f"mdmlib is installed from a wheel at {PACKAGE}, outside one")
    return root
