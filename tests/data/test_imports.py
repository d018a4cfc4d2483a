from __future__ import annotations

import subprocess
import sys


def test_detection_loading_and_checks_import_without_heavy_libraries(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n', encoding="utf-8")
    code = (
        "import sys\n"
        "import tuitune.data as d\n"
        "from tuitune.data import load_rows, detect_format, FORMATS, sample_dataset_path\n"
        "from tuitune.data.problems import format_problems\n"
        "import tuitune.cli.data\n"
        f"loaded = load_rows({str(path)!r})\n"
        "assert loaded.format == 'alpaca'\n"
        "assert sample_dataset_path().exists()\n"
        "heavy = ('torch', 'transformers', 'datasets', 'trl', 'peft', 'pyarrow')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
