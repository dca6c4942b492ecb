"""The documentation holds together: the configuration table names exactly the variables that
``segmenter/config.py`` reads, the README stays one screen-ful of pages, and every relative link in
the README and ``docs/`` reaches a file and, where it names one, a heading of that file."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250


def read_variables() -> set[str]:
    """The names config.py passes to its readers (``_int(env, "NAME", ...)`` and the like)."""
    source = (ROOT / "segmenter" / "config.py").read_text()
    names = set(re.findall(r"_\w+\(env, \"([A-Z0-9_]+)\"", source))
    for group in re.findall(r"_url\(env, ([^)]*)\)", source):  # a URL has alternative names
        names |= set(re.findall(r"\"([A-Z0-9_]+)\"", group))
    return names


def documented_variables() -> set[str]:
    """The variables named in the first column of docs/configuration.md's table."""
    rows = [line for line in (ROOT / "docs" / "configuration.md").read_text().splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z0-9_]+)`", row.split("|")[1])}


def test_configuration_table_matches_the_settings_code():
    read, documented = read_variables(), documented_variables()
    assert len(read) > 30, sorted(read)  # the pattern still finds config.py's readers
    assert read - documented == set(), "read by config.py but not documented"
    assert documented - read == set(), "documented but not read by config.py"


def test_the_compose_file_passes_every_setting():
    """A variable set in .env reaches the containers: docker-compose.yml lists every one config.py reads
    (METRICS_DIR keeps its per-host default inside the models volume)."""
    compose = (ROOT / "docker-compose.yml").read_text()
    listed = set(re.findall(r"^  ([A-Z0-9_]+): ", compose, re.MULTILINE))
    assert read_variables() - {"METRICS_DIR"} - listed == set(), "read by config.py but not passed by compose"


def test_readme_is_short():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES


def slug(title: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert broken == []
