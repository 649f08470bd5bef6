"""The HTTP API's JSON bodies (pydantic): what ``/predict``, ``/model`` and ``/health`` answer.

Requests are checked against the model itself (:meth:`Predictor.frame
<attnmoe.serve.Predictor.frame>`), which knows each column's type; these models
describe the answers and the request's outer shape.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PredictRequest(BaseModel):
    """``{"rows": [{column: value, ...}, ...]}``; a null value is a missing cell."""

    model_config = ConfigDict(extra="forbid")
    rows: list[Any] = Field(min_length=1)
    groups: list[dict[str, Any]] | None = Field(
        default=None, description="per row, the group columns to log (when not among its columns)"
    )


class Expert(BaseModel):
    """One expert (a column and its value) of one head: its gate and share of the logit."""

    feature: str
    value: str
    gate: float
    share: float


class RowPrediction(BaseModel):
    """One row's answer."""

    model_config = ConfigDict(populate_by_name=True)
    row: int
    class_: Any = Field(alias="class", serialization_alias="class")
    probability: float
    probabilities: dict[str, float]
    experts: dict[str, list[Expert]]


class PredictResponse(BaseModel):
    request_id: str
    predictions: list[RowPrediction]


class ModelInfo(BaseModel):
    model_id: str
    columns: list[str]
    classes: list[Any]
    attnmoe_version: str
    checksum: str | None = Field(description="SHA-256 of manifest.json")
    files: dict[str, str] = Field(description="file -> SHA-256, from manifest.json")


class Health(BaseModel):
    status: str
    model_id: str
    log: str | None


class Problem(BaseModel):
    """An error answer: ``detail`` names the field at fault."""

    detail: str
