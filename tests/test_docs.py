"""The docs name only what a reader can open: no path of one machine, and every relative link resolves."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", ROOT / "BENCHMARKS.md", *ROOT.glob("docs/*.md"), *ROOT.glob("benchmarks/*.md")])
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|tmp|root|home|Users)/[\w./+-]+")
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_path_of_one_machine(doc):
    found = [
        (n, m.group()) for n, line in enumerate(doc.read_text().splitlines(), 1) for m in MACHINE_PATH.finditer(line)
    ]
    assert not found, f"{doc.name} names paths a reader cannot open: {found}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    links = [m.group(1) for m in LINK.finditer(doc.read_text()) if "://" not in m.group(1)]
    missing = [link for link in links if not (doc.parent / link).exists()]
    assert not missing, f"{doc.name} links to files that are not in the repository: {missing}"
