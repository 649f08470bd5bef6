"""The package's public names: everything a user builds a report from is importable
from :mod:`attnmoe.explain`."""

import attnmoe.explain as explain
from attnmoe.explain import report


def test_report_data_is_exported():
    assert "report_data" in explain.__all__
    assert explain.report_data is report.report_data
    assert all(hasattr(explain, name) for name in explain.__all__)
