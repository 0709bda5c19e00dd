"""The audit's report (`AuditReport`: a table, JSON and a figure), its verdict in words,
and the summary of several reports side by side."""
from __future__ import annotations

import math
from dataclasses import dataclass

from mdmlib.audit.probes import GPT2_VOCAB
from mdmlib.audit.results import ProbeResult, _finite
from mdmlib.stats.significance import ALPHA

BIASED_P = 1e-6  # "differs": the project's threshold for a difference


@dataclass
class AuditReport:
    name: str
    takes: str
    dtype: str
    device: str
    results: list[ProbeResult]
    bias: float
    power: float
    budget: float
    seconds: float
    out_of_time: bool
    eps_fit: dict | None
    threshold_fit: dict | None
    confirm: list[ProbeResult] | None = None
    declared: bool = False

    @property
    def verdict(self) -> str:
        return verdict(self)

    def table(self) -> str:
        lines = [f"audit of {self.name}: {self.takes} in {self.dtype} on {self.device}"]
        head = f"{'probe':44s} {'leave/exact':>12s} {'99% interval':>19s} {'n':>11s} {'p-value':>9s} {'power':>6s} {'T':>6s} {'eps (closed form)':>18s}"
        lines.append(head)
        for r in self.results:
            p = "" if r.p_value is None else f"{r.p_value:9.2g}"
            pw = "" if r.power is None else f"{r.power:6.3f}"
            T = "" if r.temperature is None else f"{r.temperature:6.3f}" if r.temperature > 0 else "     0"
            eps = "" if r.eps_fit is None else _eps_interval_text(r.eps_fit)
            n = "exact law" if r.method == "exact law" else f"{r.n:,}"
            lo, hi = r.ratio_ci
            lines.append(f"{r.probe.label():44s} {r.ratio:12.4f} {f'[{lo:.4f}, {hi:.4f}]':>19s} {n:>11s} {p:>9s} {pw:>6s} {T:>6s} {eps:>18s}")
        compared = [(r, c, v) for r in self.results for c, v in r.compared.items()]
        if compared:
            lines.append("against the exact laws of known lines (on the CPU's generator):")
            for r, c, v in compared:
                lines.append(f"  {r.probe.label()} {c}: {v['leave'] / r.probe.h:.4f} of exact, "
                             f"{'inside' if v['inside'] else 'outside'} the interval, z = {v['z']:+.2f}, p = {v['p_value']:.2g}, "
                             f"power {v['power']:.3f} against {v['alternative']}")
        if self.confirm:
            lines.append("confirmation of the declared law by Monte Carlo:")
            for r in self.confirm:
                lines.append("  " + _confirm_text(r))
        for fit, label in ((self.eps_fit, "closed-form eps"), (self.threshold_fit, "token threshold tau")):
            if fit:
                key = "eps" if "eps" in fit else "tau"
                lines.append(f"best {label}: {fit[key]:.3g} (99% interval {fit['low']:.3g} .. {fit['high']:.3g}; goodness of fit p = {fit['deviance_p']:.2g})")
        spent = f"{self.seconds:.0f} s of a {self.budget:.0f} s budget" + (" (ran out: the powers above are what was reached)" if self.out_of_time else "")
        lines.append(f"Monte Carlo: {spent}" if any(r.method == "monte carlo" for r in self.results) else "")
        lines.append("verdict: " + self.verdict)
        return "\n".join(line for line in lines if line)

    def to_json(self) -> dict:
        return _finite({"name": self.name, "takes": self.takes, "dtype": self.dtype, "device": self.device, "bias": self.bias,
                "power": self.power, "budget_s": self.budget, "seconds": self.seconds, "out_of_time": self.out_of_time,
                "probes": [r.to_json() for r in self.results], "eps_fit": self.eps_fit, "threshold_fit": self.threshold_fit,
                "confirm": [r.to_json() for r in self.confirm] if self.confirm else None, "verdict": self.verdict})

    def figure(self):
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        colors = {"flat": "tab:blue", "zipf": "tab:orange", "peaked": "tab:green"}
        markers = {1_000: "o", GPT2_VOCAB: "s"}
        for r in self.results:
            c = colors[r.probe.mu]
            m = markers.get(r.probe.vocab, "^")
            x = r.probe.h * (1.08 if r.probe.mask == "first" else 1.0)
            lo, hi = r.ratio_ci
            if math.isfinite(r.ratio):
                axes[0].errorbar([x], [r.ratio], yerr=[[max(r.ratio - lo, 0)], [max(hi - r.ratio, 0)]], fmt=m, color=c,
                                 mfc="none" if r.probe.mask == "first" else c, capsize=3)
            if r.temperature is not None:
                tlo, thi = r.temperature_ci
                axes[1].errorbar([x], [r.temperature], yerr=[[r.temperature - tlo], [thi - r.temperature]], fmt=m, color=c, capsize=3)
        for ax, label in ((axes[0], "P(leave) / h  (exact: 1)"), (axes[1], "effective temperature of the token (exact: 1)")):
            ax.axhline(1.0, color="gray", lw=0.8)
            ax.set_xscale("log")
            ax.invert_xaxis()
            ax.set_xlabel("step size h")
            ax.set_ylabel(label)
        for mu, c in colors.items():
            axes[0].plot([], [], "o", color=c, label=f"{mu} mu")
        for V, m in markers.items():
            axes[0].plot([], [], m, color="k", mfc="none", label=f"V = {V:,}")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{self.name} ({self.takes}, {self.dtype}, {self.device}): 99% intervals", fontsize=10)
        fig.tight_layout()
        return fig


def _eps_interval_text(fit) -> str:
    best, lo, hi = fit
    if lo == hi:
        return _eps_text(best)
    if lo == 0:
        return "<= " + _eps_text(hi) if math.isfinite(hi) else "any"
    return f"{_eps_text(lo)} .. {_eps_text(hi)}"


def _eps_text(eps: float) -> str:
    if eps == 0:
        return "none (exact)"
    if not math.isfinite(eps):
        return "beyond 2^-8"
    return f"2^{math.log2(eps):.1f}"


def _confirm_text(r: ProbeResult) -> str:
    law = r.compared.get("declared", {})
    return (f"{r.probe.label()}: {r.leaves:,} leaves in {r.n:,} = {r.ratio:.4f} of exact; declared law {law.get('leave', math.nan) / r.probe.h:.4f}, "
            f"z = {law.get('z', math.nan):+.2f}, power {law.get('power', math.nan):.3f} against {law.get('alternative', '')}")


def verdict(report: AuditReport) -> str:
    """The conclusion in words, from the probes' leave rates and temperatures."""
    res = report.results
    if all(r.method == "exact law" for r in res):
        # the sampler is judged against the categorical law of its input as it holds it
        off = [r for r in res if abs(r.leave - r.input_leave) > 1e-6 * r.input_leave + r.unresolved]
        cold = [r for r in res if r.temperature is not None and abs(r.temperature - 1) > 1e-4]
        if not off and not cold:
            rounding = max(abs(r.input_leave / r.probe.h - 1) for r in res)
            tail = f"; rounding its input to {report.dtype} moves the leave rate by up to {rounding:.1e} of itself" if rounding > 1e-6 else ""
            return ("exact: its exact law leaves the mask at the exact rate of its input (within 1e-6) and draws tokens at "
                    f"temperature 1 at every probe{tail}")
        parts = []
        if off:
            worst = max(off, key=lambda r: abs(math.log(max(r.ratio, 1e-300))))
            where = f"at {worst.probe.mu} h = {worst.probe.h:g}, V = {worst.probe.vocab:,} (exact law)"
            parts.append(f"biased: never leaves the mask {where}" if worst.leave == 0 else
                         f"biased: leaves the mask at {worst.ratio:.3g} of the exact rate {where}")
        if cold:
            worst = min(cold, key=lambda r: (r.probe.mu != "zipf", r.temperature))
            T = "0 (only the likeliest tokens)" if worst.temperature == 0 else f"{worst.temperature:.3f}"
            parts.append(f"draws tokens at an effective temperature of {T} at {worst.probe.mu} h = {worst.probe.h:g}, V = {worst.probe.vocab:,}")
        return "; ".join(parts)
    mc = [r for r in res if r.method == "monte carlo" and r.n > 0]
    if not mc:
        return "no draws were made: raise the time budget"
    biased = [r for r in mc if r.p_value is not None and r.p_value < BIASED_P]
    hot = [r for r in mc if r.temperature_z is not None and math.isfinite(r.temperature_z) and abs(r.temperature_z) > 5]
    if biased or hot:
        parts = []
        if biased:
            worst = max(biased, key=lambda r: abs(math.log(max(r.ratio, 1e-300))))
            lo, hi = worst.ratio_ci
            parts.append(f"biased: leaves the mask at {worst.ratio:.3g} (99% interval {lo:.3g} .. {hi:.3g}) of the exact rate at "
                         f"{worst.probe.mu} h = {worst.probe.h:g}, V = {worst.probe.vocab:,} (p = {worst.p_value:.2g})")
        if hot:
            worst = max(hot, key=lambda r: (r.probe.mu == "zipf", abs(r.temperature_z)))
            parts.append(f"draws tokens at an effective temperature of {worst.temperature:.3f} (99% interval {worst.temperature_ci[0]:.3f} .. "
                         f"{worst.temperature_ci[1]:.3f}, z = {worst.temperature_z:+.1f}) at {worst.probe.mu} h = {worst.probe.h:g}, V = {worst.probe.vocab:,}")
        return "; ".join(parts)
    doubtful = [r for r in mc if r.p_value is not None and r.p_value < ALPHA]
    best = min(mc, key=lambda r: r.detectable)
    if not math.isfinite(best.detectable):
        return "inconclusive: the draws made cannot detect even a doubling or a vanishing of the leave rate (raise the time budget)"
    detect = (f"no bias larger than {best.detectable:.1%} of the leave rate detectable at {report.power:.0%} power "
              f"({best.probe.mu} h = {best.probe.h:g}, V = {best.probe.vocab:,}, n = {best.n:,})")
    if doubtful:
        worst = min(doubtful, key=lambda r: r.p_value)
        return f"inconclusive: p = {worst.p_value:.2g} at {worst.probe.label().strip()} (between {BIASED_P:g} and {ALPHA:g}); {detect}"
    return f"exact within the power of the test: {detect}"


def summary_rows(reports: list[AuditReport]) -> list[dict]:
    """One row per audited line: leave/exact and temperature at each probe, with intervals."""
    rows = []
    for rep in reports:
        row = {"line": rep.name, "takes": rep.takes, "dtype": rep.dtype, "verdict": rep.verdict, "probes": []}
        for r in rep.results:
            row["probes"].append({"probe": r.probe.key(), "method": r.method, "how": r.law_how, "ratio": r.ratio, "ratio_ci": list(r.ratio_ci),
                                  "temperature": r.temperature, "temperature_ci": r.temperature_ci, "eps": r.eps_fit, "n": r.n})
        rows.append(_finite(row))
    return rows


def summary_table(reports: list[AuditReport]) -> str:
    """leave/exact at each probe (mask last) and the Zipf temperature, one line per report."""
    probes = [r.probe for r in reports[0].results]
    head = f"{'line':34s} {'input':15s}" + "".join(f" {p.mu[:4] + ' ' + format(p.h, '.0e'):>12s}" for p in probes)
    head += "".join(f" {'T ' + format(p.h, '.0e'):>9s}" for p in probes if p.mu == "zipf")
    lines = [head]
    for rep in reports:
        cells = []
        for r in rep.results:
            lo, hi = r.ratio_ci
            cells.append(f"{r.ratio:12.4f}" if (hi - lo) / 2 < 5e-5 else f"{f'{r.ratio:.4f}±{(hi - lo) / 2:.0e}':>12s}")
        temps = [f"{r.temperature:9.3f}" if r.temperature is not None else f"{'':9s}" for r in rep.results if r.probe.mu == "zipf"]
        lines.append(f"{rep.name:34s} {rep.takes + ' ' + rep.dtype:15s}" + " ".join([""] + cells) + " ".join([""] + temps))
    return "\n".join(lines)
