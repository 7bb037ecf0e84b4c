"""The README's real-checkpoint table is the one the committed records make (scripts/real_model_table.py)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _block(text: str) -> str:
    return text[text.index("<!-- real-model:begin -->") : text.index("<!-- real-model:end -->")]


def test_the_readme_table_is_made_from_the_committed_records(tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    before = _block(readme.read_text())
    readme.write_text(readme.read_text().replace(before, "<!-- real-model:begin -->\n"))
    for run in ("ppl", "passkey"):  # the records only: the script also writes table.md beside them
        (tmp_path / "records" / run).mkdir(parents=True)
        shutil.copy(ROOT / "docs" / "real-model" / run / "results.jsonl", tmp_path / "records" / run)
    script = ROOT / "scripts" / "real_model_table.py"
    args = ["--records", str(tmp_path / "records"), "--readme", str(readme)]
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True, cwd=tmp_path)
    assert _block(readme.read_text()) == before
    assert (tmp_path / "records" / "table.md").read_text() == (ROOT / "docs" / "real-model" / "table.md").read_text()
