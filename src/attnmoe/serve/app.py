"""The HTTP app (FastAPI): ``POST /predict``, ``GET /model``, ``GET /health``, ``GET /monitor``.

``GET /monitor`` is the monitor page of the live log (as ``attnmoe monitor``).

:func:`create_app` loads the model once; each ``/predict`` checks its rows,
predicts, logs every row when a log is set (all of the request's rows or none:
a log that cannot take them makes the answer a 503, not a half-logged request),
and answers per row the class, the probabilities and the top experts per head.

Requests that arrive together are predicted together (one pass over their rows)
and their records committed together (one transaction); a request is answered
only after its records are committed, so an answered request is a logged one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import uuid
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from .._version import __version__
from ..model.io import read_manifest
from .batching import Batches
from .log import GroupCommit, LogUnavailableError, PredictionLog
from .monitor import DRIFT_THRESHOLD, build_monitor
from .predictor import Predictor, RowError
from .schemas import Health, ModelInfo, PredictRequest, PredictResponse

#: default bounds of one request
MAX_ROWS = 1000
MAX_BYTES = 1 << 20


def _problem(status: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)


def _pydantic_problem(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


def _groups(body: PredictRequest, rows: list, names: Sequence[str]) -> list[dict]:
    """Per row, the group columns named at start, from the row or from ``groups``."""
    extra = body.groups or [{} for _ in rows]
    if len(extra) != len(rows):
        raise RowError("groups", f"expected {len(rows)} objects (one per row), got {len(extra)}")
    return [
        {n: {**row, **more}.get(n) for n in names} for row, more in zip(rows, extra, strict=True)
    ]


class BearerToken:
    """ASGI middleware: an HTTP request without ``Authorization: Bearer <token>`` gets 401.

    Plain ASGI (no per-request task, as ``BaseHTTPMiddleware`` makes): cheap on every request.
    """

    def __init__(self, app, expected: bytes) -> None:
        self.app, self.expected = app, expected

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not secrets.compare_digest(given, self.expected):
                problem = _problem(
                    401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"}
                )
                await problem(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    model_dir: str | Path,
    log: str | PredictionLog | None = None,
    token: str | None = None,
    groups: Sequence[str] = (),
    *,
    max_rows: int = MAX_ROWS,
    max_bytes: int = MAX_BYTES,
) -> FastAPI:
    """The prediction service of the model saved in ``model_dir``.

    Parameters
    ----------
    model_dir
        A folder written by ``attnmoe fit`` / ``save_pretrained`` (checked against
        its manifest as it loads).
    log
        Where every prediction is appended: a path, an SQLAlchemy URL or a
        :class:`PredictionLog`; None logs nothing.
    token
        When set, every request needs ``Authorization: Bearer <token>`` (else 401).
    groups
        Columns logged with each prediction (for audits per group): the model's
        own columns, or extra keys given per row in the request's ``groups``.
    max_rows, max_bytes
        Larger requests get 413.
    """
    predictor = Predictor(model_dir)
    prediction_log = PredictionLog(log) if isinstance(log, str) else log
    if prediction_log is not None:
        predictor.register(prediction_log)
    manifest = read_manifest(predictor.directory) or {"files": {}}
    info = ModelInfo(
        model_id=predictor.model_id,
        columns=predictor.columns,
        classes=predictor.classes,
        attnmoe_version=__version__,
        checksum=predictor.checksum,
        files={name: entry["sha256"] for name, entry in manifest["files"].items()},
    )
    expected = f"Bearer {token}".encode() if token else None

    def predict_batch(batch) -> None:
        answers = predictor.predict_many([prepared for prepared, _ in batch])
        for (_, future), rows in zip(batch, answers, strict=True):
            future.set_result(rows)

    predictions = Batches(predict_batch, "attnmoe-predict")
    writer = None if prediction_log is None else GroupCommit(prediction_log)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        predictions.close()  # finish what is queued; the writer commits it
        if writer is not None:
            writer.close()

    app = FastAPI(title="attnmoe", version=__version__, lifespan=lifespan)
    app.state.predictor, app.state.log = predictor, prediction_log

    if expected is not None:
        app.add_middleware(BearerToken, expected=expected)

    @app.get("/health", response_model=Health)
    def health() -> Health:
        name = None if prediction_log is None else prediction_log.name
        return Health(status="ok", model_id=predictor.model_id, log=name)

    @app.get("/model", response_model=ModelInfo)
    def model() -> ModelInfo:
        return info

    @app.get("/monitor", response_class=HTMLResponse, responses={404: {}, 503: {}})
    def monitor(threshold: float = DRIFT_THRESHOLD):
        """The monitor page (as ``attnmoe monitor LOG --out``) from the live log."""
        if prediction_log is None:
            return _problem(404, "monitor: this server keeps no log (start it with --log)")
        try:
            return HTMLResponse(build_monitor(prediction_log, threshold))
        except DBAPIError as err:
            return _problem(
                503, f"monitor: the log {prediction_log.name} is unavailable: {err.orig}"
            )

    @app.post("/predict", response_model=PredictResponse, responses={413: {}, 422: {}, 503: {}})
    async def predict(request: Request):
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_bytes:
            return _problem(413, f"body: {length} bytes, more than the limit of {max_bytes}")
        raw = await request.body()
        if len(raw) > max_bytes:
            return _problem(413, f"body: {len(raw)} bytes, more than the limit of {max_bytes}")
        try:
            body = PredictRequest.model_validate(json.loads(raw))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return _problem(400, f"body: not JSON ({err})")
        except ValidationError as err:
            return _problem(422, _pydantic_problem(err))
        if len(body.rows) > max_rows:
            return _problem(413, f"rows: {len(body.rows)} rows, more than the limit of {max_rows}")
        try:
            prepared = predictor.prepare(body.rows)
            per_row = _groups(body, body.rows, groups)
        except RowError as err:
            return _problem(422, str(err))
        request_id = uuid.uuid4().hex
        answers = await asyncio.wrap_future(predictions.submit(prepared))
        if writer is not None:
            records = PredictionLog.records(
                answers,
                model_id=predictor.model_id,
                model_checksum=predictor.checksum,
                request_id=request_id,
                groups=per_row,
            )
            try:  # answered only once committed
                await asyncio.wrap_future(writer.submit(records))
            except LogUnavailableError as err:
                return _problem(503, f"{err}; nothing was logged, try again")
        # the fields of PredictResponse, written directly: the answers are built here
        payload = {"request_id": request_id, "predictions": [
            {"row": i, **{k: v for k, v in a.items() if k != "gates"}}  # gates: logged only
            for i, a in enumerate(answers)
        ]}  # fmt: skip
        return JSONResponse(payload, headers={"X-Request-ID": request_id})

    return app
