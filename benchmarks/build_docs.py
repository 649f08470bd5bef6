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
        "Tabular: fit time of one model",
        "tabular_fit.md",
        "Reading: the fused engine runs whole epochs (Adam included) in compiled code; a fit "
        "of the paper's model (batches of 128 masked copies) takes a median 3.3 s here, "
        "17x faster than the torch engine on the same predictions and 18-32x faster than "
        "the paper's Keras code (61-106 s, the issue author's measurement). Goal (issue 3, "
        "<= 3.5 s per fit): met by the median; the mean, 3.8 ± 0.95 s, is above it because "
        "two of the five repeats fell in a slow period of this shared VM (every "
        "configuration slowed together in those repeats; quiet repeats take 3.0-3.3 s). "
        "Grouping the same predictions by rows costs the same; larger batches are faster "
        "but lose validation accuracy at the paper's learning rate. Five models averaged "
        "(`n_ensembles=5`) train two at a time on the two cores (`n_threads=2`): 9.7 s "
        "instead of about 16 s one after the other.",
    ),
    (
        "Tabular: the paper's simulation and auto-mpg (Tables 3-5), 20 seeds",
        "tabular_20seeds/summary.md",
        "attnmoe with the paper's configuration (the defaults of `AttentionMoEClassifier`: "
        "one model, batches of 128 masked copies, 200 epochs, Keras initialisation), on all "
        "20 seeds of each simulation setting and 10 auto-mpg seeds, scored against the "
        "paper's per-seed results on the very same seeds and data (the generator is exact: "
        "logistic regression fitted the paper's way reproduces all 240 published per-seed "
        "results, `tests/bench/test_datasets.py`, slow). Nothing was tuned on these test "
        "splits.\n\n"
        "Reading: where the shift is mild (corr=0.1, and any setting with x_noise=1.5) our "
        "means equal the paper's attention column within 0.004 (per-seed paired differences "
        "-0.002 to +0.004, standard errors 0.002-0.004). Where it is strong (corr=0.9, "
        "x_noise 0 and 0.5) they are lower by 0.012-0.021, about 1.2-2.7 paired standard "
        "errors: a small gap we have not explained. It is not the batching nor the attention "
        "initialisation: runs with rows instead of shuffled copies, and with a Dense layer's "
        "Glorot bounds for the attention kernels instead of Keras's MultiHeadAttention fans, "
        "differ from this one by at most 0.006 in any mean "
        "(`benchmarks/results/tabular_history`). For "
        "scale: on seeds 4951 / 5657 / 2743 of k=5 corr=0.9 x_noise=0 the issue's author "
        "reran the paper's own code and got 0.24 / 0.34 / 0.47 (paper: 0.30 / 0.37 / 0.42); "
        "we get 0.37 / 0.34 / 0.40. Against the issue's targets: >= the paper's attention in "
        "all 12 settings: **not met** (3 of 12; the other 9 below by 0.001-0.021); >= the "
        "best baseline in at least 10 of 12: **not met**, 7 of 12 (the paper's attention "
        "column: 8 of 12); auto-mpg >= 0.80 over 10 seeds: **not met**, 0.749 ± 0.047 (the "
        "paper's single run: 0.793). Fit times here ran two at a time on the 2-core VM.",
    ),
    (
        "Tabular: choosing the ensemble size on training rows",
        "tabular_ensemble_selection.md",
        "`n_ensembles` (the probability average of independently seeded fits) chosen before "
        "any test split was scored, by the rule in the script's docstring, on held-out "
        "training rows. Reading: averaging helps a little in-distribution (+0.003 accuracy "
        "for five models, lower log loss); three models were not distinguishable from one. "
        "The rule keeps five.",
    ),
    (
        "Tabular: five models averaged, 20 seeds",
        "tabular_20seeds_ensemble/summary.md",
        "The same benchmark with `n_ensembles=5` (the size chosen above on training rows, "
        "before this run; one run, nothing tuned on these test splits). Reading: averaging "
        "five fits raises the mean in 10 of 12 settings (the other two move by 0.001 or "
        "less), by up to 0.022, and on auto-mpg by 0.030. Against the issue's targets: >= "
        "the best baseline "
        "in at least 10 of 12 settings: **met**, 11 of 12 (the exception, k=1 corr=0.1 "
        "x_noise=0.5, is 0.001 below gradient boosting; the paper's attention: 8 of 12), and "
        "above every baseline on auto-mpg too; >= the paper's attention in all 12: **not "
        "met**, 9 of 12 (the strong-shift k=5 corr=0.9 settings stay 0.016-0.020 below at "
        "x_noise 0 and 0.5, 0.001 at 1.5); auto-mpg >= 0.80: **not met**, 0.779 ± 0.028 "
        "(paper's single run 0.793). Cost: five fits, about 10 s on the two cores "
        "(`n_threads=2`); the fit times in the table ran two benchmarks at a time, one "
        "thread each.",
    ),
    (
        "Tabular: auto-mpg demo with the baselines rerun",
        "auto_mpg/summary.md",
        "Our logistic regression and random forest reproduce the paper's published numbers "
        "for those models on seed 0 (0.657, 0.721), which checks the data pipeline end to end.",
    ),
    ("Tabular: imputation of held-out cells", "imputer.md", ""),
    (
        "Cost knobs on auto-mpg: heads, layers, sparse gating",
        "cost/summary.md",
        "Reading: in this implementation `top_k` computes every gate score and then "
        "masks all but the k largest, so it sparsifies the explanation, not the compute: "
        "fit time does not fall with it. `top_k=1` costs accuracy; heads and layers cost "
        "time roughly in proportion and bought a few points on auto-mpg. Fit-time sd is "
        "mostly machine noise (other jobs were running). These runs predate the compiled "
        "fused engine and the Keras-fan initialisation (their fit times are the torch "
        "engine's); a rerun with the current code is pending.",
    ),
    ("Cost knobs on the simulation", "cost/simulation/summary.md", ""),
    (
        "Scale-out: data-parallel training",
        "ddp.md",
        "Reading: the goal (2 processes >= 1.7x one process) is **not met** by DDP on this "
        "VM at either global batch (1.41x at 128 windows, 1.53x at 512), although the "
        "machine allows it: two independent processes doing the same arithmetic without "
        "communication reach 1.9x. DDP's share of that ceiling rises with the batch (72 % -> "
        "80 %), but its cost per step grows too (about 14 ms at 128 windows, 35 ms at 512, "
        "from the medians), so it is not only the fixed all-reduce of the 1.8 MB gradient "
        "(one gloo bucket, a few ms): the two ranks run in lockstep, and on this shared VM "
        "every stall of either core is paid by both, which independent processes are not. "
        "On an idle 16-core host the earlier code reached 1.58-1.63x (next section). Memory "
        "stays flat while training on and streaming the 100M-token corpus.",
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
