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

## The issues' targets at a glance

Each line is read off the section named in it (commands and machines there).

| target | result | met? | section |
|---|---|---|---|
| one tabular fit (paper's model, N = 2000, 200 epochs) >= 20x faster than the paper's \
Keras code, i.e. <= 3.5 s | latest run, a quiet period: median 2.78 s, every repeat \
2.61-3.30 s; the same model in Keras timed in the same run: 36x faster than `Model.fit`'s \
defaults (103 s, within the 61-106 s the issue author measured for the authors' code), 33x \
than 16 steps per call (every repeat >= 29.8x); 22-38x the issue author's timing of the authors' \
code (not run here); on the VM shared with other jobs: medians 3.13-4.69 s in the 9 runs \
before, <= 3.5 s in 3 of them | <= 3.5 s: yes in a quiet period, not reliably under other \
jobs' load; >= 20x: yes over the same model in Keras in one run, over the authors' code only \
against the issue author's timings (not run here) | Tabular: fit time of one model |
| mean OOD accuracy >= the paper's attention in all 12 settings | one model 7 of 12 (each \
within 2 paired SE of the paper); three averaged 10 of 12 (not: k=5 corr=0.9 x_noise 0 and \
0.5); trained also on the test rows' features (transductive, another protocol, not counted) \
8 of 12, k=5 corr=0.9 x_noise=0 among them; the paper's model rerun in Keras misses both \
settings too (0.374 vs 0.392 and 0.264 vs 0.269, 20 seeds each); why: the published \
column is one draw of a model that varies from run to run (its Keras rerun reaches it in 4 \
of the 9 settings checked), so a model exactly as good as the paper's meets this with \
probability 0.00024; meeting it with probability 0.8 takes, for instance, +0.004 to +0.030 \
over the paper's model in every setting | no | Tabular: why the accuracy targets stay out of \
reach; ... 20 seeds; three models averaged; the rows to predict as unlabeled training rows; the \
paper's model in Keras |
| >= the best baseline in at least 10 of 12 | one model 9 of 12; three averaged 9 of 12 (the \
paper's own column: 8); 10 of 12 only in five test-scored sensitivity runs not chosen on \
training rows (100 epochs; early stopping; the last half of the epochs averaged; weight decay \
0.001; target weight 0.5), 11 of 12 trained also on the test rows' features (transductive, \
not counted); in the three settings three averaged miss, the paper's model rerun in Keras \
is below the best baseline too (k=1 corr=0.1 x_noise 0: 0.404 vs 0.413; 0.5: 0.355 vs 0.366; \
k=1 corr=0.9 x_noise=1.5: 0.171 vs 0.172; 20 seeds each); a model exactly as good as the \
paper's meets this with probability 0.03 (on average 8.4 of 12): gradient boosting leads it \
in four one-feature settings, and three averaged models overtake it in one of those; \
CatBoost and FT-Transformer (first 10 seeds) lead them in two more, the noisiest, by \
0.004 and 0.006: 8 of 12 against every baseline on those seeds, 10 of 12 against the \
paper's four | no | Tabular: why the accuracy targets stay out of reach; CatBoost and \
FT-Transformer against three averaged models; the same; Tabular: the last half \
of the epochs averaged; weight decay 0.001; target \
weight 0.5; the rows to predict as unlabeled training rows; the paper's model in Keras |
| auto-mpg >= 0.80, mean of 10 seeds | one model 0.740 ± 0.061; three averaged 0.756 ± 0.027; \
the highest, one model on partial rows (`context_mask_rate=0.3`, a test-scored sensitivity run, \
not chosen on training rows) 0.781 ± 0.031 (paper: 0.793, one run), then weight decay 0.001 \
(the same status) 0.769 ± 0.039; the paper's model rerun \
in Keras, 20 seeds: 0.729 ± 0.057 (5 of 20 seeds reach the paper's 0.7929), so a 10-seed \
mean of the paper's model reaches 0.80 with probability about 0.002 | no | Tabular: why the \
accuracy targets stay out of reach; the same; Tabular: hidden context 0.3; the paper's \
model in Keras (auto-mpg) |
| 2 DDP processes >= 1.7x one process (2-core VM) | three runs, ranks polling the \
all-reduce (`poll_allreduce`, the default where the ranks fit the cores) and bound to cores \
(`--bind-cores`): 1.79x, 1.72x and 1.79x at 512 windows per step, 1.42x, 1.61x and 1.71x at \
128; polling, not bound: 1.76x, 2.08x, 1.66x and 1.51x, 1.63x, 1.61x; ranks sleeping (DDP's \
default wait): 1.77x, 1.81x, 1.46x and 1.27x, 1.42x, 1.44x; polling faster in 19 of 20 \
repeats run side by side; two independent processes: 1.85-2.12x | yes at 512 windows per \
step with polling and bound cores (3 runs of 3), not reliably at 128 (1 of 3) | Scale-out: \
data-parallel training (and its second and third runs); where DDP's extra time per step goes |
"""

# (title, results file, note written here about what the numbers say)
SECTIONS: list[tuple[str, str, str]] = [
    ("Core: masked predictions per second", "masking.md", ""),
    (
        "Tabular: fit time of one model",
        "tabular_fit.md",
        "Reading: the fused engine runs whole epochs (Adam included) in compiled code; a fit of"
        " the paper's model (batches of 128 masked copies) takes a median 2.78 s in this run "
        "(mean 2.83 ± 0.28 s; every repeat 2.61-3.30 s), 20x faster than the torch engine. "
        "The same model written in Keras, the paper's framework (`attnmoe.bench.keras_paper`, "
        'installed with `pip install -e ".[keras]"`; as many weights, the same masked '
        "copies, batches and loss, Keras's Adam), ran in the same repeats, interleaved, so "
        "that both meet the same machine load (Keras on the two cores, attnmoe on one): 103 s "
        "per fit with `Model.fit`'s defaults, 95 s with 16 steps per call into TensorFlow. "
        "attnmoe is 36x and 33x faster (medians of the per-repeat ratios, ranges 33-40x and "
        "30-37x), and the two reach similar validation accuracy on the same held-out rows of "
        "three seeds (Keras 0.387 ± 0.174, attnmoe 0.401 ± 0.181; test accuracies over 20 "
        "seeds in the next section). The issue author timed the authors' own Keras code at "
        "61-106 s on this machine; this Keras version's 103 s lies in that range, and "
        "against those times (not measured in the same run) the fit here is 22-38x faster. "
        "Goal (issue 3: at least 20x faster than the paper's Keras code, <= 3.5 s per fit): "
        "**met in this run**: every repeat under 3.5 s, every repeat at least 33x faster "
        "than this Keras version with `Model.fit`'s defaults (29.8x with 16 steps per call), "
        "and 22x faster than the fastest time the issue author measured for the authors' code "
        "(not run here). This run met a quiet period: the torch engine took 56 s and Keras "
        "103 s, against 62 s and 135 s in the run before (the script records the load at "
        "its start only from this commit on; the load at the end is Keras's two threads). "
        "Under other jobs' load the median was 3.13-4.69 s "
        "in the 9 earlier committed runs, above 3.5 s in 6 of them (newest first: 3.58 s, "
        "commit e3f09c4; 4.14 s, 7c09107, timed with a first version of the Keras model: "
        "uniform position embeddings, softmax at the masked location only; 4.69 s, 6ec40fc; "
        "4.25 s, c2b691b, a slow period: torch engine 77 s; 3.13 s, a0c5df4; 3.81 s, "
        "2dd7115; 3.15 s, 2d24491; 3.86 s, 296b91e, another busy period: torch engine 69 s; "
        "3.32 s, e30a3bf), so expect 3-4.7 s on a busy 2-core machine, while the ratios to "
        "the torch engine (14-21x) and to Keras (31-38x) hold. The validation accuracies "
        "of the attnmoe configurations equal the previous runs' to every digit (the same "
        "models). Grouping the same predictions by rows costs about the same; larger "
        "batches are faster but lose validation accuracy at the paper's learning rate. "
        "Ensembles train two members at a time on the two cores (`n_threads=2`): three "
        "models in 5.5 s, five in 8.6 s.",
    ),
    (
        "Tabular: why the accuracy targets stay out of reach",
        "keras_seeds_all.md",
        "Reading: the paper's published column is one draw of a model whose 20-seed mean "
        "moves by chance, and the targets ask to beat that draw everywhere. Rerun in its own "
        "framework, the paper's model reaches its published column in 4 of the 9 settings "
        "checked (Keras - paper -0.017 to +0.002) and the best baseline in 6 of them, like "
        "a coin flip around it. A model exactly as good as the paper's would be at or above "
        "the published column in all 12 settings with probability 0.5^12 = 0.00024 and at "
        "or above the best baseline in at least 10 of 12 with probability 0.03 (on "
        "average 8.4; the paper's own column: 8; rough figures, from standard errors "
        "estimated on 20 seeds, the settings taken as independent). By how much: one way "
        "to reach the published column in all 12 with probability 0.8 is a true mean above "
        "the paper's model's by the same 2.09 standard errors in every setting, +0.004 to "
        "+0.030; averaging three attnmoe models clears that margin (point estimates) in "
        "four settings and gains +0.0001 to +0.010 over the paper in ten, but stays below "
        "it where five strongly correlated features act together (k=5 corr=0.9 x_noise 0 "
        "and 0.5: -0.003 and -0.011, needed +0.030 and +0.019, or +0.022 and +0.015 from "
        "the Keras reruns' smaller spread). Against the best baseline, gradient boosting "
        "leads the paper's model in four one-feature settings (by 0.0098, 0.0073, 0.0006 "
        "and 0.0026); three averaged models gain +0.0076, +0.0058, +0.0071 and +0.0023 "
        "there, enough in one of the four, so 9 of 12 where 10 needs two. On auto-mpg, a "
        "new 10-seed mean of the paper's model (Keras, 20 seeds: 0.729 ± 0.057) reaches "
        "0.80 with probability about 0.002 (3.2 predictive standard errors above its mean); "
        "three averaged attnmoe models give 0.756 ± 0.027. The levers the issue names "
        "(ensembling, the optimizer budget, regularization) were each measured over 20 "
        "seeds in the sections below; none chosen on training rows closes these gaps.",
    ),
    (
        "Tabular: the paper's model in Keras, seed by seed",
        "keras_seeds/summary.md",
        "Reading: is the paper's column reachable with the paper's own framework where "
        "attnmoe falls furthest short of it (k=5 corr=0.9 x_noise=0: the paper 0.392, "
        "attnmoe's single model 0.381)? The same model in Keras, trained as the paper "
        "describes (`KerasPaperClassifier`, one fit per seed; 16 Adam steps per call into "
        "TensorFlow, the same updates as one per call), averages 0.374 ± 0.040 over the 20 "
        "seeds: 0.017 ± 0.010 below the paper's per-seed results (1.7 standard errors) and "
        "indistinguishable from attnmoe (-0.006 ± 0.014). Seed by seed the implementations "
        "scatter by several points around each other (on the first three seeds: the "
        "issue author's rerun of the authors' code 0.24 / 0.34 / 0.47, the paper 0.30 / "
        "0.37 / 0.42, Keras here 0.39 / 0.37 / 0.39, attnmoe 0.37 / 0.37 / 0.43): under "
        "this shift a fit's test accuracy depends on its random draws (initialisation, "
        "shuffling, dropout) by more than the gaps the targets ask to close, and the "
        "paper's mean in this setting sits at the upper end of what its model gives: a new "
        "Keras run of it misses the published column too. attnmoe's per-seed accuracies "
        "equal `tabular_20seeds`'s to every digit (the fits are deterministic). The fit "
        "times were not interleaved (the previous section has the same-run ratio).",
    ),
    (
        "Tabular: the paper's model in Keras, seed by seed (x_noise=0.5, 20 seeds)",
        "keras_seeds_noise0.5/summary.md",
        "Reading: the same check on the other setting where attnmoe stays below the paper's "
        "column over 20 seeds (k=5 corr=0.9 x_noise=0.5), now on all 20 (the first ten ran "
        "in an earlier session, the rest resumed into the same file with the same settings). "
        "The Keras rerun falls short of the paper here too, though not significantly: Keras "
        "0.264 ± 0.028, attnmoe 0.256 ± 0.034, the paper 0.269 on the same seeds (Keras - "
        "paper -0.005 ± 0.007, attnmoe - paper -0.013 ± 0.009, Keras - attnmoe +0.007 ± "
        "0.006). On the first ten seeds all three agreed (0.277 / 0.272 / 0.275); on the "
        "other ten both models fall below the paper (Keras 0.250, attnmoe 0.241, the paper "
        "0.263). So in the two k=5 corr=0.9 settings where attnmoe stays below the paper, "
        "the paper's own model, rerun in its framework, also falls below the published "
        "column (by 0.017 and 0.005), and "
        "lands within about one standard error of attnmoe (Keras - attnmoe -0.006 ± 0.014 "
        "at x_noise=0, +0.007 ± 0.006 here). attnmoe's per-seed accuracies equal "
        "`tabular_20seeds`'s to every digit. Fit times: the first Keras fit shared the "
        "cores with a demo run (172 s), and the first attnmoe fit of the resumed run "
        "includes compiling the fused kernel (31.6 s).",
    ),
    (
        "Tabular: the paper's model in Keras, seed by seed (k=5 corr=0.1 x_noise=0, 20 seeds)",
        "keras_seeds_k5_corr0.1/summary.md",
        "Reading: a fidelity check of the Keras model where attnmoe matches the paper's "
        "column (k=5 corr=0.1 x_noise=0, 20 seeds: the first ten, then the rest resumed into "
        "the same file with the same settings): all three agree, Keras 0.420 ± 0.125, attnmoe"
        " 0.420 ± 0.127, the paper 0.419 on the same seeds (Keras - paper +0.000 ± 0.004, "
        "attnmoe - paper +0.001 ± 0.003, Keras - attnmoe -0.000 ± 0.004). So the Keras model "
        "reproduces the paper where the features are weakly correlated, and its shortfall in "
        "the two k=5 corr=0.9 settings above is not a flaw of this Keras version. attnmoe's "
        "per-seed accuracies equal `tabular_20seeds`'s to every digit; the first attnmoe fit "
        "of each of the two sittings includes compiling the fused kernel (28.5 s and 40.7 s).",
    ),
    (
        "Tabular: the paper's model in Keras, seed by seed (k=1 corr=0.9 x_noise=0, 20 seeds)",
        "keras_seeds_k1_corr0.9/summary.md",
        "Reading: the fidelity check on a setting where one feature carries the signal and "
        "the shift is strong (k=1 corr=0.9 x_noise=0), where attnmoe matches the paper's "
        "column. Keras 0.381 ± 0.126, attnmoe 0.388 ± 0.126, the paper 0.389 on the same "
        "seeds: attnmoe - paper -0.002 ± 0.004; the Keras model lands a little below both "
        "(Keras - paper -0.008 ± 0.004, 2.0 standard errors; Keras - attnmoe -0.007 ± "
        "0.004). attnmoe's "
        "per-seed accuracies equal `tabular_20seeds`'s to every digit. Fit times ran with "
        "review jobs and tests on the same two cores (Keras 148 s, attnmoe 4.6 s per fit): "
        "not comparable with the timed section.",
    ),
    (
        "Tabular: the paper's model in Keras, seed by seed (k=5 corr=0.9 x_noise=1.5, 20 seeds)",
        "keras_seeds_k5_corr0.9_noise1.5/summary.md",
        "Reading: the third k=5 corr=0.9 setting, with the most noise on the features "
        "(x_noise=1.5), where every model is weak under the shift (10 classes; always "
        "predicting the most frequent test class would score 0.18 on seed 4951). "
        "All three agree: Keras 0.135 ± 0.032, attnmoe 0.135 ± 0.032, the paper 0.133 on "
        "the same seeds (Keras - paper +0.002 ± 0.002, attnmoe - paper +0.002 ± 0.002, "
        "Keras - attnmoe +0.000 ± 0.002). Across the five simulation settings checked by then (20 "
        "seeds each) the Keras model's mean differs from the paper's by -0.017 to +0.002 "
        "and from attnmoe's by -0.007 to +0.007: the two implementations agree within "
        "about two standard errors everywhere, and neither is reliably above the published "
        "column. attnmoe's per-seed accuracies equal `tabular_20seeds`'s to every digit. "
        "Fit times ran with review jobs and tests on the same two cores (Keras 155 s, "
        "attnmoe 5.1 s per fit, the first including the kernel's compilation): not "
        "comparable with the timed section.",
    ),
    (
        "Tabular: the paper's model in Keras, seed by seed (k=1 corr=0.1 x_noise=0.5, 20 seeds)",
        "keras_seeds_k1_corr0.1_noise0.5/summary.md",
        "Reading: a setting where one feature carries the signal and the features are "
        "weakly correlated, where attnmoe's single model is below the paper's column (by "
        "0.002) and gradient boosting is the best baseline. The three agree: Keras 0.355 ± "
        "0.097, attnmoe 0.356 ± 0.100, the paper 0.359 on the same seeds (Keras - paper "
        "-0.004 ± 0.002, attnmoe - paper -0.002 ± 0.003, Keras - attnmoe -0.002 ± 0.002). "
        "Across the six simulation settings checked so far (20 seeds each) the Keras "
        "model's mean differs from the paper's by -0.017 to +0.002 and from attnmoe's by "
        "-0.007 to +0.007. attnmoe's per-seed accuracies equal `tabular_20seeds`'s to every "
        "digit. Fit times ran beside other benchmarks on the same two cores (Keras 132 s, "
        "attnmoe 3.0 s per fit): not comparable with the timed section.",
    ),
    (
        "Tabular: the paper's model in Keras, seed by seed (k=1 corr=0.1 x_noise=0, 20 seeds)",
        "keras_seeds_k1_corr0.1_noise0/summary.md",
        "Reading: a setting where averaging three models stays below the best baseline "
        "(gradient boosting, 0.413 on these seeds; attnmoe's three 0.411). The paper's "
        "model in Keras lands on the paper's column, below gradient boosting too: Keras "
        "0.404 ± 0.131, attnmoe's single model 0.407 ± 0.132, the paper 0.404 (Keras - "
        "paper +0.001 ± 0.003, attnmoe - paper +0.004 ± 0.002, Keras - attnmoe -0.003 ± "
        "0.002). attnmoe's per-seed accuracies equal `tabular_20seeds`'s to every digit. "
        "One Keras fit (seed 5852, 1091 s) was paused for 16 minutes while a timing "
        "benchmark ran; the median Keras fit took 93 s, beside other jobs: not comparable "
        "with the timed section.",
    ),
    (
        "Tabular: the paper's model in Keras, seed by seed (k=1 corr=0.9 x_noise=1.5, 20 seeds)",
        "keras_seeds_k1_corr0.9_noise1.5/summary.md",
        "Reading: the third setting where averaging three models stays below the best "
        "baseline, by 0.0003 (0.1718 against gradient boosting's 0.1721 on these seeds). "
        "All three land together, and below gradient boosting: Keras 0.171 ± 0.024, "
        "attnmoe's single model 0.170 ± 0.021, the paper 0.169 (Keras - paper +0.001 ± "
        "0.002, attnmoe - paper +0.001 ± 0.002, Keras - attnmoe +0.001 ± 0.003). So in all "
        "three settings where three averaged models miss the best baseline (k=1 corr=0.1 "
        "x_noise 0 and 0.5, k=1 corr=0.9 x_noise=1.5) the paper's own model, rerun in "
        "Keras, misses it as well (0.404 vs 0.413, 0.355 vs 0.366, 0.171 vs 0.172), as "
        "does the paper's published column. Across the eight simulation settings checked "
        "so far (20 seeds each) the Keras model's mean differs from the paper's by -0.017 "
        "to +0.002 and from attnmoe's by -0.007 to +0.007. attnmoe's per-seed accuracies "
        "equal `tabular_20seeds`'s to every digit. Fit times ran beside light jobs on the "
        "same two cores (Keras 90 s, attnmoe 3.9 s per fit): not comparable with the "
        "timed section.",
    ),
    (
        "Tabular: the paper's model in Keras, seed by seed (k=1 corr=0.9 x_noise=0.5, 20 seeds)",
        "keras_seeds_k1_corr0.9_noise0.5/summary.md",
        "Reading: the ninth setting checked (the first four seeds ran in one sitting, the "
        "rest resumed into the same file with the same settings). The three agree: Keras "
        "0.305 ± 0.081, attnmoe's single model 0.311 ± 0.082, the paper 0.306 (Keras - paper "
        "-0.0010 ± 0.0045, attnmoe - paper +0.0045 ± 0.0052, Keras - attnmoe -0.0055 ± "
        "0.0043), "
        "all above the best baseline (gradient boosting, 0.299). Over the nine simulation "
        "settings checked (20 seeds each) the Keras model's mean differs from the paper's "
        "by -0.017 to +0.002 and from attnmoe's by -0.007 to +0.007 (the table in 'Tabular: "
        "why the accuracy targets stay out of reach' has them side by side). attnmoe's "
        "per-seed accuracies equal `tabular_20seeds`'s to every digit; its first fit of "
        "the first sitting includes compiling the fused kernel (26.5 s). Fit times ran "
        "beside other benchmarks on the same two cores (Keras 91 s, attnmoe 2.9 s per fit, "
        "medians): not comparable with the timed section.",
    ),
    (
        "Tabular: the paper's model in Keras, seed by seed (auto-mpg, 20 seeds)",
        "keras_seeds_auto_mpg/summary.md",
        "Reading: is the paper's one auto-mpg run (0.793) what its model gives on average? "
        "The same model in Keras, trained as the paper describes, on the paper's split (US "
        "cars to train, European and Japanese ones to test; the split is fixed, so the seeds "
        "seed the models only), scores 0.729 ± 0.057 over 20 seeds, 0.064 ± 0.013 below the "
        "published run; attnmoe's single model scores 0.717 ± 0.054, indistinguishable from "
        "Keras (Keras - attnmoe +0.012 ± 0.017). Seed by seed both spread over 0.64-0.82: "
        "Keras reaches the paper's 0.7929 (111 of 140 cars) in 5 of the 20 seeds and 0.80 in "
        "4, attnmoe in 3 and 1. So 0.793 is a good draw of this model on 140 test cars, about"
        " one sd above its mean, and the issue's auto-mpg target (>= 0.80 as a mean over 10 "
        "seeds) asks for more than the paper's own model gives on average. The first ten "
        "seeds are those of `attnmoe bench tabular`: attnmoe's accuracies there equal "
        "`tabular_20seeds`'s to every digit (0.740 over seeds 0-9; 0.694 over seeds 10-19, "
        "Keras 0.736 and 0.722). The first attnmoe fit includes compiling the fused kernel "
        "(35.9 s).",
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
        "Reading: per seed, paired with the paper's own result on the same data, our mean "
        "differs from the paper's attention column by -0.013 to +0.005 in the 12 settings, "
        "each within 2 standard errors of the paired difference (0.002-0.014; per setting "
        "in `tabular_20seeds/paired.md`, written by `benchmarks/compare_tabular_runs.py`): "
        "the model reproduces the paper's. The last gap we had, 0.012-0.021 below in the "
        "strong-shift "
        "settings (corr=0.9, x_noise 0 and 0.5), was the position embeddings' "
        "initialisation: the paper's code adds keras_nlp's `PositionEmbedding`, "
        "Glorot-uniform (bounds 0.48 for 6 columns, d = 20), where we had drawn them like "
        "the token embeddings, U(-0.05, 0.05); with Keras's default the k=1 corr=0.9 "
        "settings gained 0.010 and 0.017 and the k=5 ones 0.010 and 0.007 "
        "(earlier runs: `benchmarks/results/tabular_history`). The one known difference "
        "left is Adam's epsilon (Keras: 1e-7 on the uncorrected second moment, on a loss "
        "averaged over all 6 locations of each copy; here torch's 1e-8 on the mean "
        "masked loss), which only matters where a gradient's RMS is below about 1e-6 (1e-5 "
        'in the first steps); `adam="keras"` removes it, and a 20-seed run with it moves '
        'no setting by more than 0.006 (section "Keras\'s Adam" below). For scale: on '
        "seeds 4951 / 5657 / 2743 of k=5 corr=0.9 x_noise=0 the issue's author reran the "
        "paper's own code and got 0.24 / 0.34 / 0.47 (paper: 0.30 / 0.37 / 0.42); we get "
        "0.37 / 0.37 / 0.43, the same model in Keras 0.39 / 0.37 / 0.39 (and over all 20 "
        "seeds 0.374, below the paper's 0.392: section 'the paper's model in Keras'). Against "
        "the issue's "
        "targets: >= the paper's attention in all "
        "12 settings: **not met**, 7 of 12 (the other 5 below by 0.001-0.013, none "
        "significant: the same model on other random draws lands on either side); >= "
        "the best baseline in at least 10 of 12: **not met**, 9 of 12 (the paper's "
        "attention column: 8 of 12); auto-mpg >= 0.80 over 10 seeds: **not met**, "
        "0.740 ± 0.061 (the paper's single run: 0.793, about one sd above our mean). Fit "
        "times here ran two at a time on the 2-core VM.",
    ),
    (
        "Tabular: choosing the ensemble size on training rows",
        "tabular_ensemble_selection.md",
        "`n_ensembles` (the probability average of independently seeded fits) chosen before "
        "any test split was scored, by the rule in the script's docstring, on held-out "
        "training rows. Reading: averaging helps a little in-distribution: three models "
        "beat one by +0.0026 accuracy (1.5 paired standard errors) with a lower log loss; "
        "five were not distinguishable from three (+0.0009, SE 0.0013). The rule keeps "
        "three. (With the earlier position-embedding initialisation the same rule had kept "
        "five: `tabular_history`.)",
    ),
    (
        "Tabular: three models averaged, 20 seeds",
        "tabular_20seeds_ensemble/summary.md",
        "The same benchmark with `n_ensembles=3` (the size chosen above on training rows, "
        "before this run; one run, nothing tuned on these test splits). Reading: averaging "
        "three fits raises the mean in 11 of 12 settings (the twelfth is unchanged), by up "
        "to 0.011, and on auto-mpg by 0.016 with less than half the sd. Against the issue's "
        "targets: >= the paper's attention in all 12: **not met**, 10 of 12 (k=5 corr=0.9 "
        "stays below at x_noise 0, by 0.003, and 0.5, by 0.011; paired standard errors "
        "0.010 and 0.008, `tabular_20seeds_ensemble/paired.md`); >= the best baseline in "
        "at least 10 of 12: **not met**, 9 of 12 "
        "(gradient boosting is ahead by 0.002, 0.0015 and 0.0003 in k=1 corr=0.1 x_noise "
        "0 and 0.5 and k=1 corr=0.9 x_noise=1.5; the paper's attention: 8 of 12); "
        "auto-mpg >= 0.80: **not met**, 0.756 ± 0.027 (paper's single run 0.793; best "
        "baseline 0.764). Why the targets stay out of reach: the single model now "
        "reproduces the paper's (previous section), so beating the paper's column in "
        "every setting needs a model that generalises better out of distribution, and "
        "held-out training rows drawn at random are in-distribution: they picked three "
        "models here and cannot see which choices help under the shift; rows chosen to "
        "lean toward the shift (the least typical ones, a later section) point the right "
        "way but cannot tell the training budgets apart. "
        "(Five models with the earlier initialisation, `tabular_history`, were ahead of "
        "the best baseline in 11 of 12 but of the paper in 9.) Cost: three fits, 6.8-7.0 s "
        "on the two cores (`n_threads=2`, fit-time section); the fit times in the table ran two "
        "benchmarks at a time, one thread each.",
    ),
    (
        "Tabular: CatBoost and FT-Transformer against three averaged models (10 seeds)",
        "tabular_peers/vs_three_averaged.md",
        "The two tools a practitioner would reach for, run as issue 3 asks: CatBoost with "
        "native categorical features (its defaults) and FT-Transformer from "
        "`rtdl_revisiting_models` (the package's defaults, early stopping on a fifth of the "
        "training rows), by `attnmoe bench tabular --models catboost ft_transformer --seeds "
        "10 --auto-mpg-seeds 10 --jobs 2 --out benchmarks/results/tabular_peers` (its own "
        "summary: `benchmarks/results/tabular_peers/summary.md`; the same runs against one "
        "attnmoe model: `vs_one_model.md`), on the first 10 of the paper's 20 seeds, pooled "
        "here with the three averaged attnmoe models of the 20-seed run on the same seeds. "
        "Reading: neither comes near attnmoe where five strongly correlated features act "
        "together (k=5 corr=0.9: attnmoe 0.378 / 0.268 / 0.141 against at most 0.242 / "
        "0.201 / 0.132), nor on auto-mpg (FT-Transformer 0.743 ± 0.040, CatBoost 0.706 ± "
        "0.040, attnmoe 0.756 ± 0.027; the paper's pytorch_tabular FT-Transformer: 0.707, "
        "one run). Where one feature or weakly correlated ones carry the signal they sit "
        "with the paper's baselines, and in the two noisiest settings one of them leads: "
        "FT-Transformer at k=1 corr=0.9 x_noise=1.5 (0.172 against attnmoe's 0.168) and "
        "CatBoost at k=5 corr=0.1 x_noise=1.5 (0.181 against 0.175), each within a fraction "
        "of the seeds' sd. On these 10 seeds three averaged models are at or above every "
        "baseline in 8 of 12 settings, where against the paper's four baselines alone they "
        "are in 10 of 12 (gradient boosting leads the other two, k=1 corr=0.1 x_noise 0 and "
        "0.5, as over 20 seeds). The issue's 20-seed count (9 of 12) is against the paper's "
        "baselines, as the paper's own 8 of 12 is; these two would lower it if the next 10 "
        "seeds go as these did. CatBoost is the slow one: 66 s per fit (two fits at a time "
        "on the 2 cores), FT-Transformer 19 s, three averaged attnmoe models 10 s. The "
        "other 10 seeds: the same command with `--seeds 20` resumes (240 more fits, about "
        "an hour and a half on 2 cores at these rates).",
    ),
    (
        "Tabular: optimizer budget, 100 epochs instead of 200 (sensitivity, 20 seeds)",
        "tabular_levers/epochs100/summary.md",
        "The two other levers the issue names, each changed alone from the paper's "
        "configuration (one model): the optimizer budget here, regularisation (dropout) "
        "in the next section. These runs score the test splits, so nothing is chosen from "
        "them; the defaults stay the paper's. Reading, against the 20-seed run of the "
        "paper's configuration above: half the budget raises every k=1 setting (by "
        "0.001-0.009) and auto-mpg (+0.010), and lowers every k=5 one, most where the "
        "shift is strongest (k=5 corr=0.9 x_noise=0: -0.031, 0.349 against the paper's "
        "0.392).",
    ),
    (
        "Tabular: dropout 0.3 instead of 0.1 (sensitivity, 20 seeds)",
        "tabular_levers/dropout0.3/summary.md",
        "Reading: the same trade as a smaller budget, stronger: up to +0.008 on the k=1 "
        "settings, -0.058 and -0.026 on k=5 corr=0.9 x_noise 0 and 0.5, -0.009 on "
        "auto-mpg. Both levers move the single-cause settings and the five-cause "
        "strong-shift ones in opposite directions, so neither lifts every setting above "
        "the paper's column.",
    ),
    (
        "Tabular: early stopping on training rows (sensitivity, 20 seeds)",
        "tabular_levers/early_stopping/summary.md",
        "`validation_fraction=0.1` (the estimator's `patience=10`): each fit holds out "
        "10 % of its training rows and keeps the weights of the epoch with the lowest "
        "validation MLM loss, a budget chosen per fit on training data only. It stops "
        "early (1.1 s per fit on average) and shows the same trade as the two levers "
        "above: five of the six k=1 settings rise (up to +0.011), every k=5 setting "
        "falls (k=5 corr=0.9 x_noise=0: -0.046). It happens to be >= the best baseline in "
        "10 of the 12 settings, but >= the paper's attention in only 5; since that was "
        "seen on the test splits it is reported here, not made the default.",
    ),
    (
        "Tabular: the budget chosen on the least typical training rows (20 seeds)",
        "tabular_shift_selection/summary.md",
        "A selection signal from training rows only that leans toward covariate shift: "
        "`GridSearchCV` over `epochs` in (200, 100, 400), validated on the quarter of the "
        "training rows whose pairs of feature values are least typical "
        "(`attnmoe.tabular.AtypicalHoldout`: lowest mean pointwise mutual information, "
        "target not used), then refitted on all training rows; one model, the paper's "
        "configuration otherwise. Procedure, grid and the use of the result were fixed "
        "before the run (`tabular_shift_selection/PLAN.md`, committed first); one run, at "
        "commit 02cdbe4, whose `pair_typicality` smoothed every pair of columns over the "
        "widest column's codes (fixed since: each pair over its own values; on these "
        "tables, whose columns hold equally many values, the two differ only by an unused "
        "missing-value code in the smoothing, which can move a held-out row at the margin). "
        "Reading: in the two strong-shift settings without noise the choices go the way "
        "the test-scored 100-epoch sensitivity run above points: on k=5 corr=0.9 "
        "x_noise=0, where 100 epochs did worst, the signal avoided them (1 of 20 seeds; "
        "200 in 10, 400 in 9), on k=1 corr=0.9 x_noise=0, where 100 epochs helped, it "
        "took them in 14 of 20 (no run scored 400 epochs alone, and the other settings "
        "show no clear lean). The gains are small, though: paired with "
        "the paper's configuration on the same seeds (`tabular_shift_selection/paired.md`), "
        "the chosen budget moves the mean by -0.007 to +0.008, within 2 standard errors in "
        "11 of 12 settings (the twelfth, k=1 corr=0.1 x_noise=0.5, +0.006 at 3.8 SE), and "
        "auto-mpg by +0.008 ± 0.017 (0.748 ± 0.058). Against the issue's targets nothing "
        "changes: >= the paper's attention in 7 of 12, >= the best baseline in 9 of 12, "
        "auto-mpg 0.748 (target 0.80). With ~500 validation rows a budget's accuracy is "
        "known to about ± 0.02, more than the budgets differ by in most settings, so the "
        "choice is often noise. Cost: four fits per run (three candidates on 75 % of the "
        "rows, one refit), 14.5 s here, two runs at a time. As planned, the estimator's "
        "defaults stay the paper's; `AtypicalHoldout` ships as a tool (docs/tabular.md).",
    ),
    (
        "Tabular: the block form, bert or pure, chosen on training rows",
        "tabular_block_selection.md",
        "The paper's model is the `bert` block (attention, then residual + LayerNorm and a "
        "feed-forward layer); `pure` is the mixture of continuous word experts alone, the form "
        "the paper's equivalence is about, with nothing after the mixture but the output "
        "layer. Whether the simpler form extrapolates better when features pair their values "
        "differently at test time was decided on training rows only, by the rule in the "
        "script's docstring (the least typical quarter held out; `pure` only if ahead by more "
        "than one paired standard error). Reading: the two forms are indistinguishable on "
        "held-out training rows, the least typical (+0.0003 ± 0.0025) as well as random ones "
        "(-0.0001 ± 0.0022); per dataset `pure` is ahead by 0.010-0.017 in three settings "
        "(k=5 corr=0.9 x_noise 0 and 0.5, the two strongest shifts, and k=1 corr=0.9 "
        "x_noise=1.5; means over 5 seeds) and behind by about as much on auto-mpg (one run) "
        "and k=5 corr=0.1 x_noise=0. The rule keeps `bert`, the paper's, so no "
        "configuration changes; the next section scores `pure` on the test splits anyway, as "
        "a sensitivity run.",
    ),
    (
        "Tabular: the pure block form (sensitivity, 20 seeds)",
        "tabular_levers/block_pure/summary.md",
        '`block="pure"`, one model, the paper\'s configuration otherwise; scored on the test '
        "splits, so nothing is chosen from it. Reading, paired per seed with the paper's "
        "configuration (`tabular_levers/block_pure/paired.md`): in the 12 settings the mean "
        "moves by -0.008 to +0.009; beyond 2 standard errors only in three k=1 settings "
        "(corr=0.1 x_noise 0 and 0.5 up by 0.006 and 0.009, corr=0.9 x_noise=1.5 down by "
        "0.008); the two "
        "strongest-shift settings, where the least typical training rows had leaned to "
        "`pure`, move by +0.006 ± 0.012 and +0.003 ± 0.008, and auto-mpg by +0.015 ± 0.029. "
        "So the two forms generalise alike on these tables: the feed-forward layer and the "
        "normalisations after the mixture neither cause the remaining gap to the paper's "
        "column nor close it. Against the targets: >= the paper's attention in 5 of 12, >= "
        "the best baseline in 9 of 12, auto-mpg 0.755 ± 0.051. The fit times in the table "
        "are not comparable with the other runs: a review job shared the two cores during "
        "this run.",
    ),
    (
        "Tabular: Keras's Adam (fidelity check, 20 seeds)",
        "tabular_levers/adam_keras/summary.md",
        '`adam="keras"`: Adam exactly as the paper\'s Keras code ran it (epsilon 1e-7 on the '
        "uncorrected root second moment, on a loss averaged over all 6 locations of each "
        "masked copy; tested against Keras's update formula), one model, the paper's "
        "configuration otherwise. This was the one known difference left between our model "
        "and the paper's code; the run was planned before it ran "
        "(`tabular_levers/adam_keras/PLAN.md`: a sensitivity run, the default stays torch's "
        "Adam whatever the outcome). Reading, paired per seed with torch's Adam on the same "
        "seeds (`tabular_levers/adam_keras/paired.md`): no setting moves by more than 0.006 "
        "(-0.002 to +0.006, none beyond 2 standard errors; auto-mpg -0.002 ± 0.003), so the "
        "epsilon does not explain any difference from the paper's per-seed results, and the "
        "strong-shift settings stay where they were (k=5 corr=0.9 x_noise 0 and 0.5: -0.005 "
        "± 0.015 and -0.013 ± 0.009 against the paper). Against the targets: >= the paper's "
        "attention in 5 of 12, >= the best baseline in 9 of 12, auto-mpg 0.738. Fit times "
        "in the table are not comparable with the other runs (tests ran on the same cores).",
    ),
    (
        "Tabular: hiding part of each copy's context, chosen on training rows",
        "tabular_context_mask_selection.md",
        "`context_mask_rate = r`: each masked copy also hides each of its other columns behind "
        "the mask token with probability r, drawn afresh every epoch, so the model learns to "
        "predict from partial rows. The hope (`tabular_levers/context_mask/PLAN.md`, written "
        "before these runs): that a model which cannot lean on one of several correlated "
        "columns extrapolates better when the shift decorrelates them. Chosen by the rule "
        "in `select_tabular_option.py` on training rows only. Reading: pooled over all runs "
        "the candidates are indistinguishable on the least typical rows (+0.0009 ± 0.0036 "
        "and -0.0035 ± 0.0037), so 0, the paper's training, is kept; on rows with one cell "
        "hidden, 0.15 is ahead by +0.0050 ± 0.0030. Per dataset the signal splits: auto-mpg "
        "+0.115 (one run), k=5 corr=0.9 x_noise=0 -0.027 (0.15) and -0.034 (0.3). The "
        "per-run numbers for 0 equal the block selection's for `bert` to every digit: the "
        "fits are deterministic.",
    ),
    (
        "Tabular: hidden context 0.3 (sensitivity, 20 seeds)",
        "tabular_levers/context_mask/summary.md",
        "`context_mask_rate=0.3` (the largest candidate, run because the rule kept 0, as the "
        "plan said), one model, the paper's configuration otherwise; scored on the test "
        "splits, so nothing is chosen from it. Reading, paired per seed with the paper's "
        "configuration (`tabular_levers/context_mask/paired.md`): the hope is refuted where "
        "it mattered most. Where five correlated features act together and the shift is "
        "strong, partial rows *hurt*: -0.157 ± 0.015 (x_noise=0) and -0.075 ± 0.008 "
        "(x_noise=0.5), far below the paper's column; the other settings move by -0.020 to "
        "+0.005. auto-mpg gains +0.041 ± 0.018: 0.781 ± 0.031 for one model (the paper's "
        "configuration: 0.740 ± 0.061; three models averaged: 0.756 ± 0.027), the closest "
        "to the 0.80 target of any run, above the paper's best baseline (0.764) but not "
        "the paper's one-run 0.793. The least typical training rows had pointed the same "
        "way for auto-mpg and k=5 corr=0.9 x_noise=0, not at x_noise=0.5 (+0.003; previous "
        "section). Against the targets: >= the paper's attention "
        "in 3 of 12, >= the best baseline in 6 of 12. The estimator's default stays 0.",
    ),
    (
        "Tabular: hidden context chosen per dataset on training rows (20 seeds)",
        "tabular_levers/context_mask_search/summary.md",
        "Decided after the sensitivity run above had been seen (the plan, "
        "`tabular_levers/context_mask_search/PLAN.md`, says so): can a user who chooses "
        "`context_mask_rate` among 0, 0.15 and 0.3 on their own least typical training rows, "
        "one dataset at a time, get the auto-mpg gain without the loss where five features "
        "act together? Reading, paired per seed with the paper's configuration "
        "(`tabular_levers/context_mask_search/paired.md`): only partly. The choice leans the "
        "right way (0 in 17 of 20 runs of k=5 corr=0.9 x_noise=0, 12 of 20 at x_noise=0.5), "
        "but the few wrong picks cost a lot there: -0.022 ± 0.015 and -0.027 ± 0.010; "
        "auto-mpg, where the lever was chosen in 6 of 10 runs, gains only +0.012 ± 0.011 "
        "(0.752 ± 0.057); the k=1 settings move by -0.007 to +0.004. Net, no better than the "
        "paper's fixed configuration: >= the paper's attention in 3 of 12 (fixed: 7), >= "
        "the best baseline in 9 of 12 (fixed: 9). With ~500 held-out training rows the "
        "candidates differ by less than the noise of their scores (the pooled selection "
        "above: +0.0009 ± 0.0036), the same limit the budget search met. So "
        "`context_mask_rate` is not a remedy for covariate shift; it is a tool for rows that "
        "will often miss a column the others can stand in for (docs/tabular.md); the "
        "default stays 0.",
    ),
    (
        "Tabular: averaging the last epochs' weights, chosen on training rows",
        "tabular_average_selection.md",
        "`average_last = a`: the fitted model is the mean of the end-of-epoch weights of the "
        "last share a of the epochs (checkpoint averaging, stochastic weight averaging; the "
        "same training steps run, only the returned weights differ). The hope "
        "(`tabular_levers/average_last/PLAN.md`, written before these runs): Adam's constant "
        "learning rate leaves the last weights at one point of a noisy walk, and a mean of "
        "nearby solutions, reported to generalise better across domains (SWAD), might "
        "extrapolate better and vary less from seed to seed, at the cost of one fit. Chosen by "
        "the rule in `select_tabular_option.py` on training rows only. Reading: on the least "
        "typical rows the candidates are indistinguishable (-0.0006 ± 0.0012 and -0.0006 ± "
        "0.0017), so 0, the paper's training, is kept; on a random quarter (in-distribution) "
        "both lean ahead (+0.0014 ± 0.0013, +0.0021 ± 0.0016), within noise.",
    ),
    (
        "Tabular: the last half of the epochs averaged (sensitivity, 20 seeds)",
        "tabular_levers/average_last/summary.md",
        "`average_last=0.5` (the largest candidate, run because the rule kept 0, as the plan "
        "said), one model, the paper's configuration otherwise; scored on the test splits, "
        "so nothing is chosen from it. Reading, paired per seed with the paper's "
        "configuration on the same seeds (`tabular_levers/average_last/paired.md`): the same "
        "trade as every other lever, in a milder form. All nine settings where one feature "
        "acts or the five are weakly correlated gain (+0.001 to +0.007; the six k=1 settings "
        "by 1.5 to 4.6 standard errors), as three averaged models do, at the cost of one "
        "fit; where five correlated features act together the mean falls: -0.010 ± 0.004 "
        "(x_noise=0), -0.003 ± 0.003 (0.5) and -0.001 ± 0.001 (1.5), further below the "
        "paper's column at x_noise 0 and 0.5 (-0.021 ± 0.015, -0.015 ± 0.008). auto-mpg "
        "+0.009 ± 0.011 (0.749 ± 0.066). Against the targets: >= the paper's attention in "
        "10 of 12 (those two settings missing), >= the best baseline in 10 of 12 (gradient "
        "boosting ahead at k=1 corr=0.1 x_noise 0 and 0.5); not counted as met, since the "
        "rule on training rows did not choose it (a test-scored run, like early stopping's "
        "10 of 12 above). The estimator's default "
        "stays 0.",
    ),
    (
        "Tabular: training also on unlabeled held-out rows, on training rows",
        "tabular_unlabeled_selection.md",
        "`fit(X, y, X_unlabeled=...)`: rows without a label join the masked-word training "
        "with their target masked. The hope (`tabular_levers/unlabeled_test/PLAN.md`, "
        "written before these runs): every part of the model but the position embeddings "
        "is shared across columns, so predicting the shifted rows' own columns from each "
        "other could teach it how values go together there (self-supervised adaptation to "
        "the inputs to predict, as in test-time training). The signal on training rows "
        "only (the held-out quarter's features passed as `X_unlabeled`): pooled, nothing "
        "(-0.0001 ± 0.0026 on the least typical rows, +0.0002 ± 0.0023 on a random "
        "quarter); per dataset it leans up in most strongly correlated settings (k=5 "
        "corr=0.9 x_noise 0 and 0.5: +0.004, +0.017; k=1 corr=0.9: +0.001 to +0.008) and "
        "down in most weakly correlated ones and auto-mpg (-0.049, one run). On the "
        "held-out rows with one feature cell hidden (passed so to `fit`) it is lower by "
        "0.020 ± 0.005, as with the rows drawn column by column below.",
    ),
    (
        "Tabular: the rows to predict as unlabeled training rows (transductive, 20 seeds)",
        "tabular_levers/unlabeled_test/summary.md",
        "A different protocol from every other run here: attnmoe also trains on the test "
        "rows' features (never their labels), as a user who has the rows to score at hand "
        "can; the paper's models and the baselines are fitted on the training rows only. So "
        "it is not counted toward the issue's targets, and nothing was chosen from it (the "
        "plan fixed the run before it was made). Reading, paired per seed with the paper's "
        "configuration trained on the training rows alone "
        "(`tabular_levers/unlabeled_test/paired.md`): its largest gain is where the shift "
        "decorrelates five features that act together, a setting no inductive lever "
        "reached: k=5 corr=0.9 x_noise=0 +0.022 ± 0.010 (0.402, above the paper's 0.392); "
        "at x_noise=0.5 +0.010 ± 0.009 (0.267, the paper 0.269); the weakly correlated "
        "one-feature settings gain +0.008 to +0.013 (3.2 to 4.3 standard errors); "
        "it costs -0.009 ± 0.005 at k=5 corr=0.1 x_noise=0; the rest move by -0.001 to "
        "+0.004. auto-mpg +0.018 ± 0.020 (0.758 ± 0.046). Counted the same way as the "
        "inductive runs (not toward the targets): >= the paper's attention in 8 of 12, >= "
        "the best baseline in 11 of 12. The training-row signal above had pointed the "
        "right way for the two strong-shift five-feature settings and k=1 corr=0.9 "
        "x_noise=0, not for auto-mpg or the weakly correlated one-feature settings. In the "
        "simulation a fit trains on 1.8 times as many masked copies (auto-mpg: 1.5 times); "
        "mean `fit_seconds` over all runs 6.4 s against 3.8 s (two fits at a time on the "
        "2-core VM).",
    ),
    (
        "Tabular: unlabeled rows drawn column by column, chosen on training rows",
        "tabular_independent_rows_selection.md",
        "`independent_rows = s`: s times as many unlabeled rows as training rows are added, "
        "each feature cell drawn on its own from its column of the training rows, the target "
        "masked. The idea came after the transductive run above had been scored (its plan, "
        "`tabular_levers/independent_rows/PLAN.md`, says so): its inductive counterpart, "
        "rows whose columns do not go together, built from the training rows alone, judged "
        "by the same rule as every lever. Reading: on the least typical rows -0.0006 ± "
        "0.0025, so 0, the paper's training, is kept; per dataset it leans the same way as "
        "the unlabeled held-out rows did in the two strong-shift five-feature settings "
        "(+0.008, +0.011). With one feature cell hidden per held-out row it is lower by "
        "0.020 ± 0.004.",
    ),
    (
        "Tabular: unlabeled rows drawn column by column (sensitivity, 20 seeds)",
        "tabular_levers/independent_rows/summary.md",
        "`independent_rows=1` (as many drawn rows as training rows; run because the rule "
        "kept 0, as the plan said), one model, the paper's configuration otherwise; scored "
        "on the test splits, so nothing is chosen from it. Reading, paired per seed with "
        "the paper's configuration (`tabular_levers/independent_rows/paired.md`): the hope "
        "is refuted. In the two strong-shift five-feature settings, where the transductive "
        "run gained (most at x_noise=0), these rows lose: k=5 corr=0.9 "
        "x_noise 0 and 0.5 -0.018 ± 0.011 and -0.009 ± 0.006 (against the paper -0.029 ± "
        "0.012 and -0.022 ± 0.007); auto-mpg -0.018 ± 0.018 (0.722); the other ten "
        "settings move by -0.006 to +0.006. So the transductive gain comes from the rows to "
        "be predicted themselves, not from rows whose columns merely do not go together. "
        "Against the targets: >= the paper's attention in 7 of 12, >= the best baseline in "
        "9 of 12. Mean `fit_seconds` over all runs 7.0 s against 3.8 s (about 1.8 times the "
        "masked copies). The "
        "estimator's default stays 0.",
    ),
    (
        "Tabular: weight decay, chosen on training rows",
        "tabular_weight_decay_selection.md",
        "`weight_decay = w`: an L2 penalty added to the gradient, as torch's and Keras's Adam "
        "do (the paper's training: none, dropout 0.1). The hope "
        "(`tabular_levers/weight_decay/PLAN.md`, written before these runs): smaller weights "
        "lean less on any one learnt co-occurrence and might extrapolate more smoothly when "
        "the shift decorrelates the features. Chosen by the rule in `select_tabular_option.py` "
        "on training rows only. Reading: 0.0001 and 0.001 are indistinguishable from no "
        "penalty on the least typical rows (-0.0018 ± 0.0017, +0.0020 ± 0.0032) and on a "
        "random quarter; 0.01 underfits badly everywhere (-0.155 ± 0.016), so 0, the paper's "
        "training, is kept. Per dataset, 0.001 leans ahead where the features are strongly "
        "correlated (k=1 corr=0.9: +0.009 to +0.028; k=5 corr=0.9 x_noise=0.5: +0.017) and "
        "behind on auto-mpg (-0.049, one run) and k=1 corr=0.1 x_noise 0 and 1.5 (-0.014, "
        "-0.015), each simulation setting from five seeds' held-out rows.",
    ),
    (
        "Tabular: weight decay 0.001 (sensitivity, 20 seeds)",
        "tabular_levers/weight_decay/summary.md",
        "`weight_decay=0.001` (the non-zero candidate with the highest mean on the least "
        "typical training rows, run because the rule kept 0, as the plan said), one model, "
        "the paper's configuration otherwise; scored on the test splits, so nothing is "
        "chosen from it. Reading, paired per seed with the paper's configuration "
        "(`tabular_levers/weight_decay/paired.md`): all six k=1 settings rise, by +0.006 to "
        "+0.019 (1.6 to 4.2 standard errors); at k=1 corr=0.9 x_noise 0 and 0.5 (+0.018 ± "
        "0.005, +0.019 ± 0.005) about twice as much as any other lever measured. auto-mpg "
        "rises by +0.029 ± 0.020 (0.769 ± 0.039, above the paper's best baseline, 0.764; the "
        "paper's configuration: 0.740 ± 0.061). Where five features act "
        "the picture is mixed and mostly within noise: k=5 corr=0.9 x_noise=0.5 +0.009 ± "
        "0.007 and x_noise=0 +0.003 ± 0.010, but both x_noise=1.5 settings fall (corr=0.1 "
        "-0.007 ± 0.003, corr=0.9 -0.005 ± 0.003). Against the targets: >= the paper's "
        "attention in 7 of 12 (below in five of the six five-feature settings, all but k=5 "
        "corr=0.1 x_noise=0, by 0.001-0.009), >= the best baseline in 10 of 12 (gradient boosting "
        "ahead by 0.0002 at k=1 corr=0.1 x_noise=0, logistic regression by 0.003 at k=5 "
        "corr=0.1 x_noise=1.5); not counted as met, since the rule on training rows did not "
        "choose it (+0.0020 ± 0.0032 there, previous section). The estimator's default "
        "stays 0.",
    ),
    (
        "Tabular: the target column's weight in the loss, chosen on training rows",
        "tabular_target_weight_selection.md",
        "`target_weight = t`: the target location's masked prediction weighs t times a "
        "feature column's in the MLM loss (the paper's: 1, every location alike). The plan "
        "(`tabular_levers/target_weight/PLAN.md`, written before these runs) left the "
        "direction open: more weight spends the model on the one prediction that is scored, "
        "less makes it more generative. Chosen by the rule in `select_tabular_option.py` on "
        "training rows only. Reading: 1 has the highest mean on the least typical rows, so "
        "it is kept; 0.5 and 2 are within noise of it (-0.0020 ± 0.0033, -0.0029 ± 0.0032) "
        "and 4 is behind (-0.0091 ± 0.0033, also on a random quarter: -0.0075 ± 0.0021). "
        "auto-mpg's single run swings by ±0.115 (2 ahead, 0.5 behind): 7 of its 61 least "
        "typical training rows.",
    ),
    (
        "Tabular: target weight 0.5 (sensitivity, 20 seeds)",
        "tabular_levers/target_weight/summary.md",
        "`target_weight=0.5` (the other candidate with the highest mean on the least typical "
        "training rows, run because the rule kept 1, as the plan said), one model, the "
        "paper's configuration otherwise; scored on the test splits, so nothing is chosen "
        "from it. Reading, paired per seed with the paper's configuration "
        "(`tabular_levers/target_weight/paired.md`): the same trade as most levers. A more "
        "generative model gains a little where one feature acts (the six k=1 settings -0.000 "
        "to +0.006, none beyond 2.4 standard errors) and loses where five correlated features "
        "act together under strong shift: k=5 corr=0.9 x_noise 0 and 0.5 -0.015 ± 0.009 and "
        "-0.009 ± 0.005, further below the paper's column (-0.026 ± 0.016, -0.021 ± 0.010); "
        "auto-mpg +0.018 ± 0.022 (0.758 ± 0.048). Against the targets: >= the paper's "
        "attention in 8 of 12, >= the best baseline in 10 of 12 (gradient boosting ahead at "
        "k=1 corr=0.1 x_noise 0 and 0.5, by 0.002 and 0.006); not counted as met, since the "
        "rule on training rows did not choose it. The estimator's default stays 1.",
    ),
    (
        "Tabular: auto-mpg demo with the baselines rerun",
        "auto_mpg/summary.md",
        "Our logistic regression and random forest reproduce the paper's published numbers "
        "for those models on seed 0 (0.657, 0.721), which checks the data pipeline end to end. "
        "The demo runs every baseline: FT-Transformer (`rtdl_revisiting_models`, its package "
        "defaults, early stopping on a fifth of the training rows) was added to it later, "
        "its three fits appended to the same runs.csv (the other models' runs are "
        "unchanged): 0.755 ± 0.046 against attnmoe's 0.764 ± 0.025 on the same three seeds.",
    ),
    (
        "Tabular: imputation of held-out cells",
        "imputer.md",
        "Reading: attnmoe recovers the most hidden cells exactly on the simulation (0.292 "
        "against IterativeImputer's 0.230) and about as many as IterativeImputer on auto-mpg "
        "(0.753 ± 0.023 against 0.760 ± 0.013), in 0.9-8 s per fit and fill; "
        "IterativeImputer has the "
        "lower MAE on both. Training on partial rows (`context_mask_rate=0.15`, fixed before "
        "this benchmark was run with it) changes little here, where a row rarely misses "
        "more than one other cell: auto-mpg 0.760, the simulation 0.289, each within one sd "
        "of the plain model. This run follows the fix that leaves missing cells out of the "
        "training batches (before, a batch could hold only missing cells and stop the fit); "
        "on these tables with holes that changes which copies share a batch, so the numbers "
        "moved (the run before it: attnmoe 0.768 and 0.292, with partial rows 0.754 and "
        "0.299; the one move larger than either sd: the simulation with partial rows, 0.299 "
        "± 0.003 to 0.289 ± 0.008). attnmoe's fit-and-fill times were 12-31 % lower "
        "than in that run: this shared VM's speed varies between runs.",
    ),
    (
        "Cost knobs on auto-mpg: heads, layers, sparse gating",
        "cost/summary.md",
        "Reading (the paper's 200 epochs): the paper's configuration (dense gates, 5 "
        "heads, one layer) is the most accurate point and, with the one-head dense model, "
        "the cheapest: 0.764 ± 0.025 in 0.7 s through the compiled fused engine (one "
        "head: 0.664 in 0.65 s); no sparse-gating, two-layer or "
        "one-head variant beats it on mean accuracy, and every `top_k` or two-layer "
        "variant falls back to the torch engine, 20-50x slower. In this implementation "
        "`top_k` computes every gate score and then masks all but the k largest, so it "
        "sparsifies the explanation, not the compute. `top_k=1` with one head loses the "
        "most (0.52-0.56). Fit-time sd is mostly machine noise.",
    ),
    (
        "Cost knobs on the simulation",
        "cost/simulation/summary.md",
        "Reading: this grid runs 30 epochs, to keep its torch-engine fits on 2,000 rows "
        "short, so its models are far from converged: read it for cost (the dense one-layer "
        "models through the fused engine take 0.6-1 s, the rest 13-40 s), and for "
        "accuracy only where it is consistent: `top_k=1` loses 0.13-0.21 in three of the "
        "four head/layer settings.",
    ),
    (
        "Scale-out: data-parallel training",
        "ddp.md",
        "Reading: three runs of the same command on one day (this section and the next "
        "two); ranks that wait for the all-reduce by polling (`poll_allreduce`, now the "
        "default where the ranks fit the cores) are new in them. In the third run, the "
        "only one where each polled 2-process run directly follows the sleeping one, "
        "polling was faster in 19 of 20 repeats (median 1.07-1.11x per configuration); in "
        "the first two, where the polled runs came last in each repeat, in 31 of 40. The "
        "goal (2 processes >= 1.7x one process) is **met at 512 windows per step with "
        "polling and each process bound to its own core** (`bind_cores`) in all three "
        "runs: 1.79x, 1.72x and 1.79x (paired 1.87x, 1.84x and 1.72x); polling without "
        "binding gave 1.76x, 2.08x and 1.66x. At 128 windows per step it is **not met** "
        "reliably: polled and bound 1.42x, 1.61x and 1.71x, polled 1.51x, 1.63x and 1.61x. "
        "Sleeping ranks (DDP's default wait, and this project's before this change): "
        "1.27x, 1.42x and 1.44x at 128 windows, 1.77x, 1.81x and 1.46x at 512 (the four "
        "runs before these gave 1.51-1.53x at 512): the VM varies from run to run, so read "
        "the within-repeat ratios for the effect of polling and the several runs for the "
        "level. Two independent processes doing the same arithmetic without communication "
        "(the ceiling) reach 1.85-2.12x; polled DDP gets 74-98 % of it, sleeping DDP "
        "69-87 %. Memory stays flat while training on the 100M-token corpus (peak 472-477 "
        "MiB per process) and streaming a whole epoch of it (440 MiB at every sample after "
        "the start). On an idle 16-core host an earlier version reached 1.58-1.63x "
        '("other machines" below).',
    ),
    (
        "Scale-out: data-parallel training, second run",
        "ddp_run2.md",
        "Reading: the same command right after the first run (the first section reads all "
        "three runs).",
    ),
    (
        "Scale-out: data-parallel training, third run",
        "ddp_run3.md",
        "Reading: the same command after a review moved each polled run right after the "
        "sleeping one in every repeat and added the within-repeat comparison of the two "
        "(the first section reads all three runs).",
    ),
    (
        "Scale-out: where DDP's extra time per step goes",
        "ddp_overhead.md",
        "Reading: a DDP step takes 35.4 ms against 24.0 ms for the same step without "
        "communication (`solo`), and a barrier after each step, which exchanges nothing, "
        "already brings `solo` to 32.3 ms (73 % of the gap): the forward and backward passes, "
        "which contain no communication, run slower when the two ranks step together (forward "
        "11.4 vs 9.4 ms, backward 17.2 vs 13.7 ms, CPU time 30.3 vs 23.8 ms), so lockstep costs"
        " arithmetic, not only waiting. New in this run: a rank that waits by polling instead "
        "of sleeping keeps most of its speed. With a polled barrier (`barrier_spin`) the step "
        "takes 27.4 ms (forward 10.0, backward 15.2), removing 4.9 of the barrier's 8.3 ms; a "
        "rank that sleeps while it waits comes back slower (on this VM an idle virtual CPU may "
        "be descheduled and lose its caches). The same polling in a DDP communication hook "
        "(`ddp_spin`: one bucket, all-reduced and polled) gives 31.7 ms against 36.1 ms for one"
        " bucket waited for the usual way and 35.4 ms for DDP's defaults: about 4 ms (11 %) "
        "less per step, still 7.7 ms above `solo` where the bare all-reduce takes 1.3 ms. It is"
        " now an option of `train_mlm_distributed` (`poll_allreduce`, on by default where the "
        "ranks fit the cores), whose throughput the two previous sections measure. The usual "
        "knobs do not close the gap: pinning each rank to its own core (37.7 ms), one bucket "
        "(36.1 ms) or 0.25 MiB buckets (36.2 ms) against DDP's defaults (35.4 ms). Compressing "
        "the gradient (DDP's bf16 hook) would only shrink the all-reduce. Larger batches help: "
        "in each of the 12 configurations of the three runs above, 512 windows per step gave a "
        "higher speed-up than 128 (by 0.02x to 0.50x; in the four runs before them, with "
        "sleeping ranks, in 3 of 4). Earlier runs of this probe gave ddp / solo / barrier 64 / "
        "36.5 / 48 ms (commit 1f85c35), 49 / 28 / 43 ms (commit 2d24491, DDP's default buckets)"
        " and 49 / 33 / 45 ms (commit dbf9611, `ddp` with one bucket): across the four runs "
        "lockstep alone made up 40-75 % of the gap.",
    ),
    (
        "Scale-out: a larger model",
        "ddp_larger_model.md",
        "Reading: a larger model gives the same picture. With twice the width and four "
        "times the window (d_model = 256, L = 64: 5.0 MiB of gradient instead of 1.7, and "
        "0.14-0.56 s of arithmetic per step for one process), 2 processes give 1.42x one "
        "process at 32 windows (2,048 masked predictions) per step and 1.57x at 128 "
        "(8,192), against a ceiling of 1.80x and 1.95x: DDP gets 79-80 % of it, within the "
        "62-87 % the small model's sleeping ranks got in the runs above and the one before "
        "them, whatever the arithmetic per step or the size of the gradient (ranks that "
        "sleep while they wait: this run predates `poll_allreduce`). "
        "The 10M-token corpus here only checks memory for this model; the 100M-token run "
        "is in the first scale-out section.",
    ),
    ("Scale-out: other machines (GPU path, idle host)", "ddp_elsewhere.md", ""),
    ("Word analogies: evaluator speed", "analogy_speed.md", ""),
    ("Word analogies: pretrained embeddings (Tables 1-2)", "analogy_tables.md", ""),
    ("Word analogies: models trained on text", "text_analogy.md", ""),
]


# `attnmoe bench tabular` reports end with the paper's accuracy for every model it reports;
# the page shows that table once, in the first section that has it
PAPER_TABLE = "The paper's test accuracy for every model it reports"


def _drop_block(body: str, start: str, where: str) -> str:
    """``body`` without the paragraph that begins with ``start`` and the table after it."""
    lines = body.splitlines()
    if not any(line.startswith(start) for line in lines):
        return body
    i = next(k for k, line in enumerate(lines) if line.startswith(start))
    j = i + 2  # the paragraph's blank line, then the table
    while j < len(lines) and lines[j].startswith("|"):
        j += 1
    note = f"({start}: as in the section {where}.)"
    return "\n".join([*lines[:i], note, *lines[j:]])


def main() -> None:
    parts = [INTRO]
    paper_table_in = None
    for title, name, note in SECTIONS:
        path = RESULTS / name
        if not path.exists():
            continue
        body = path.read_text().strip()
        if PAPER_TABLE in body:
            if paper_table_in is not None:
                body = _drop_block(body, PAPER_TABLE, paper_table_in)
            else:
                paper_table_in = f"'{title}'"
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
