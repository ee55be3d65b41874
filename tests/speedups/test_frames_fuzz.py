"""Replays every committed seed of the frames fuzz target (fuzz/corpus/frames) through its check."""

import pathlib

import pytest

from fuzz.frames_target import check

CORPUS = sorted((pathlib.Path(__file__).resolve().parents[2] / "fuzz" / "corpus" / "frames").iterdir())


def test_corpus_is_there():
    assert len(CORPUS) >= 6


@pytest.mark.parametrize("seed", CORPUS, ids=lambda path: path.name)
def test_seed(seed):
    check(seed.read_bytes())
