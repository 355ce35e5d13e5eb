"""A deterministic synthetic markdown corpus for benchmarks: mixed English and Japanese pages of 2-10 KB,
each a title, headings and paragraphs, written as files a content source reads.

The same (pages, seed) always writes the same bytes, so two bench runs ingest the same corpus; `edit`
changes a deterministic share of the pages for a "1 % changed" phase.

    python -m testing.synthetic_corpus OUT_DIR [PAGES]
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

_EN_WORDS: tuple[str, ...] = tuple(
    str.split(
        "archive backup cluster compress daemon deploy directory encrypt export filter format index install kernel "
        "listen mount network package partition pipeline process query record remote replica restore schedule "
        "server session shell socket storage stream switch token update upload volume window worker the a of to "
        "and with for from into when each every only before after while returns prints lists creates removes"
    )
)
_JA_WORDS: tuple[str, ...] = tuple(
    str.split(
        "ファイル ディレクトリ 圧縮 展開 表示 作成 削除 設定 実行 接続 送信 受信 検索 一覧 更新 保存 復元 "
        "ネットワーク サーバー プロセス コマンド オプション 出力 入力 形式 名前 場合 する した して を に は が の と で"
    )
)
MIN_BYTES, MAX_BYTES = 2_000, 10_000


def _sentence(rng: random.Random, japanese: bool) -> str:
    words = [rng.choice(_JA_WORDS if japanese else _EN_WORDS) for _ in range(rng.randint(6, 18))]
    if japanese:
        return "".join(words) + "。"
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def page_text(index: int, seed: int = 0, revision: int = 0) -> str:
    """Page `index` of the corpus; a later `revision` rewrites one of its paragraphs."""
    rng = random.Random(f"{seed}:{index}")
    japanese = index % 3 == 0
    target = rng.randint(MIN_BYTES, MAX_BYTES)
    parts = [f"# {'ページ' if japanese else 'Page'} {index}\n"]
    size = len(parts[0].encode())
    section = 0
    while True:
        if section == 0 or rng.random() < 0.3:
            section += 1
            heading = f"\n## {_sentence(rng, japanese)[:-1]}\n"
            parts.append(heading)
            size += len(heading.encode())
        paragraph = "\n" + " ".join(_sentence(rng, japanese) for _ in range(rng.randint(2, 6))) + "\n"
        if size + len(paragraph.encode()) > target and size >= MIN_BYTES:
            break
        parts.append(paragraph)
        size += len(paragraph.encode())
    if revision:
        edit_rng = random.Random(f"{seed}:{index}:r{revision}")
        at = edit_rng.randrange(1, len(parts))
        parts[at] = f"\n{_sentence(edit_rng, japanese)} (revision {revision})\n"
    return "".join(parts)


def page_path(index: int) -> str:
    return f"{'ja' if index % 3 == 0 else 'en'}/{index // 1000:03d}/page-{index:06d}.md"


def write_corpus(out: Path, pages: int, seed: int = 0) -> int:
    """Write `pages` pages under `out`; returns the bytes written."""
    total = 0
    for i in range(pages):
        path = out / page_path(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = page_text(i, seed).encode()
        path.write_bytes(data)
        total += len(data)
    return total


def edit_corpus(out: Path, pages: int, share: float, seed: int = 0, revision: int = 1) -> list[int]:
    """Rewrite one paragraph in `share` of the pages (every k-th page); returns their indexes."""
    step = max(1, round(1 / share))
    edited = list(range(0, pages, step))
    for i in edited:
        (out / page_path(i)).write_text(page_text(i, seed, revision), encoding="utf-8")
    return edited


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m testing.synthetic_corpus OUT_DIR [PAGES]")
    n = int(sys.argv[2]) if len(sys.argv) == 3 else 2000
    written = write_corpus(Path(sys.argv[1]), n)
    print(f"wrote {n} pages, {written:,} bytes")
