"""What the bench scripts share: Django in the bench's own process (to create its projects and keys)
and writing only the script's own section of bench/README.md."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

BENCH_HELPER = True  # imported by the benchmarks; bench/run_all.py does not run it

BASE_DIR = Path(__file__).resolve().parent.parent
README = BASE_DIR / "bench" / "README.md"


def django_setup(*, database_url: str, label: str) -> None:
    """Django on the bench database, without Redis (the bench process only prepares data)."""
    os.environ.update(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="project.settings")
    os.environ.setdefault("SECRET_KEY", f"bench-{label}-" + "x" * 40)
    os.environ.pop("REDIS_URL", None)
    if str(BASE_DIR) not in sys.path:
        sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()


def readme_section_write(*, name: str, section: str) -> None:
    """Replace the ``<!-- name:begin … -->`` … ``<!-- name:end -->`` section of bench/README.md with
    ``section`` (which carries both markers), or append it; other benches own the rest of the file."""
    text = README.read_text() if README.exists() else (
        "# Benchmarks\n\n`make bench` runs every script in this folder (`bench/run_all.py`).\n")
    section = section.rstrip("\n") + "\n"
    pattern = re.compile(rf"<!-- {re.escape(name)}:begin.*?<!-- {re.escape(name)}:end -->\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    README.write_text(text)
