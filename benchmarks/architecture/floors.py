"""Lines of code per floor of the package, at any git revision (before or after the split).

    python benchmarks/architecture/floors.py [REV ...]      # default: HEAD

Files of revisions before the split into floors are placed by `ticketlab._moved.MOVED` (the map of
old module names to new ones), so the two layouts are counted by the same floors. Counts are
non-blank lines of the .py files under src/ticketlab.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from ticketlab._floors import FLOORS, floor_of  # noqa: E402
from ticketlab._moved import new_name  # noqa: E402


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout


def module_of(path: str) -> str:
    parts = list(Path(path).with_suffix("").parts[1:])  # drop "src"
    if parts[-1] == "__init__":
        parts.pop()
    name = ".".join(parts)
    return new_name(name) or name


def lines_per_floor(rev: str) -> list[int]:
    counts = [0] * len(FLOORS)
    for path in git("ls-tree", "-r", "--name-only", rev, "src/ticketlab").split():
        if path.endswith(".py"):
            text = git("show", f"{rev}:{path}")
            counts[floor_of(module_of(path))] += sum(1 for line in text.splitlines() if line.strip())
    return counts


def main(revs: list[str]) -> None:
    revs = revs or ["HEAD"]
    table = {rev: lines_per_floor(rev) for rev in revs}
    print("| floor | " + " | ".join(revs) + " |")
    print("|---|" + "---:|" * len(revs))
    for i, names in enumerate(FLOORS):
        print(f"| {i} {'/'.join(names)} | " + " | ".join(str(table[r][i]) for r in revs) + " |")
    print("| total | " + " | ".join(str(sum(table[r])) for r in revs) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
