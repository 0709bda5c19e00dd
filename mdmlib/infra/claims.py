"""Every claim the notebooks check, recorded as it is checked, and the summary table.

In a notebook:

    claims = ClaimLog("05_entropy_collapse")
    claims.check("float32 collapses", "32-bit sampling lowers NLL below the data's",
                 section="5, Table 2", measured=z, expected="z < -3", passed=z < -3,
                 uncertainty="z-score", figure="05_entropy_collapse")
    ...
    claims.save()        # figures/05_entropy_collapse_claims.json, written whole

`check` records the claim and raises AssertionError when it does not hold, so a
notebook still stops at a failed claim. `summarize()` (run by the main job at the
end, `python -m mdmlib.tools.run_notebooks`) gathers every notebook's claims into one
table, figures/claims.md and figures/claims.json, with the scale each ran at.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mdmlib.infra.results import figures_dir, save_json, save_text
from mdmlib.infra.scale import current_scale


@dataclass(frozen=True)
class Claim:
    notebook: str
    key: str  # short, unique within the notebook
    statement: str  # what the paper (or the project) says, in words
    section: str  # where in the paper ("5.2", "Prop. 3.1", "project" for the project's own findings)
    measured: str  # the measured figure, formatted
    uncertainty: str  # its uncertainty (SE, CI, power), formatted; "" for exact results
    expected: str  # what the check requires
    passed: bool
    figure: str  # the figure (or table) in figures/ that shows it, without extension; "" if none


def _format(value) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return str(value)
        if value == 0:
            return "0"
        magnitude = abs(value)
        return f"{value:.3g}" if magnitude < 1e-3 or magnitude >= 1e5 else f"{value:.4g}"
    return str(value)


@dataclass
class ClaimLog:
    """The claims of one notebook, in the order they are checked."""

    notebook: str
    claims: list[Claim] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def check(self, key: str, statement: str, *, section: str, measured, expected: str, passed: bool, uncertainty="", figure: str = "") -> Claim:
        """Record a claim; raise AssertionError if it does not hold."""
        if any(c.key == key for c in self.claims):
            raise ValueError(f"claim {key!r} is checked twice in {self.notebook}")
        if not isinstance(passed, bool):
            passed = bool(passed)  # numpy / torch booleans
        claim = Claim(self.notebook, key, statement, section, _format(measured), _format(uncertainty), expected, passed, figure)
        self.claims.append(claim)
        if not passed:
            raise AssertionError(f"claim {key!r} does not hold: measured {claim.measured} {claim.uncertainty}, expected {expected}")
        return claim

    def save(self) -> Path:
        """figures/<notebook>_claims.json (with the scale suffix outside the quick scale)."""
        record = {"notebook": self.notebook, "scale": current_scale(), "seconds": time.time() - self.started, "claims": [asdict(c) for c in self.claims]}
        return save_json(record, f"{self.notebook}_claims")


def _records(scale: str) -> list[dict]:
    pattern = "[0-9][0-9]_*_claims" + ("" if scale == "quick" else f"_{scale}") + ".json"
    return [json.loads(p.read_text()) for p in sorted(figures_dir().glob(pattern))]


def table(records: list[dict]) -> str:
    """The summary as a markdown table."""
    lines = [
        "| notebook | claim | paper | measured | uncertainty | expected | result | figure |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        for c in record["claims"]:
            figure = f"[{c['figure']}](figures/{c['figure']}.png)" if c["figure"] and (figures_dir() / f"{c['figure']}.png").exists() else c["figure"]
            cells = [record["notebook"][:2], c["statement"], c["section"], c["measured"], c["uncertainty"], c["expected"], "pass" if c["passed"] else "FAIL", figure]
            lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines)


def summarize() -> str:
    """Gather every notebook's claims at the current scale into figures/claims.md and
    figures/claims.json (scale suffix outside quick); return the markdown."""
    scale = current_scale()
    records = _records(scale)
    if not records:
        raise ValueError(f"no claims recorded at the {scale} scale: run the notebooks first (python -m mdmlib.tools.run_notebooks)")
    total = sum(len(r["claims"]) for r in records)
    failed = sum(not c["passed"] for r in records for c in r["claims"])
    seconds = sum(r["seconds"] for r in records)
    header = (
        f"# Claims checked by the notebooks\n\nScale: {scale}. {total} claims in {len(records)} notebooks, "
        f"{total - failed} hold, {failed} do not. Notebook run time {seconds / 60:.1f} min in all.\n"
        "Each row is a check in a notebook that would have stopped its run had it failed.\n"
    )
    text = header + "\n" + table(records) + "\n"
    save_text(text, "claims")
    save_json({"scale": scale, "total": total, "failed": failed, "seconds": seconds, "notebooks": records}, "claims")
    return text
