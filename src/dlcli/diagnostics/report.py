"""A run's diagnosis as findings: what one is, how it is shown, and diagnostics.json (written once a
run ends, read back by `dl eval`, `dl runs` and `dl diagnose`, which re-analyzes metrics.csv for a run
that has no such file: killed, or older)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from dlcli.errors import UserError
from dlcli.rundir.directory import read_json, write_json
from dlcli.system.numbers import short


@dataclass
class Finding:
    code: str
    severity: str  # warning | error
    epoch: int | None
    evidence: dict
    message: str
    suggestion: str

    def lines(self) -> list[str]:
        return [f"{self.severity}: {self.message}", f"  try: {self.suggestion}"]


def write_findings(run_dir: Path, findings: list[Finding]) -> None:
    write_json(run_dir / "diagnostics.json", {"findings": [asdict(f) for f in findings]})


def read_findings(run_dir: Path) -> list[Finding] | None:
    path = run_dir / "diagnostics.json"
    if not path.is_file():
        return None
    record = read_json(path)
    findings = record.get("findings", []) if isinstance(record, dict) else None
    fields = set(Finding.__dataclass_fields__)
    if not isinstance(findings, list) or not all(isinstance(f, dict) and set(f) == fields for f in findings):
        raise UserError(f"{path} is not a diagnosis dl wrote (each finding holds {', '.join(sorted(fields))}): "
                        "delete it, and dl diagnose analyzes the run's files instead")
    return [Finding(**f) for f in findings]


def diagnosis_lines(findings: list[Finding], skipped: str | None = None, epochs: int | None = None) -> list[str]:
    """The diagnosis as printed; `epochs`: how many the run finished, where known (none finished:
    nothing was checked, and saying so beats listing checks that had nothing to read)."""
    if epochs == 0 and not findings:
        return ["diagnosis: no epoch finished, so nothing was checked"]
    if skipped:
        head = f"diagnosis (the live checks stopped early: {skipped}):"
        return [head, *(line for f in findings for line in f.lines())] if findings else [head + " nothing else found"]
    if not findings:
        return ["diagnosis: nothing wrong found (overfitting, underfitting, learning rate, gradients, dead ReLUs, "
                "outputs, inputs, class balance and the input pipeline were checked)"]
    return ["diagnosis:", *(line for f in findings for line in f.lines())]


def fmt(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(short(v) for v in value)
    return short(value) if value is not None else "-"


def _lower(lr) -> str:
    return format(lr / 10, ".2g") if isinstance(lr, (int, float)) and lr > 0 else "0.01"


def _higher(lr) -> str:
    return format(lr * 10, ".2g") if isinstance(lr, (int, float)) and lr > 0 else "0.1"
