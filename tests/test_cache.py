"""The cache of decoded programs: hits, staleness, damage and hostile entries."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from pimc.isa import cache
from pimc.isa.parse import load_program, parse_program

SAMPLE = Path(__file__).parent.parent / "samples" / "ripple_add8_loop.uop"


@pytest.fixture
def store(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("PIMC_CACHE_DIR", str(folder))
    return folder


def _copy(tmp_path: Path) -> Path:
    prog = tmp_path / "p.uop"
    prog.write_text(SAMPLE.read_text())
    return prog


def test_second_load_reads_the_cache_and_equals_a_parse(tmp_path, store):
    prog = _copy(tmp_path)
    first = load_program(prog)
    assert len(list(store.iterdir())) == 1
    assert list(tmp_path.iterdir()) != [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "cache", "p.uop"]  # nothing beside the program
    second = load_program(prog)
    assert second == first == parse_program(SAMPLE.read_text(), str(prog))
    assert second.lines == first.lines


def test_an_edited_program_is_parsed_again(tmp_path, store):
    prog = _copy(tmp_path)
    load_program(prog)
    prog.write_text(prog.read_text().replace(".crossbars 1", ".crossbars 2"))
    assert load_program(prog).crossbars == 2


def test_damaged_and_hostile_entries_are_misses(tmp_path, store):
    prog = _copy(tmp_path)
    expected = load_program(prog)
    (entry,) = store.iterdir()
    key = bytes.fromhex(entry.stem)
    entry.write_bytes(cache.MAGIC + key + b"not a pickle")
    assert load_program(prog) == expected

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    entry.write_bytes(cache.MAGIC + key + pickle.dumps(Boom()))
    assert cache.load(key) is None  # refused, not run
    assert load_program(prog) == expected


def test_an_unwritable_cache_folder_only_costs_the_parse(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PIMC_CACHE_DIR", str(blocker / "sub"))
    prog = _copy(tmp_path)
    assert load_program(prog) == load_program(prog, cache=False)


def test_old_entries_are_pruned(tmp_path, store, monkeypatch):
    monkeypatch.setattr(cache, "MAX_ENTRIES", 2)
    for n in range(4):
        prog = tmp_path / f"p{n}.uop"
        prog.write_text(SAMPLE.read_text() + f"# {n}\n")
        load_program(prog)
    assert len(list(store.glob("*.uopcache"))) == 2
