"""Write the shift facts of the real-table suite to benchmarks/results/real_tables/shift.md.

No model of the project is involved: rows, columns, classes, the cross-validated
AUC of HistGradientBoosting telling test rows from train rows, the label shift and
the majority-class accuracy (:func:`attnmoe.bench.real_tables.shift_facts`).

    python benchmarks/real_tables_shift.py
"""

from __future__ import annotations

from pathlib import Path

from attnmoe.bench.real_tables import shift_markdown, suite_shift_facts

OUT = Path(__file__).parent / "results" / "real_tables" / "shift.md"

if __name__ == "__main__":
    facts = suite_shift_facts(seed=0)
    text = (
        "# Real tables: how far the test rows are from the training rows\n\n"
        "Written by `python benchmarks/real_tables_shift.py` (no attnmoe model involved). "
        "Domain AUC: HistGradientBoosting (native categoricals, defaults), 5-fold stratified "
        "CV (seed 0), telling test rows from train rows on the features; 0.5 = no covariate "
        "shift. Where the split variable stays a feature (its values differ between the "
        "sets), that AUC is 1 by construction; the next column leaves it out. Label shift: "
        "total variation distance between the train and test class frequencies. Majority "
        "accuracy: always the training rows' most frequent class, on the test rows. "
        "The rules of every split: RULES.md.\n\n" + shift_markdown(facts)
    )
    OUT.write_text(text)
    print(text)
