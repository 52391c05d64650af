"""Folders of the repository the tests read, computed once from this file's place in it."""

from __future__ import annotations

from pathlib import Path

#: The repository root (the folder holding ``lit_kd/`` and ``tests/``).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: ``../shared`` beside the repository: pretrained weights and real data archives, when this machine has them.
SHARED = REPO_ROOT.parent / "shared"
RECIPES = REPO_ROOT / "recipes"
BENCHMARKS = REPO_ROOT / "benchmarks"
NOTEBOOKS = REPO_ROOT / "notebooks"
#: This folder (``tests/support``), where scripts that tests run as subprocesses live.
SUPPORT = Path(__file__).resolve().parent
