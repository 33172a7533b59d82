"""Write the image's pip inputs: the project's dependencies and pins, with torch left out of both.

    python docker/requirements.py OUT_DIR   ->  OUT_DIR/requirements.txt, OUT_DIR/constraints.txt

Each image stage installs torch first, from the PyTorch index of its flavour (CPU or CUDA); the
``torch==2.13.0+cpu`` pin in constraints.txt would make pip refuse the CUDA build, so it is dropped
here and the stage's own ``pip install torch==...`` decides. Everything else keeps its exact pin.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_name(line: str) -> str:
    """The normalised distribution name of a requirement line (``Torch==2`` -> ``torch``)."""
    match = _NAME.match(line)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def without_torch(lines: list[str]) -> list[str]:
    return [line for line in lines if line.strip() and requirement_name(line) != "torch"]


def main(out_dir: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "requirements.txt").write_text("\n".join(without_torch(project["dependencies"])) + "\n")
    (out_dir / "constraints.txt").write_text("\n".join(without_torch(pins)) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
