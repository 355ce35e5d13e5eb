"""Where the tldr corpus is: a small sample shipped in tests/data, the full one beside the repository.

The sample is what every clone tests against. The full corpus (4,931 English and Japanese pages) is
used as well when a checkout of it sits at ../shared/corpus/tldr next to the repository (or where
TLDR_CORPUS points).

Regenerate the sample from a full corpus with `python -m testing.corpus PATH_TO_FULL_TLDR`.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TLDR_SAMPLE = REPO / "tests" / "data" / "tldr"
TLDR_FULL = Path(os.environ.get("TLDR_CORPUS") or REPO.parent / "shared" / "corpus" / "tldr")
TLDR_FULL_PAGES = 4931
# Pages the tests name: an edited English page and a Japanese page whose spans are checked.
NAMED_PAGES = ("pages/common/git.md", "pages/common/tar.md", "pages.ja/common/tar.md")
LANGUAGES = {"pages/common": 110, "pages.ja/common": 40}
LARGEST_PER_LANGUAGE = 5


def _is_plain(name: str) -> bool:
    stem = name[: -len(".md")]
    return bool(stem) and stem[0].isalnum() and all(ch.isalnum() or ch in "._-" for ch in stem)


def select_sample(full: Path, rng_seed: int = 2026) -> list[str]:
    """Relative paths of the sample: every page with an odd name (`..md`, `[.md`, `c++.md`…), the named
    pages, the largest pages of each language (several chunks each), then random pages up to the quota."""
    rng = random.Random(rng_seed)
    chosen: list[str] = ["LICENSE.md", *NAMED_PAGES]
    for folder, quota in LANGUAGES.items():
        pages = sorted((full / folder).iterdir(), key=lambda p: p.name)
        names = [p.name for p in pages if p.name.endswith(".md")]
        picked = {n for n in names if not _is_plain(n)}
        picked |= {p.split("/")[-1] for p in NAMED_PAGES if p.startswith(folder + "/")}
        by_size = sorted(names, key=lambda n: (-(full / folder / n).stat().st_size, n))
        picked |= set(by_size[:LARGEST_PER_LANGUAGE])
        rest = [n for n in names if n not in picked]
        picked |= set(rng.sample(rest, max(0, quota - len(picked))))
        chosen += [f"{folder}/{n}" for n in sorted(picked) if f"{folder}/{n}" not in chosen]
    return chosen


def write_sample(full: Path, target: Path = TLDR_SAMPLE) -> list[str]:
    chosen = select_sample(full)
    for rel in chosen:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(full / rel, target / rel)
    return chosen


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m testing.corpus PATH_TO_FULL_TLDR")
    written = write_sample(Path(sys.argv[1]))
    print(f"wrote {len(written)} files to {TLDR_SAMPLE}")
