"""The expert view of one sentence as a self-contained HTML page.

For a text model, every word location is an expert: the page shows, per head,
the location x location gate matrix (row ``i``: how much the prediction at
``i`` listens to each location ``j``) and the strongest experts per word. Works
for a Hugging Face BERT-family model directory (one chosen layer, the model's
own attention re-expressed as gates and experts and checked against it) and
for a model trained by ``attnmoe train-text`` (row ``i`` = location ``i``
masked, as in masked-word prediction).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..files import write_text_atomically
from .pages import Kpi, render, table
from .plots import heatmap


def attnmoe_sentence_view(model_dir: str | Path, sentence: str, k: int = 3) -> dict[str, Any]:
    """Gates of an ``attnmoe train-text`` model for one sentence (final layer, per head).

    Row ``i`` of each head's matrix is the gate behind the prediction at
    location ``i`` when ``i`` alone is masked.
    """
    from ..model import BidirectionalAttention
    from ..text.corpus import load_tokenizer
    from ..text.train import ATTENTION_DIR, VOCAB_NAME
    from ..text.vocab import Vocabulary

    root = Path(model_dir)
    vocab = Vocabulary.load(root / VOCAB_NAME)
    model = BidirectionalAttention.from_pretrained(root / ATTENTION_DIR)
    tokens = load_tokenizer(vocab.meta.get("tokenizer"))(sentence)
    if len(tokens) > model.config.max_len:
        warnings.warn(
            f"the sentence has {len(tokens)} tokens and the model reads {model.config.max_len}: "
            f"the last {len(tokens) - model.config.max_len} are left out",
            stacklevel=2,
        )
        tokens = tokens[: model.config.max_len]
    if not tokens:
        raise ValueError("the sentence has no tokens")
    ids = torch.as_tensor(vocab.encode(tokens), dtype=torch.long).unsqueeze(0)
    rows = []
    with torch.no_grad():
        for i in range(ids.shape[1]):
            masked = ids.clone()
            masked[0, i] = model.config.mask_id
            rows.append(model.attention_weights(masked)[-1][0, :, i])  # (H, L)
    gates = torch.stack(rows, 1)  # (H, L, L)
    return _view_dict(tokens, gates.double().numpy(), k, check=None)


def _view_dict(tokens: list[str], gates: np.ndarray, k: int, check: dict | None) -> dict[str, Any]:
    summed = gates.mean(0)
    top = []
    for i, token in enumerate(tokens):
        order = np.argsort(-summed[i])[:k]
        top += [
            {
                "location": i,
                "token": token,
                "rank": r + 1,
                "expert": int(j),
                "expert_token": tokens[j],
                "mean_gate": float(summed[i, j]),
            }
            for r, j in enumerate(order)
        ]
    return {
        "tokens": tokens,
        "n_heads": int(gates.shape[0]),
        "gates": gates.tolist(),
        "top_experts_summed": top,
        "check": check,
    }


def sentence_view(model_dir: str | Path, sentence: str, layer: int = 0, k: int = 3) -> dict:
    """Plain-data view of a sentence for an attnmoe text model or a Hugging Face model dir."""
    root = Path(model_dir)
    if (root / "vocab.json").is_file():
        view = attnmoe_sentence_view(root, sentence, k)
        view["source"] = f"attnmoe model {root}"
        return view
    if (root.parent / "vocab.json").is_file() and (root / "config.json").is_file():
        # an attnmoe model folder inside a train-text output: its vocabulary is one level up
        raise ValueError(
            f"{root} is a model inside a train-text output; give that output folder "
            f"({root.parent}, the one with vocab.json)"
        )
    from .huggingface import hf_expert_view

    data = hf_expert_view(root, sentence, layer=layer, k=k)
    view = _view_dict(data["tokens"], np.asarray(data["gates"], dtype=float), k, data["check"])
    view["source"] = f"Hugging Face model {root}, layer {layer}"
    return view


def build_sentence_report(view: dict[str, Any], title: str = "Which words each word listens to"):
    """HTML page for :func:`sentence_view`'s data; returns ``(page, numbers)``.

    The page (template ``sentence.html.j2``) also carries ``numbers`` as JSON in
    ``<script id="view-data">``, encoded so that no token can end that element.
    """
    tokens = [f"{i}:{t}" for i, t in enumerate(view["tokens"])]
    gates = np.asarray(view["gates"], dtype=float)
    numbers: dict[str, Any] = {"n_tokens": len(tokens), "n_heads": view["n_heads"]}
    kpis = [
        Kpi("n-tokens", len(tokens), str(len(tokens)), "word locations", "one expert each"),
        Kpi("n-heads", view["n_heads"], str(view["n_heads"]), "heads", "one mixture each"),
    ]
    if view.get("check"):
        check = view["check"]
        error = float(max(check["output_max_abs_error"], check["gate_max_abs_error"]))
        numbers["max_reconstruction_error"] = error
        kpis.append(
            Kpi(
                "max-error",
                error,
                f"{error:.1e}",
                "largest difference",
                "experts x gates vs the model's own attention",
            )
        )
    average = pd.DataFrame(gates.mean(0), index=tokens, columns=tokens)
    page = render(
        "sentence.html.j2",
        title=title,
        source=view.get("source", ""),
        sentence=" ".join(view["tokens"]),
        numbers=numbers,
        numbers_shown=kpis,
        mean_plot=heatmap(
            average, "Mean gate over heads", "expert (location j)", "predicted location i"
        ),
        head_plots=[
            heatmap(pd.DataFrame(g, index=tokens, columns=tokens), f"Head {h}", "expert j", "i")
            for h, g in enumerate(gates)
        ],
        top=table(pd.DataFrame(view["top_experts_summed"])),
    )
    return page, numbers


def write_sentence_report(model_dir, sentence: str, out, layer: int = 0) -> dict[str, Any]:
    """Write the sentence page for ``model_dir`` to ``out``; returns its numbers.

    The page is written whole or not at all (a temporary file beside ``out``,
    renamed into place; see :func:`attnmoe.files.staged_path`).
    """
    page, numbers = build_sentence_report(sentence_view(model_dir, sentence, layer))
    write_text_atomically(out, page)
    return numbers
