"""The documentation matches the code: server reference pages are regenerated and compared."""

from pathlib import Path

from tango_servers.stack.reference import write_reference

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_server_reference_pages_match_the_running_servers(stack, tmp_path: Path) -> None:
    written = write_reference(stack.tango_host, tmp_path)
    assert written
    stale = [
        p.name
        for p in written
        if not (DOCS / "servers" / p.name).is_file() or (DOCS / "servers" / p.name).read_text() != p.read_text()
    ]
    assert not stale, f"regenerate with: python -m tango_servers.stack.reference --tango-host HOST ({stale})"


def test_pages_the_architecture_page_links_to_exist() -> None:
    text = (DOCS / "architecture.md").read_text()
    for name in ("deployment.md", "ophyd_tango.md", "redis.md", "pva.md", "sardana.md", "benchmarks.md"):
        assert f"]({name})" in text
        assert (DOCS / name).is_file(), name
