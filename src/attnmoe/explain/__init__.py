"""Explain, log, audit and report: which expert drove each prediction, and for whom.

- :func:`explain`: per prediction, the gate weight of every expert (word
  location or table column) per head and layer, and its share of the logit;
- :class:`ExpertUsageLog`: streaming, bounded-memory expert-usage statistics;
- :func:`audit`: per-group accuracy, error rates, calibration and expert usage,
  with bootstrap confidence intervals for the gaps;
- :func:`write_report`: one self-contained HTML page for non-specialists
  (``attnmoe report``); :func:`report_data` the page's content as plain data.
"""

from .attribution import explain, top_experts
from .audit import AuditResult, audit, expected_calibration_error
from .report import build_report, report_data, write_report
from .usage import ExpertUsageLog, expert_names, target_gates

__all__ = [
    "AuditResult",
    "ExpertUsageLog",
    "audit",
    "build_report",
    "expected_calibration_error",
    "expert_names",
    "explain",
    "report_data",
    "target_gates",
    "top_experts",
    "write_report",
]
