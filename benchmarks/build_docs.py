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
        "Tabular: the paper's simulation and auto-mpg (Tables 3-5)",
        "tabular_paper_config/summary.md",
        "attnmoe with the paper's configuration (defaults of `AttentionMoEClassifier`), "
        "scored against the paper's per-seed results on the very same seeds and data "
        "(the generator is exact: logistic regression fitted the paper's way reproduces "
        "all 240 published per-seed results, `tests/bench/test_datasets.py`, slow). "
        "Reading: on the same seeds our implementation tracks the paper's attention column "
        "within a few points; the last lines of the table count where it is at or above the "
        "paper and every baseline. Few simulation seeds were run (the sd shows how much OOD "
        "accuracy moves between seeds), so the issue's targets (>= the paper in all 12 "
        "settings, >= the best baseline in 10 of 12, auto-mpg >= 0.80 over 10 seeds) are "
        "**not met** here and not yet measured on all 20 seeds. "
        "Fit times here were measured with other jobs on the machine.",
    ),
    (
        "Tabular: auto-mpg demo with the baselines rerun",
        "auto_mpg/summary.md",
        "Our logistic regression and random forest reproduce the paper's published numbers "
        "for those models on seed 0 (0.657, 0.721), which checks the data pipeline end to end.",
    ),
    ("Tabular: fit time of one model", "tabular_fit.md", ""),
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
    ("Scale-out: data-parallel training", "ddp.md", ""),
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
