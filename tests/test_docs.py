"""The docs: the README stays short (a newcomer's five minutes), its links point at files that
exist, docs/index.md (the site's front page) is the README with its links made relative to docs/,
and `mkdocs build --strict` passes, so a broken link or a page left out of the site fails the suite.

    python tests/test_docs.py      # writes docs/index.md from the README again
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_README = 15_000  # bytes


def index_from_readme(readme: str) -> str:
    text = readme.replace("](docs/images/", "](images/").replace("](docs/", "](")
    return re.sub(r"(?<!!)\[([^\]]+)\]\(((?:models|assets|benchmarks|examples|tests)/[^)]+)\)", r"\1 (`\2`)", text)


def test_the_readme_is_short_and_its_links_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= MAX_README, f"README.md is {len(readme.encode())} bytes; move detail to docs/"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README.md links to {target}, which is not there"
    assert readme.count("```bash\npip install torch==2.13.0 -e . && rtseg run\n") == 1  # the Quick start


def test_the_sites_front_page_is_the_readme():
    assert (ROOT / "docs" / "index.md").read_text() == index_from_readme((ROOT / "README.md").read_text()), \
        "docs/index.md is out of date: python tests/test_docs.py writes it again"


@pytest.mark.skipif(shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists(),
                    reason="mkdocs is not installed (pip install mkdocs; it is in the dev extras)")
def test_mkdocs_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).parent / "mkdocs")
    proc = subprocess.run([mkdocs, "build", "--strict", "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "usage" / "index.html").is_file()


if __name__ == "__main__":
    (ROOT / "docs" / "index.md").write_text(index_from_readme((ROOT / "README.md").read_text()))
    print("wrote docs/index.md")
