"""``attnmoe pilot``: attnmoe against the models a team would otherwise use, on its own table.

One table, one shift definition (segments, a time cutoff or a second file of new
rows), a budget: every model is fitted on the training rows with several seeds
and measured on the new rows, its effect (accuracy, macro-F1, log loss,
calibration, per group) and its cost (fit and prediction time, peak memory, size
on disk) side by side; attnmoe's expert and audit views show what drives it and
what moved. Modules, in the order a pilot runs:

- :mod:`~attnmoe.pilot.split`: the training and new rows (:func:`make_split`);
- :mod:`~attnmoe.pilot.plan`: models, seeds, the cost-knob sweep per budget;
- :mod:`~attnmoe.pilot.run`: one (model, seed) measured; resumable runs;
- :mod:`~attnmoe.pilot.results`: means, gaps, the verdict, the expert views;
- :mod:`~attnmoe.pilot.page`: ``pilot.html`` and the comparison page;
- :mod:`~attnmoe.pilot.study`: all of it in one call (:func:`pilot`, :func:`compare`);
- :mod:`~attnmoe.pilot.examples`: three pilots on shipped data (the demo, the docs).
"""

from .plan import BUDGETS, MODELS
from .split import PilotSplit, make_split
from .study import compare, pilot, read_pilot

__all__ = ["BUDGETS", "MODELS", "PilotSplit", "compare", "make_split", "pilot", "read_pilot"]
