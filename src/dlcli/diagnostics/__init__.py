"""Diagnostics: which classic training pitfall a run fell into, and what to try.

`evidence` gathers what a run measured live (the Diagnostics callback), `checks` turns that and
metrics.csv into findings (one function per pitfall), `report` writes, reads and shows them.
`dl diagnose` and `dl runs` import only `report` and `checks`: no torch.
"""

from dlcli.diagnostics.checks import analyze, diagnose_run, thresholds  # noqa: F401  (the package's public names)
from dlcli.diagnostics import forecast  # noqa: F401  (registers the forecast's check after the others)
from dlcli.diagnostics import language  # noqa: F401  (registers the language model's check after the others)
from dlcli.diagnostics import recurrent  # noqa: F401  (registers the recurrent networks' check after the others)
from dlcli.diagnostics.evidence import Diagnostics, Evidence  # noqa: F401
from dlcli.diagnostics.report import Finding, diagnosis_lines, read_findings, write_findings  # noqa: F401
