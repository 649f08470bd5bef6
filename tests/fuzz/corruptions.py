"""Hypothesis strategies that damage a copy of a saved model folder, as disks and people do."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

JSON_FILES = ("config.json", "classifier.json", "manifest.json")
#: what a field's value may be replaced by
ODD_VALUES = [None, "x", "", 0, -1, 1.5, 1e300, 10**13, True, [], {}, [1, 2], {"a": 1}]


def files_of(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _field_paths(value, prefix=()) -> list[tuple]:
    """Every key path inside a JSON value (dict keys and list indices)."""
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _field_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value[:4]):
            paths += _field_paths(item, (*prefix, i))
    return paths


@dataclass
class Corruption:
    """One damage to one file of a folder, drawn from ``data`` when applied."""

    kind: str  # flip, truncate, field, swap, delete

    def apply(self, folder: Path, other: Path, data) -> str:
        """Damage ``folder`` (``other``: a different model's folder); say what was done."""
        names = files_of(folder)
        if self.kind == "field":
            jsons = [n for n in names if n.endswith(JSON_FILES)]
            name = data.draw(st.sampled_from(jsons), label="file")
            try:
                doc = json.loads((folder / name).read_text())
            except ValueError:  # an earlier damage made it unreadable
                return "nothing"
            paths = _field_paths(doc)
            if not paths:
                return "nothing"
            path = data.draw(st.sampled_from(paths), label="field")
            value = data.draw(st.sampled_from(ODD_VALUES), label="value")
            target = doc
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
            (folder / name).write_text(json.dumps(doc))
            return f"{name}: {list(path)} = {value!r}"
        name = data.draw(st.sampled_from(names), label="file")
        file = folder / name
        if self.kind == "delete":
            file.unlink()
            return f"deleted {name}"
        if self.kind == "swap":
            theirs = [n for n in files_of(other) if Path(n).name == Path(name).name]
            if not theirs:
                return "nothing"
            source = data.draw(st.sampled_from(theirs), label="from")
            shutil.copyfile(other / source, file)
            return f"{name} <- other {source}"
        content = bytearray(file.read_bytes())
        if not content:
            return "nothing"
        at = data.draw(st.integers(0, len(content) - 1), label="at")
        if self.kind == "truncate":
            file.write_bytes(bytes(content[:at]))
            return f"{name} cut to {at} bytes"
        content[at] ^= data.draw(st.integers(1, 255), label="xor")
        file.write_bytes(bytes(content))
        return f"{name}: byte {at} flipped"


corruptions = st.lists(
    st.sampled_from(["flip", "truncate", "field", "swap", "delete"]).map(Corruption),
    min_size=1,
    max_size=2,
)


def damaged_copy(folder: Path, other: Path, into: Path, damage: list[Corruption], data):
    """A copy of ``folder`` at ``into`` with ``damage`` done; the list of what was done."""
    shutil.copytree(folder, into)
    return [c.apply(into, other, data) for c in damage]
