"""Serve a saved classifier over HTTP and log every prediction to a database.

- :func:`create_app`: the FastAPI app (``attnmoe serve``): ``POST /predict``,
  ``GET /model``, ``GET /health``, an optional bearer token;
- :class:`Predictor`: a saved classifier that checks request rows and answers
  class, probabilities and top experts per head;
- :class:`PredictionLog`: the prediction log (SQLite in WAL mode, or any
  SQLAlchemy URL), with labels that arrive later;
- :func:`write_monitor`: the log as one HTML page per day (``attnmoe monitor``):
  predictions, expert usage, drift alerts, accuracy once labels arrive.

Needs the ``serve`` extra (``pip install attnmoe[serve]``).
"""

from .app import create_app
from .log import SCHEMA_VERSION, LogUnavailableError, PredictionLog
from .monitor import build_monitor, monitor_data, write_monitor
from .predictor import Predictor, RowError

__all__ = [
    "SCHEMA_VERSION",
    "LogUnavailableError",
    "PredictionLog",
    "Predictor",
    "RowError",
    "build_monitor",
    "create_app",
    "monitor_data",
    "write_monitor",
]
