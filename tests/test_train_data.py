"""Data pipeline: tokenizer loading, packing, deterministic batches, every source, evaluation sets."""

from __future__ import annotations

import json

import pytest
import torch

from lowrank.config import ConfigError
from lowrank.train.config import DataConfig
from lowrank.train.data import (
    BlockBatches,
    build_block_datasets,
    check_data_source,
    eval_batches,
    load_tokenizer,
    make_batches,
    StreamBatches,
)
from train_support import make_tokenizer, write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = write_corpus(tmp_path_factory.mktemp("corpus"))
    tokenizer_path = make_tokenizer(folder, folder / "tokenizer.json")
    return folder, tokenizer_path


def files_config(corpus, tmp_path, **changes) -> DataConfig:
    folder, tokenizer = corpus
    values = dict(
        source="files",
        train_files=[str(folder / "train" / "*.txt")],
        validation_files=[str(folder / "validation" / "*.txt")],
        tokenizer=str(tokenizer),
        seq_len=16,
        cache_dir=str(tmp_path / "cache"),
    )
    values.update(changes)
    return DataConfig(**values)


def test_tokenizer_json_gets_eos(corpus):
    tokenizer = load_tokenizer(str(corpus[1]))

    assert tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.eos_token_id == 0
    assert tokenizer.decode(tokenizer("The king speaks.")["input_ids"]) == "The king speaks."


def test_missing_tokenizer_hints_setup(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_tokenizer(str(tmp_path / "tokenizer.json"))

    assert "not found" in str(error.value)
    assert "bash setup.sh" in str(error.value)


def test_unknown_hub_tokenizer_offline_is_config_error():
    with pytest.raises(ConfigError, match="loading it from the Hugging Face hub failed"):
        load_tokenizer("no-such-org/no-such-tokenizer")


def test_blocks_have_seq_len_and_document_separators(corpus, tmp_path):
    config = files_config(corpus, tmp_path)
    tokenizer = load_tokenizer(config.tokenizer)

    train, validation = build_block_datasets(config, tokenizer, seed=0, with_validation=True)

    lengths = {len(row) for row in train["input_ids"]}
    assert lengths == {16}
    flat = [token for row in train["input_ids"] for token in row]
    assert flat.count(tokenizer.eos_token_id) >= 20  # one after each of the 24 documents, minus the dropped tail
    assert len(validation) > 0


def test_block_batches_are_seeded_and_cover_each_epoch(corpus, tmp_path):
    config = files_config(corpus, tmp_path)
    train, _ = build_block_datasets(config, load_tokenizer(config.tokenizer), seed=0, with_validation=False)
    first = BlockBatches(train, 4, seed=7)
    second = BlockBatches(train, 4, seed=7)
    other_seed = BlockBatches(train, 4, seed=8)

    batches = [first.next_batch() for _ in range(5)]

    assert all(torch.equal(batch, second.next_batch()) for batch in batches)
    assert not torch.equal(batches[0], other_seed.next_batch())
    walker = BlockBatches(train, 1, seed=7)
    seen = {tuple(walker.next_batch()[0].tolist()) for _ in range(len(train))}
    assert len(seen) == len({tuple(row) for row in train["input_ids"]})


def test_block_batches_resume_from_position(corpus, tmp_path):
    config = files_config(corpus, tmp_path)
    train, _ = build_block_datasets(config, load_tokenizer(config.tokenizer), seed=0, with_validation=False)
    uninterrupted = BlockBatches(train, 3, seed=1)
    expected = [uninterrupted.next_batch() for _ in range(2 * len(train))]  # spans several epochs

    interrupted = BlockBatches(train, 3, seed=1)
    for _ in range(len(train)):
        interrupted.next_batch()
    resumed = BlockBatches(train, 3, seed=1)
    resumed.load_state_dict(interrupted.state_dict())

    rest = [resumed.next_batch() for _ in range(len(train))]
    assert all(torch.equal(a, b) for a, b in zip(rest, expected[len(train):]))


def test_too_little_training_data_is_config_error(corpus, tmp_path):
    config = files_config(corpus, tmp_path, seq_len=16)
    train, _ = build_block_datasets(config, load_tokenizer(config.tokenizer), seed=0, with_validation=False)

    with pytest.raises(ConfigError, match="fewer than one micro-batch"):
        BlockBatches(train, len(train) + 1, seed=0)


def test_eval_set_has_exactly_requested_batches(corpus, tmp_path):
    config = files_config(corpus, tmp_path)
    _, validation = build_block_datasets(config, load_tokenizer(config.tokenizer), seed=0, with_validation=True)

    batches = eval_batches(validation, 3, 2)

    assert len(batches) == 3
    assert [batch.shape for batch in batches] == [torch.Size([2, 16])] * 3
    rows = {tuple(row) for row in validation["input_ids"]}
    assert all(tuple(row.tolist()) in rows for row in torch.cat(batches))
    assert torch.equal(torch.cat(batches), torch.cat(eval_batches(validation, 3, 2)))


def test_eval_set_samples_whole_split(corpus, tmp_path):
    config = files_config(corpus, tmp_path)
    _, validation = build_block_datasets(config, load_tokenizer(config.tokenizer), seed=0, with_validation=True)
    first_half = {tuple(row) for row in validation["input_ids"][: len(validation) // 2]}

    batches = eval_batches(validation, 4, 2)

    sampled = [tuple(row.tolist()) for row in torch.cat(batches)]
    assert len(set(sampled)) == 8
    assert any(row not in first_half for row in sampled)


def test_short_validation_split_uses_every_block(corpus, tmp_path):
    config = files_config(corpus, tmp_path)
    _, validation = build_block_datasets(config, load_tokenizer(config.tokenizer), seed=0, with_validation=True)

    batches = eval_batches(validation, len(validation), 2)

    assert sum(batch.shape[0] for batch in batches) == len(validation)


def test_missing_data_file_names_pattern(corpus, tmp_path):
    config = files_config(corpus, tmp_path, train_files=[str(tmp_path / "missing" / "*.txt")])

    with pytest.raises(ConfigError, match=r"data.train_files: no file matches .*missing"):
        check_data_source(config, needs_validation=True)


def test_missing_validation_files_is_config_error(corpus, tmp_path):
    config = files_config(corpus, tmp_path, validation_files=[])

    with pytest.raises(ConfigError, match="validation_files is empty"):
        check_data_source(config, needs_validation=True)
    check_data_source(config, needs_validation=False)


def test_missing_embedded_corpus_hints_setup(tmp_path):
    config = DataConfig(source="embedded", corpus_dir=str(tmp_path / "corpus"))

    with pytest.raises(ConfigError, match="bash setup.sh"):
        check_data_source(config, needs_validation=True)


def write_jsonl_dataset(corpus, folder):
    """A dataset folder laid out like a hub dataset repository: train.jsonl and validation.jsonl."""
    folder.mkdir()
    for split in ("train", "validation"):
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            for path in sorted((corpus[0] / split).glob("*.txt")):
                handle.write(json.dumps({"text": path.read_text(), "url": path.name}) + "\n")
    return folder


def test_hub_source_reads_local_dataset_folder(corpus, tmp_path):
    folder = write_jsonl_dataset(corpus, tmp_path / "dataset")
    hub = files_config(corpus, tmp_path, source="hub", path=str(folder), train_files=[], validation_files=[])
    files = files_config(
        corpus, tmp_path,
        train_files=[str(folder / "train.jsonl")], validation_files=[str(folder / "validation.jsonl")],
    )
    tokenizer = load_tokenizer(hub.tokenizer)

    hub_train, hub_validation = build_block_datasets(hub, tokenizer, seed=0, with_validation=True)
    files_train, _ = build_block_datasets(files, tokenizer, seed=0, with_validation=False)

    assert hub_train["input_ids"] == files_train["input_ids"]
    assert len(hub_validation) > 0


def test_streamed_hub_source_resumes_position(corpus, tmp_path):
    folder = write_jsonl_dataset(corpus, tmp_path / "dataset")
    config = files_config(
        corpus, tmp_path, source="hub", path=str(folder), streaming=True, shuffle_buffer=1,
        train_files=[], validation_files=[],
    )
    tokenizer = load_tokenizer(config.tokenizer)

    def fresh():
        train, validation = build_block_datasets(config, tokenizer, seed=0, with_validation=True)
        return make_batches(train, 2, seed=0), validation

    uninterrupted, validation = fresh()
    assert isinstance(uninterrupted, StreamBatches)
    expected = [uninterrupted.next_batch() for _ in range(8)]
    interrupted, _ = fresh()
    for _ in range(3):
        interrupted.next_batch()
    state = interrupted.state_dict()
    resumed, _ = fresh()
    resumed.load_state_dict(state)

    assert all(torch.equal(a, b) for a, b in zip([resumed.next_batch() for _ in range(5)], expected[3:]))
    assert len(eval_batches(validation, 2, 2)) == 2


def test_disk_source_reads_saved_dataset(corpus, tmp_path):
    import datasets

    texts = {
        split: [path.read_text() for path in sorted((corpus[0] / split).glob("*.txt"))]
        for split in ("train", "validation")
    }
    saved = datasets.DatasetDict({split: datasets.Dataset.from_dict({"text": rows}) for split, rows in texts.items()})
    saved.save_to_disk(str(tmp_path / "saved"))
    config = files_config(corpus, tmp_path, source="disk", path=str(tmp_path / "saved"))

    train, validation = build_block_datasets(config, load_tokenizer(config.tokenizer), seed=0, with_validation=True)

    assert len(train) > 0
    assert len(validation) > 0


def test_disk_source_missing_split_is_config_error(corpus, tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a b c"]})}).save_to_disk(str(tmp_path / "saved"))
    config = files_config(corpus, tmp_path, source="disk", path=str(tmp_path / "saved"))

    with pytest.raises(ConfigError, match="has no split 'validation'"):
        build_block_datasets(config, load_tokenizer(config.tokenizer), seed=0, with_validation=True)


def test_embedded_source_reads_corpus_folder(corpus, tmp_path):
    folder, tokenizer_path = corpus
    embedded = DataConfig(
        source="embedded", corpus_dir=str(folder), tokenizer=str(tokenizer_path), seq_len=16,
        cache_dir=str(tmp_path / "cache"),
    )
    tokenizer = load_tokenizer(embedded.tokenizer)

    train, validation = build_block_datasets(embedded, tokenizer, seed=0, with_validation=True)
    files_train, files_validation = build_block_datasets(
        files_config(corpus, tmp_path), tokenizer, seed=0, with_validation=True
    )

    assert train["input_ids"] == files_train["input_ids"]
    assert validation["input_ids"] == files_validation["input_ids"]
