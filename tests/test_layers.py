"""The package's shape holds: no import circle, and no layer imports one above it (the layers
are listed in moss/__init__.py and scripts/import_graph.py)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "import_graph.py"


def check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(root), "--check"],
                          capture_output=True, text=True, timeout=60)


def test_no_circle_and_no_upward_import():
    done = check(ROOT)
    assert done.returncode == 0, done.stdout
    assert "circles: 0" in done.stdout and "upward imports: 0" in done.stdout


def test_an_upward_import_and_a_circle_are_caught(tmp_path):
    shutil.copytree(ROOT / "moss", tmp_path / "moss", ignore=shutil.ignore_patterns("web", "__pycache__"))
    store = tmp_path / "moss" / "store" / "database.py"
    store.write_text(store.read_text(encoding="utf-8") + "\n\ndef _late():\n    from moss.server import app  # noqa\n",
                     encoding="utf-8")
    engine = tmp_path / "moss" / "inference" / "engine.py"
    engine.write_text(engine.read_text(encoding="utf-8") + "\nfrom moss.inference import llama  # noqa\n",
                      encoding="utf-8")
    done = check(tmp_path)
    assert done.returncode == 1
    assert "moss.store.database (store) -> moss.server.app (server)" in done.stdout
    assert "circles: 0" not in done.stdout
    # a circle is printed as the modules that import each other round it, in name order
    circles = [line for line in done.stdout.splitlines() if " <-> " in line]
    assert any("moss.inference.engine <-> " in line and " moss.inference.llama" in line for line in circles)
