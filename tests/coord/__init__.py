"""Tests of obscura.coord: the contract suite over every implementation, plus backend specifics."""
