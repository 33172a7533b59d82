"""The project's structural promises, checked on every test run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=os.environ.copy())


def test_import_contracts_hold() -> None:
    """modelsvc never imports Django or the service; services and selectors never import views or workers."""
    out = _run(str(BIN / "lint-imports"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_django_checks_and_migrations_are_clean() -> None:
    check = _run(sys.executable, "manage.py", "check")
    assert check.returncode == 0, check.stderr
    drift = _run(sys.executable, "manage.py", "makemigrations", "--check", "--dry-run")
    assert drift.returncode == 0, drift.stdout + drift.stderr


def test_label_space_imports_without_django() -> None:
    code = "import sys, labeling.labelspace; assert 'django' not in sys.modules, 'labelspace pulled in django'"
    out = _run(sys.executable, "-c", code)
    assert out.returncode == 0, out.stderr


def test_modelsvc_imports_without_django() -> None:
    code = ("import sys, modelsvc.training, modelsvc.inference, modelsvc.acquisition, modelsvc.artifacts;"
            "assert 'django' not in sys.modules, 'modelsvc pulled in django'")
    out = _run(sys.executable, "-c", code)
    assert out.returncode == 0, out.stderr


def test_modelsvc_has_no_import_cycle() -> None:
    """Inside modelsvc imports run one way (e.g. training -> finetune -> fitting), so each module reads on its own."""
    import grimp

    graph = grimp.build_graph("modelsvc")
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.append(" -> ".join((importer, *back)))
    assert not cycles, "import cycles in modelsvc:\n" + "\n".join(cycles)
