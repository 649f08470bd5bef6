"""pyproject.toml's version floors admit no release that lacks what the code uses."""

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# package -> the oldest release with everything attnmoe calls, and what that is
NEEDED = {
    "scikit-learn": ((1, 6), "sklearn.utils.validation.validate_data, ensure_all_finite"),
}


def _floors() -> dict[str, tuple[int, ...]]:
    dependencies = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    floors = {}
    for requirement in dependencies:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", requirement.replace(" ", ""))
        if match:
            floors[match[1]] = tuple(int(part) for part in match[2].split("."))
    return floors


def test_the_floors_admit_no_release_without_what_the_code_uses():
    floors = _floors()
    for package, (needed, what) in NEEDED.items():
        assert floors[package] >= needed, f"{package}>={needed} is needed for {what}"
