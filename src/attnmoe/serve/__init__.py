"""Serve a saved classifier over HTTP and log every prediction to a database.

- :func:`create_app`: the FastAPI app (``attnmoe serve``): ``POST /predict``,
  ``GET /model``, ``GET /health``, ``GET /monitor``, an optional bearer token;
  requests that arrive together are predicted together (``batching``) and
  logged in one transaction (:class:`~attnmoe.serve.log.GroupCommit`);
- :class:`Predictor`: a saved classifier that checks request rows and answers
  class, probabilities and top experts per head; one-layer models from
  precomputed experts-form tables (``tables``);
- :class:`PredictionLog`: the prediction log (SQLite in WAL mode, or any
  SQLAlchemy URL), with labels that arrive later and each model's training
  baseline of the gates;
- :func:`write_monitor`: the log as one HTML page per day (``attnmoe monitor``):
  predictions, expert usage, drift against training, accuracy and accuracy per
  group once labels arrive.

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
