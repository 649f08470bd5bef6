"""One self-contained HTML page that explains a fitted classifier to non-specialists.

No network is needed to build or to view it: plots are PNGs drawn with
matplotlib's Agg backend and embedded as base64, the style sheet and the one
small script are inline. Every key number sits in an element with an ``id``
and a ``data-value`` attribute holding the unrounded value, so the page can be
checked by a machine (the tests parse it from a headless browser's DOM).
"""

from __future__ import annotations

import base64
import html
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..tabular.encoding import label_indices
from .attribution import explain, top_experts
from .audit import AuditResult, audit, expected_calibration_error
from .usage import ExpertUsageLog, expert_names, target_gates

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;
background:#f6f7f9;color:#1d232b;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:1.9em;margin:.2em 0}h2{margin-top:1.8em;border-bottom:2px solid #d8dde3;
padding-bottom:.2em}section{background:#fff;border-radius:8px;padding:4px 20px 16px;
margin:18px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.kpis{display:flex;flex-wrap:wrap;gap:14px}.kpi{background:#fff;border-radius:8px;
padding:12px 18px;min-width:150px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.kpi b{display:block;font-size:1.7em}.kpi small{color:#5b6670}
table{border-collapse:collapse;margin:8px 0;font-size:.92em}
th,td{border-bottom:1px solid #e3e7eb;padding:4px 10px;text-align:left}
th{background:#eef1f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.flag{color:#b3261e;font-weight:600}.ok{color:#1b7f3b}.muted{color:#5b6670}
img{max-width:100%;height:auto}.plots{display:flex;flex-wrap:wrap;gap:16px}
.pos{color:#1b7f3b}.neg{color:#b3261e}
"""

# Records script errors and image loading into the DOM: a headless browser's
# dumped DOM then says whether the page worked, without a debugging protocol.
_SCRIPT = """
(function(){
  var errors=[];
  window.addEventListener('error',function(e){
    errors.push(String(e.message||e.type));
    document.documentElement.setAttribute('data-js-errors',errors.join(' | '));
  },true);
  window.addEventListener('load',function(){
    var imgs=document.images,ok=0;
    for(var k=0;k<imgs.length;k++){if(imgs[k].complete&&imgs[k].naturalWidth>0){ok++;}}
    document.body.setAttribute('data-images-loaded',ok+'/'+imgs.length);
    document.body.setAttribute('data-ready','1');
  });
})();
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


class _Html(str):
    """Markup this module wrote (its values escaped): a table cell takes it as is.

    Every other cell is escaped, whatever it looks like: column names, labels and
    group values come from the user's data and may hold ``<``, ``&`` or a script."""


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display, no GUI toolkit
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _number(name: str, value: float, shown: str, label: str, hint: str = "") -> str:
    return (
        f'<div class="kpi"><small>{_esc(label)}</small>'
        f'<b id="{name}" data-value="{value!r}">{_esc(shown)}</b>'
        f'<small class="muted">{_esc(hint)}</small></div>'
    )


def _pct(value: float) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{100 * value:.1f}%"


def _table(frame: pd.DataFrame, numeric_format: str = "{:.3f}", row_attrs=None) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    body = []
    for k, (_, row) in enumerate(frame.iterrows()):
        cells = []
        for value in row:
            if isinstance(value, (float, np.floating)):
                cells.append(f'<td class="num">{numeric_format.format(value)}</td>')
            elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                cells.append(f'<td class="num">{value}</td>')
            else:
                cells.append(f"<td>{value if isinstance(value, _Html) else _esc(value)}</td>")
        attrs = row_attrs(k, row) if row_attrs else ""
        body.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _labels(values) -> list[str]:
    """Data values as plot labels, drawn as written: matplotlib reads ``$...$`` as math."""
    return [str(v).replace("$", r"\$") for v in values]


def _heatmap(matrix: pd.DataFrame, title: str, xlabel: str, ylabel: str) -> str:
    fig, ax = _figure(1.2 + 0.9 * matrix.shape[1], 1.0 + 0.45 * matrix.shape[0])
    image = ax.imshow(matrix.to_numpy(dtype=float), cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(matrix.shape[1]), _labels(matrix.columns), rotation=35, ha="right")
    ax.set_yticks(range(matrix.shape[0]), _labels(matrix.index))
    for (r, c), value in np.ndenumerate(matrix.to_numpy(dtype=float)):
        ax.text(c, r, f"{value:.2f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(image, ax=ax, label="mean gate weight")
    return _png(fig)


def _reliability(proba: np.ndarray, correct: np.ndarray, bins: int = 10) -> str:
    conf = proba.max(1)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    fig, ax = _figure(4.6, 4.2)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    centers, accs, sizes = [], [], []
    for b in range(bins):
        rows = which == b
        if rows.any():
            centers.append(conf[rows].mean())
            accs.append(correct[rows].mean())
            sizes.append(rows.sum())
    ax.scatter(centers, accs, s=20 + 200 * np.asarray(sizes) / max(1, len(conf)), zorder=3)
    ax.plot(centers, accs, color="C0", label="this model")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (probability of the predicted class)")
    ax.set_ylabel("share correct")
    ax.set_title("Reliability: are the probabilities honest?")
    ax.legend(loc="upper left")
    return _png(fig)


def _confusion(y_idx: np.ndarray, pred: np.ndarray, classes: list[str]) -> tuple[str, np.ndarray]:
    n = len(classes)
    matrix = np.zeros((n, n), dtype=int)
    known = y_idx >= 0
    np.add.at(matrix, (y_idx[known], pred[known]), 1)
    fig, ax = _figure(1.5 + 0.8 * n, 1.2 + 0.7 * n)
    ax.imshow(matrix, cmap="Blues")
    for (r, c), value in np.ndenumerate(matrix):
        ax.text(c, r, str(value), ha="center", va="center")
    ax.set_xticks(range(n), _labels(classes))
    ax.set_yticks(range(n), _labels(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    return _png(fig), matrix


def _shift_bars(before: pd.Series, after: pd.Series) -> str:
    fig, ax = _figure(1.5 + 0.9 * len(before), 3.6)
    x = np.arange(len(before))
    ax.bar(x - 0.2, before.to_numpy(), width=0.4, label="training-like data (DATA)")
    ax.bar(x + 0.2, after.to_numpy(), width=0.4, label="new data (--shift-data)")
    ax.set_xticks(x, _labels(before.index), rotation=35, ha="right")
    ax.set_ylabel("mean gate weight")
    ax.set_title("Which columns the model listens to, before and after")
    ax.legend()
    return _png(fig)


def _pick_rows(X: pd.DataFrame, pred: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` distinct rows, taken in turn from each predicted class."""
    distinct = np.flatnonzero(~X.astype(str).duplicated().to_numpy())
    by_class = [distinct[pred[distinct] == c] for c in np.unique(pred[distinct])]
    picked: list[int] = []
    for k in range(max((len(b) for b in by_class), default=0)):
        for rows in by_class:
            if k < len(rows) and len(picked) < n:
                picked.append(int(rows[k]))
    return np.array(sorted(picked), dtype=int)


def _plain_words(clf) -> str:
    cfg = clf.models_[0].config
    names = expert_names(clf)[:-1]
    sparse = (
        f"Each prediction uses only its <b>{cfg.top_k}</b> strongest experts (top_k)."
        if cfg.top_k
        else "Every prediction may use every expert (no top_k limit)."
    )
    link = (
        "then a small fixed network (LayerNorm and feed-forward) turns the mix into scores"
        if cfg.block == "bert"
        else "and the mix is turned into scores by a plain dot product (exactly additive)"
    )
    return f"""
<p>The model reads each row as a short sentence: every column is a word position
and its value is the word. It predicts the target by hiding it and asking the
other columns. Each column is an <b>expert</b> ({len(names)} columns:
{_esc(", ".join(names))}); the target's own slot is one more expert that only ever
sees "hidden".</p>
<p>For every row a <b>gate</b> decides how much to listen to each expert: the gate
weights of one head add up to 100%. There are <b>{cfg.n_heads}</b> such gates
(heads) in each of <b>{cfg.n_layers}</b> layer(s) and <b>{len(clf.models_)}</b>
ensemble member(s); each expert offers a vector that depends on its value, the
gate mixes them, {link}. {sparse}</p>
<p>So "why this prediction?" has two parts: <i>which columns the gate chose</i>
(gate weight) and <i>what their values suggest</i> (their share of the score).</p>
"""


def build_report(
    clf,
    data: pd.DataFrame,
    target: str | None = None,
    group: str | None = None,
    shift_data: pd.DataFrame | None = None,
    *,
    n_explained: int = 5,
    n_bootstrap: int = 200,
    threshold: float = 0.05,
    random_state: int = 0,
    title: str = "attnmoe model report",
) -> tuple[str, dict[str, Any]]:
    """The report page and the numbers it shows.

    Parameters
    ----------
    clf
        A fitted :class:`~attnmoe.tabular.AttentionMoEClassifier`.
    data
        Rows with the model's columns; optionally the target and a group column.
    target
        Column of true labels (enables accuracy, calibration, confusion, audit).
    group
        Column to audit by (need not be a model feature).
    shift_data
        New rows to compare expert usage (and accuracy, with ``target``) against.
    n_explained
        Rows whose top experts are listed.
    n_bootstrap, threshold, random_state
        Passed to :func:`~attnmoe.explain.audit`.

    Returns
    -------
    html : str
    numbers : dict
        The key numbers, as placed in the page's ``data-value`` attributes.
    """
    names = expert_names(clf)
    features = list(names[:-1])
    for frame, what in ((data, "DATA"), (shift_data, "--shift-data")):
        if frame is None:
            continue
        missing = [c for c in features if c not in frame.columns]
        if missing:
            raise ValueError(f"{what} lacks the model's columns {missing}")
    for column in (target, group):
        if column is not None and column not in data.columns:
            raise ValueError(f"DATA has no column {column!r}")
    X = data[features]
    proba = clf.predict_proba(X)
    gates = target_gates(clf, X)
    pred = proba.argmax(1)
    classes = [str(c) for c in clf.classes_]
    predicted = np.asarray(classes, dtype=object)[pred]
    log = ExpertUsageLog.for_classifier(clf)
    log.update(gates, predicted=predicted, group=None if group is None else data[group])
    numbers: dict[str, Any] = {"n_rows": len(data)}

    kpis = [_number("n-rows", len(data), f"{len(data):,}", "rows scored")]
    sections = []

    # -- the model in plain words
    sections.append(f"<section><h2>The model in plain words</h2>{_plain_words(clf)}</section>")

    # -- expert usage
    usage_by_class = log.usage("class").reindex(
        [c for c in classes if c in log.usage("class").index]
    )
    overall = log.usage("overall").iloc[0]
    numbers["top_expert"] = str(overall.idxmax())
    top = _esc(numbers["top_expert"])
    usage_rows = pd.DataFrame(
        {
            "column (expert)": overall.index,
            "mean gate weight": overall.to_numpy(),
            "strongest expert in (share of rows)": [
                log._stats["overall"]["all"][2][j] / max(1, log.n_rows) for j in range(len(names))
            ],
        }
    )
    sections.append(
        "<section><h2>Which columns the model listens to</h2>"
        "<p>Each cell is the average gate weight (over rows and heads) that the column "
        "received when the model predicted that class. Bright cells: columns the "
        "model relies on for that answer.</p>"
        + _heatmap(usage_by_class.T, "Expert usage by predicted class", "predicted class", "column")
        + _table(usage_rows)
        + f'<p>Most used column overall: <b id="top-expert" data-value="{top}">{top}</b>.</p>'
        "</section>"
    )

    # -- individual rows (none asked for: no section)
    if n_explained > 0:
        chosen_rows = _pick_rows(X, pred, n_explained)
        chosen = X.iloc[chosen_rows]
        frame = explain(clf, chosen)
        ranked = top_experts(frame, n=3)
        exact = clf.models_[0].config.block == "pure"
        share_name = "share of the score" + ("" if exact else " (approx.)")
        rows_html = []
        for r in range(len(chosen)):
            picked = ranked[ranked["row"] == r]
            parts = []
            for _, e in picked.iterrows():
                css = "pos" if e["share"] >= 0 else "neg"
                parts.append(
                    f"{_esc(e['feature'])} = {_esc(e['value'])} "
                    f'<span class="{css}">({e["share"]:+.2f}, gate {e["gate"]:.2f})</span>'
                )
            source = int(chosen_rows[r])
            truth = "" if target is None else str(data[target].iloc[source])  # _table escapes
            rows_html.append(
                {
                    "row": source,
                    "predicted": predicted[source],
                    "probability": float(proba[source].max()),
                    **({"true": truth} if target is not None else {}),
                    "top experts (" + share_name + ", gate)": _Html(
                        "<span>" + "; ".join(parts) + "</span>"
                    ),
                }
            )
        sections.append(
            "<section><h2>Why individual rows got their prediction</h2>"
            "<p>For a few distinct rows (spread over the predicted classes): the three "
            "columns with the largest share of the predicted class's score. Positive "
            "shares push towards the prediction, negative ones away from it; the gate "
            "says how much the model listened.</p>"
            + _table(pd.DataFrame(rows_html))
            + (
                ""
                if exact
                else "<p class='muted'>Bert-form model: the shares are an "
                "integrated-gradients approximation through the fixed link; the gates "
                "and the experts' vectors are exact.</p>"
            )
            + "</section>"
        )

    # -- accuracy, calibration, confusion
    result: AuditResult | None = None
    if target is not None:
        labelled = ~pd.isna(data[target]).to_numpy()  # rows without a label are not scored
        if not labelled.any():
            raise ValueError(f"the target column {target!r} holds no labels")
        if not labelled.all():
            warnings.warn(
                f"{int((~labelled).sum())} of {len(data)} rows have no {target!r} label and are "
                "left out of accuracy, calibration and the audit",
                stacklevel=2,
            )
        y_idx = label_indices(clf.classes_, data[target])[labelled]
        numbers["n_labelled"] = len(y_idx)
        correct = pred[labelled] == y_idx
        accuracy = float(correct.mean())
        ece = expected_calibration_error(proba[labelled].max(1), correct)
        numbers.update(accuracy=accuracy, ece=ece)
        kpis.append(
            _number("accuracy", accuracy, _pct(accuracy), "accuracy", "share of rows right")
        )
        kpis.append(
            _number("ece", ece, f"{ece:.3f}", "calibration error (ECE)", "0 = honest probabilities")
        )
        confusion_png, matrix = _confusion(y_idx, pred[labelled], classes)
        numbers["confusion"] = matrix.tolist()
        left_out = len(data) - len(y_idx)
        sections.append(
            "<section><h2>How often it is right</h2>"
            f"<p>Accuracy on these {len(y_idx):,} rows: <b>{_pct(accuracy)}</b>"
            + (f" ({left_out:,} rows without a true label left out)" if left_out else "")
            + ". Calibration: when the model says 80%, is it right 80% of the time? Points "
            "on the dashed line mean yes.</p>"
            f'<div class="plots">{_reliability(proba[labelled], correct)}{confusion_png}</div>'
            f'<div id="confusion" data-value="{_esc(matrix.tolist())}"></div></section>'
        )
        if group is not None:
            result = audit(  # the labelled rows only: already warned about the others
                clf,
                X[labelled],
                data[target][labelled],
                group=data[group].to_numpy()[labelled],
                threshold=threshold,
                n_bootstrap=n_bootstrap,
                random_state=random_state,
                proba=proba[labelled],
                gates=gates[labelled],
            )

    # -- shift
    if shift_data is not None:
        X_new = shift_data[features]
        gates_new = target_gates(clf, X_new)
        before = pd.Series(gates.mean((0, 1)), index=names)
        after = pd.Series(gates_new.mean((0, 1)), index=names)
        tv = 0.5 * float(np.abs(before - after).sum())
        numbers["shift_usage_tv"] = tv
        kpis.append(
            _number(
                "shift-usage-tv", tv, f"{tv:.3f}", "expert-usage shift", "0 = same columns used"
            )
        )
        moved = pd.DataFrame(
            {
                "column": names,
                "before": before.to_numpy(),
                "after": after.to_numpy(),
                "change": (after - before).to_numpy(),
            }
        ).sort_values("change", key=np.abs, ascending=False)
        extra = ""
        if target is not None and target in shift_data.columns and shift_data[target].notna().any():
            pred_new = clf.predict_proba(X_new).argmax(1)
            labelled_new = ~pd.isna(shift_data[target]).to_numpy()
            y_new = label_indices(clf.classes_, shift_data[target])
            shift_accuracy = float((pred_new == y_new)[labelled_new].mean())
            numbers["shift_accuracy"] = shift_accuracy
            kpis.append(
                _number(
                    "shift-accuracy", shift_accuracy, _pct(shift_accuracy), "accuracy on new data"
                )
            )
            unlabelled = int((~labelled_new).sum())
            extra = (
                f"<p>Accuracy on the new data: <b>{_pct(shift_accuracy)}</b>"
                + (f" ({unlabelled:,} rows without a label left out)" if unlabelled else "")
                + ".</p>"
            )
        sections.append(
            "<section><h2>What changes on new data</h2>"
            f"<p>The new data has {len(shift_data):,} rows. The distance between the two "
            f"usage profiles (total variation, 0 = identical, 1 = disjoint) is "
            f"<b>{tv:.3f}</b>. Large moves mean the model now relies on different "
            "columns: check that these columns are still measured the same way.</p>"
            + _shift_bars(before, after)
            + _table(moved)
            + extra
            + "</section>"
        )

    # -- bias audit
    if group is not None:
        usage_group = log.usage("group")
        body = (
            "<p>Does the model, or its choice of experts, treat groups differently? "
            f"Groups by <b>{_esc(group)}</b>.</p>"
            + _heatmap(usage_group.T, "Expert usage by group", "group", "column")
        )
        if result is not None:
            flagged = int(result.gaps["flagged"].sum())
            numbers["audit_flagged"] = flagged
            numbers["group_accuracy"] = result.groups["accuracy"].to_dict()
            kpis.append(
                _number(
                    "audit-flagged", flagged, str(flagged), "audit flags", "gaps above the limit"
                )
            )
            groups_table = result.groups.reset_index()
            group_rows = "".join(
                f'<tr><td>{_esc(g)}</td><td class="num">{n}</td>'
                f'<td class="num group-accuracy" data-group="{_esc(g)}" data-value="{a!r}">'
                f"{_pct(a)}</td>"
                f'<td class="num">{_pct(fnr)}</td><td class="num">{_pct(fpr)}</td>'
                f'<td class="num">{ece:.3f}</td></tr>'
                for g, n, a, fnr, fpr, ece in groups_table[
                    ["group", "n", "accuracy", "false_negative_rate", "false_positive_rate", "ece"]
                ].itertuples(index=False)
            )
            gaps = result.gaps.copy()
            gaps["flagged"] = [
                _Html('<span class="flag">FLAG</span>' if f else '<span class="ok">ok</span>')
                for f in gaps["flagged"]
            ]
            gaps["interval"] = [
                f"[{lo:+.3f}, {hi:+.3f}]" for lo, hi in zip(gaps.ci_low, gaps.ci_high, strict=True)
            ]
            gaps = gaps[["group", "metric", "value", "best_group", "gap", "interval", "flagged"]]
            verdict = (
                f'<p class="flag">{flagged} gap(s) flagged.</p>'
                if flagged
                else '<p class="ok">No gap above the limits.</p>'
            )
            body += (
                "<table><thead><tr><th>group</th><th>rows</th><th>accuracy</th>"
                "<th>missed (FNR)</th><th>false alarms (FPR)</th><th>ECE</th></tr></thead>"
                f"<tbody>{group_rows}</tbody></table>"
                f"<p>Gap = how much worse than the best group ({result.confidence:.0%} "
                f"bootstrap interval, {result.n_bootstrap} resamples, seed {random_state}). "
                f"Flagged when a gap exceeds {threshold:g} and its interval excludes zero; "
                f"usage distance flagged when its whole interval exceeds "
                f"{result.usage_threshold:g}.</p>"
                + verdict
                + _table(gaps)
                + "".join(f"<p class='muted'>{_esc(n)}</p>" for n in result.notes)
            )
        else:
            body += "<p class='muted'>Give --target to audit accuracy and calibration.</p>"
        sections.append(f"<section><h2>Bias audit</h2>{body}</section>")

    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title><style>{_STYLE}</style>
<script>{_SCRIPT}</script></head>
<body><main>
<h1>{_esc(title)}</h1>
<p class="muted">A continuous-word-experts classifier (attnmoe): {len(features)} columns,
{len(classes)} classes ({_esc(", ".join(classes))}). Everything on this page was
computed from the model and the data file; no network was used.</p>
<div class="kpis">{"".join(kpis)}</div>
{"".join(sections)}
</main></body></html>
"""
    return page, numbers


def write_report(clf, data: pd.DataFrame, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Write :func:`build_report`'s page to ``out``; returns its numbers."""
    page, numbers = build_report(clf, data, **kwargs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return numbers
