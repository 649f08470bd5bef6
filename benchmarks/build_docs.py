"""Assemble docs/benchmarks.md from the results files under benchmarks/results/.

Usage: .venv/bin/python benchmarks/build_docs.py

Each results file is written by the benchmark script its header names (with the
exact command and machine); this script only stitches them together in order,
so every number in docs/benchmarks.md comes from a committed script.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
DOC = ROOT.parent / "docs" / "benchmarks.md"

INTRO = """# Benchmarks

Every number here was written by a committed script under `benchmarks/` (or by an
`attnmoe bench ...` command); each section names its command and machine. This
page is assembled by `benchmarks/build_docs.py` from `benchmarks/results/`.
The machine for most runs is the project's 2-core Intel Xeon VM (24 GiB, no GPU),
often shared with other jobs while these ran: read the ratios measured side by
side in one run, not absolute rates.
"""

# (title, results file, note written here about what the numbers say)
SECTIONS: list[tuple[str, str, str]] = [
    ("Core: masked predictions per second", "masking.md", ""),
    (
        "Tabular: the paper's simulation and auto-mpg (Tables 3-5), 20 seeds",
        "tabular_20seeds/summary.md",
        "attnmoe with the paper's configuration (the defaults of `AttentionMoEClassifier`: "
        "batch 128, 200 epochs, one model; trained by the fused engine), on all 20 seeds of "
        "each simulation setting and 10 auto-mpg seeds, scored against the paper's per-seed "
        "results on the very same seeds and data (the generator is exact: logistic regression "
        "fitted the paper's way reproduces all 240 published per-seed results, "
        "`tests/bench/test_datasets.py`, slow). Nothing was tuned: this is the first and only "
        "run of this configuration on these seeds.\n\n"
        "Reading: our means track the paper's attention column within 0.021 in every setting "
        "(largest gaps -0.021 at k=1 corr=0.9 x_noise=0 and -0.020 at k=5 corr=0.9 "
        "x_noise=0). OOD accuracy moves a lot between seeds (sd 0.02-0.13), so a 20-seed mean "
        "has a standard error of 0.005-0.03: these gaps are within noise, in both directions. "
        "Against the issue's targets: >= the paper's attention in all 12 settings: **not met** "
        "(5 of 12 at or above; the other 7 below by 0.0002-0.021); >= the best baseline in at "
        "least 10 of 12: **not met**, 8 of 12 (the paper's attention column: 8 of 12); auto-mpg "
        ">= 0.80 over 10 seeds: **not met**, 0.758 ± 0.044 (the paper's single run: 0.793). "
        "Ensembles (`n_ensembles`) and early stopping on a training split are the levers left "
        "to study, chosen on training data only. Fit times here ran two at a time on the "
        "2-core VM; see the fit-time section for one fit alone.",
    ),
    (
        "Tabular: the fast setting (batch 2048, learning rate 4e-3), 20 seeds",
        "tabular_20seeds_fast/summary.md",
        "The same benchmark with the fast setting of the fit-time section, which matched the "
        "paper's batch on held-out *training* rows (in-distribution). Reading: out of "
        "distribution it is not the same model: close to the paper's setting in most "
        "simulation settings, but clearly lower where the shift is strongest for it (k=5 "
        "corr=0.9 x_noise=0: 0.321 vs 0.372; x_noise=0.5: 0.231 vs 0.255) and on auto-mpg "
        "(0.728 vs 0.758). In-distribution validation did not predict this, so the defaults "
        "stay the paper's; the fast setting is for exploration.",
    ),
    (
        "Tabular: auto-mpg demo with the baselines rerun",
        "auto_mpg/summary.md",
        "Our logistic regression and random forest reproduce the paper's published numbers "
        "for those models on seed 0 (0.657, 0.721), which checks the data pipeline end to end.",
    ),
    (
        "Tabular: fit time of one model",
        "tabular_fit.md",
        "Reading: the fused engine trains the same model several times faster than the torch "
        "engine at the paper's batch, and 13-16x faster at batches of 2,048 masked "
        "predictions; a batch-2048 fit (about 5-6 s here) is 10-21x faster than the paper's "
        "Keras code (61-106 s, the issue author's measurement). The issue's goal, <= 3.5 s "
        "per fit, is **not met**: about 2 microseconds per masked prediction remain (gates, "
        "mixture, LayerNorms and softmax in compiled loops, plus per-step costs), and fit "
        "times move by +-30 % between repeats on this shared VM (sd column). Batch 2048 at "
        "the paper's learning rate loses in-distribution validation accuracy; with a learning "
        "rate of 4e-3 it matches the paper's batch (chosen on training rows only).",
    ),
    ("Tabular: imputation of held-out cells", "imputer.md", ""),
    (
        "Cost knobs on auto-mpg: heads, layers, sparse gating",
        "cost/summary.md",
        "Reading: in this implementation `top_k` computes every gate score and then "
        "masks all but the k largest, so it sparsifies the explanation, not the compute: "
        "fit time does not fall with it. `top_k=1` costs accuracy; heads and layers cost "
        "time roughly in proportion and bought a few points on auto-mpg. Fit-time sd is "
        "mostly machine noise (other jobs were running).",
    ),
    ("Cost knobs on the simulation", "cost/simulation/summary.md", ""),
    (
        "Scale-out: data-parallel training",
        "ddp.md",
        "Reading: the goal (2 processes >= 1.7x one process) is **not met** by DDP on this "
        "VM, although the machine allows it: two independent processes doing the same "
        "arithmetic without communication reach the ceiling given below the table. The gap is "
        "DDP's "
        "per-step cost: every rank all-reduces the whole gradient (1.8 MB, one gloo bucket) "
        "after its backward pass, then waits for the slower rank. Memory stays flat while "
        "training on and streaming the 100M-token corpus.",
    ),
    ("Scale-out: other machines (GPU path, idle host)", "ddp_elsewhere.md", ""),
    ("Word analogies: evaluator speed", "analogy_speed.md", ""),
    ("Word analogies: pretrained embeddings (Tables 1-2)", "analogy_tables.md", ""),
    ("Word analogies: models trained on text", "text_analogy.md", ""),
]


def main() -> None:
    parts = [INTRO]
    for title, name, note in SECTIONS:
        path = RESULTS / name
        if not path.exists():
            continue
        body = path.read_text().strip()
        # demote the results file's own headings below this section's
        lines = body.splitlines()
        body = "\n".join("##" + line if line.startswith("#") else line for line in lines)
        parts.append(f"## {title}\n\nSource: `benchmarks/results/{name}`.\n")
        if note:
            parts.append(note + "\n")
        parts.append(body + "\n")
    DOC.write_text("\n".join(parts))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
