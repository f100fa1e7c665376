"""Text data for pre-training: load through ``datasets``, tokenize, pack into fixed-length blocks, batch.

Every source (the embedded corpus, local files, a Hugging Face dataset, a saved dataset) goes through
``datasets``: documents are tokenized without special tokens, each is followed by the tokenizer's
end-of-text token, and the token stream is cut into blocks of ``seq_len`` tokens (the tail of each
tokenization batch of 1000 documents that does not fill a block is dropped). Tokenized blocks of a
non-streamed dataset are cached by ``datasets``, so only the first run pays for tokenization.

Batch order is deterministic, so that a resumed run sees exactly the batches an uninterrupted run
would have seen:

- :class:`BlockBatches` (non-streamed data) draws micro-batches from a permutation of the blocks
  that depends only on the seed and the epoch; its position is the number of micro-batches drawn.
- :class:`StreamBatches` (streamed data, such as C4) saves the ``datasets`` stream position. The
  shuffle buffer is not part of that state, so after a resume the order of the next
  ``shuffle_buffer`` examples differs from an uninterrupted run.
"""

from __future__ import annotations

import glob
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lowrank.config import ConfigError
from lowrank.train.config import DataConfig

__all__ = [
    "BlockBatches",
    "StreamBatches",
    "build_block_datasets",
    "check_data_source",
    "eval_batches",
    "load_tokenizer",
    "make_batches",
]

logger = logging.getLogger(__name__)

_MAP_BATCH = 1000
"""Documents per ``datasets.map`` call of tokenization and packing."""
_SETUP_HINT = (
    "run 'bash setup.sh' in the repository root to build the embedded corpus and tokenizer, and start "
    "train.py from there (relative paths are resolved against the current directory)"
)


# ----------------------------------------------------------------------------------------- tokenizer


def load_tokenizer(spec: str) -> Any:
    """Load a tokenizer from a ``tokenizer.json`` file, a tokenizer folder, or a hub name.

    The tokenizer must have an end-of-text token, which separates documents in the packed stream.
    A ``tokenizer.json`` without one gets ``<|endoftext|>`` when its vocabulary has that token
    (the embedded tokenizer does).

    Raises:
        ConfigError: when the tokenizer cannot be found or loaded, or has no end-of-text token.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = Path(spec)
    if path.is_file():
        try:
            tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path))
        except Exception as error:  # tokenizers raises its own Exception type on a bad file
            raise ConfigError(f"data.tokenizer: cannot read {spec!r} as a tokenizer.json: {error}") from error
        if tokenizer.eos_token is None and "<|endoftext|>" in tokenizer.get_vocab():
            tokenizer.eos_token = "<|endoftext|>"
    elif path.is_dir():
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError) as error:
            raise ConfigError(f"data.tokenizer: cannot load a tokenizer from folder {spec!r}: {error}") from error
    elif spec.endswith(".json"):
        raise ConfigError(f"data.tokenizer: tokenizer file {spec!r} not found; {_SETUP_HINT}, or set data.tokenizer")
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec)
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"data.tokenizer: {spec!r} is not a file or folder here, and loading it from the Hugging Face "
                f"hub failed ({error}); {_SETUP_HINT}, or give a tokenizer path"
            ) from error

    if tokenizer.eos_token_id is None:
        raise ConfigError(
            f"data.tokenizer: {spec!r} has no end-of-text (eos) token, which separates documents; "
            "use a tokenizer that defines one"
        )
    # Documents are tokenized whole and packed here, so the model's length limit does not apply.
    tokenizer.model_max_length = int(1e30)
    return tokenizer


# -------------------------------------------------------------------------------------------- checks


def check_data_source(config: DataConfig, needs_validation: bool) -> None:
    """Check that the configured files and folders exist, before any model is built.

    Raises:
        ConfigError: naming the key and value that point nowhere, and the fix.
    """
    if config.source == "embedded":
        if not list((Path(config.corpus_dir) / "train").glob("*.txt")):
            raise ConfigError(f"data.corpus_dir: no embedded corpus in {config.corpus_dir!r}; {_SETUP_HINT}")
    elif config.source == "files":
        _expand(config.train_files, "data.train_files")
        if needs_validation:
            if not config.validation_files:
                raise ConfigError(
                    "data.validation_files is empty; list held-out files for evaluation, or set eval.batches: 0"
                )
            _expand(config.validation_files, "data.validation_files")
    elif config.source == "disk":
        if not Path(config.path).is_dir():
            raise ConfigError(f"data.path: saved dataset folder {config.path!r} not found; check the path")


def _expand(patterns: list[str], key: str) -> list[str]:
    files: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True))
        if not matches:
            raise ConfigError(f"{key}: no file matches {pattern!r}; check the path (relative to the current directory)")
        files.extend(matches)
    return files


# ------------------------------------------------------------------------------------------ datasets


def build_block_datasets(config: DataConfig, tokenizer: Any, *, seed: int, with_validation: bool) -> tuple[Any, Any]:
    """Return ``(train_blocks, validation_blocks)``: datasets with one ``input_ids`` block per row.

    ``validation_blocks`` is ``None`` when ``with_validation`` is false. Streamed training data is
    shuffled with a buffer of ``config.shuffle_buffer`` examples and ``seed``.
    """
    import datasets

    train = _load_split(config, config.train_split, "train", config.train_files)
    validation = (
        _load_split(config, config.validation_split, "validation", config.validation_files) if with_validation else None
    )
    if isinstance(train, datasets.IterableDataset):
        train = train.shuffle(seed=seed, buffer_size=config.shuffle_buffer)

    tokenize = _Tokenize(tokenizer, config.text_field, tokenizer.eos_token_id)
    pack = _Pack(config.seq_len)
    blocks = []
    for name, split in (("train", train), ("validation", validation)):
        if split is None:
            blocks.append(None)
            continue
        if config.text_field not in (split.column_names or [config.text_field]):
            raise ConfigError(
                f"data.text_field: the {name} split has no column {config.text_field!r}; "
                f"its columns are {split.column_names}"
            )
        split = split.select_columns([config.text_field])
        options: dict[str, Any] = {"batched": True, "batch_size": _MAP_BATCH}
        if isinstance(split, datasets.Dataset):
            options.update(num_proc=config.num_proc, desc=f"tokenize {name}")
        tokenized = split.map(tokenize, remove_columns=[config.text_field], **options)
        if isinstance(split, datasets.Dataset):
            options["desc"] = f"pack {name} into {config.seq_len}-token blocks"
        blocks.append(tokenized.map(pack, **options))
    return blocks[0], blocks[1]


def _load_split(config: DataConfig, split: str, role: str, files: list[str]) -> Any:
    import datasets

    try:
        if config.source == "disk":
            saved = datasets.load_from_disk(config.path)
            if isinstance(saved, datasets.DatasetDict):
                if split not in saved:
                    raise ConfigError(f"data.{role}_split: {config.path!r} has no split {split!r}; it has {list(saved)}")
                return saved[split]
            return saved
        if config.source == "hub":
            return datasets.load_dataset(
                config.path, config.name, split=split, streaming=config.streaming, cache_dir=config.cache_dir
            )

        if config.source == "embedded":
            paths = sorted(str(path) for path in (Path(config.corpus_dir) / role).glob("*.txt"))
            if not paths:
                raise ConfigError(f"data.corpus_dir: no {role} documents in {config.corpus_dir!r}; {_SETUP_HINT}")
        else:
            paths = _expand(files, f"data.{role}_files")
        builder, options = _file_builder(paths, config)
        return datasets.load_dataset(
            builder,
            data_files={role: paths},
            split=role,
            streaming=config.streaming and config.source == "files",
            cache_dir=config.cache_dir,
            **options,
        )
    except ConfigError:
        raise
    except (FileNotFoundError, ValueError) as error:
        where = config.path if config.source in ("hub", "disk") else role
        raise ConfigError(f"data: cannot load the {role} split ({split!r}) of {where!r}: {error}") from error


def _file_builder(paths: list[str], config: DataConfig) -> tuple[str, dict]:
    def kind(path: str) -> str:
        name = path[:-3] if path.endswith(".gz") else path
        if name.endswith(".txt"):
            return "text"
        if name.endswith((".json", ".jsonl")):
            return "json"
        raise ConfigError(f"data: {path!r} is neither text (.txt) nor JSON Lines (.jsonl, .json); convert it or rename it")

    kinds = {kind(path) for path in paths}
    if len(kinds) > 1:
        raise ConfigError(f"data: the files mix text and JSON Lines ({paths[:3]}...); use one kind per split")
    builder = kinds.pop()
    if builder == "text":
        if config.text_field != "text":
            raise ConfigError(f"data.text_field: text files have the column 'text', not {config.text_field!r}")
        return builder, {"sample_by": config.sample_by}
    return builder, {}


class _Tokenize:
    """``datasets.map`` function: token ids of each document, followed by the end-of-text id."""

    def __init__(self, tokenizer: Any, text_field: str, eos_id: int):
        self.tokenizer = tokenizer
        self.text_field = text_field
        self.eos_id = eos_id

    def __call__(self, batch: dict) -> dict:
        encoded = self.tokenizer(batch[self.text_field], add_special_tokens=False)["input_ids"]
        return {"input_ids": [ids + [self.eos_id] for ids in encoded]}


class _Pack:
    """``datasets.map`` function: join a batch of token lists and cut it into full blocks."""

    def __init__(self, seq_len: int):
        self.seq_len = seq_len

    def __call__(self, batch: dict) -> dict:
        stream = [token for ids in batch["input_ids"] for token in ids]
        usable = len(stream) - len(stream) % self.seq_len
        return {"input_ids": [stream[start : start + self.seq_len] for start in range(0, usable, self.seq_len)]}


# ------------------------------------------------------------------------------------------ batches


class BlockBatches:
    """Micro-batches of blocks from a non-streamed dataset, in a seeded order that resumes exactly.

    Epoch ``e`` visits the blocks in the order of ``numpy.random.default_rng([seed, e]).permutation``;
    global micro-batch ``j`` holds stream positions ``[j·b, (j+1)·b)`` of the concatenated epochs,
    so a micro-batch may span two epochs. Process ``rank`` of ``world_size`` draws the global
    micro-batches ``j = i·world_size + rank``, so the processes split each step's data without
    overlap. ``position`` counts the micro-batches this process has drawn (the same on every rank).
    """

    def __init__(self, blocks: Any, micro_batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.blocks = blocks.with_format("torch")
        self.size = len(blocks)
        if self.size < micro_batch_size:
            raise ConfigError(
                f"the training split has {self.size} blocks, fewer than one micro-batch of {micro_batch_size}; "
                "use more data, a smaller train.micro_batch_size or a smaller data.seq_len"
            )
        self.micro_batch_size = micro_batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.position = 0
        self._epoch = -1
        self._order: np.ndarray | None = None

    def next_batch(self) -> torch.Tensor:
        """Return the next ``(micro_batch_size, seq_len)`` int64 tensor of token ids."""
        start = (self.position * self.world_size + self.rank) * self.micro_batch_size
        indices = [self._index(start + offset) for offset in range(self.micro_batch_size)]
        self.position += 1
        return self.blocks[indices]["input_ids"]

    def _index(self, stream_position: int) -> int:
        epoch, offset = divmod(stream_position, self.size)
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            self._epoch = epoch
        return int(self._order[offset])

    @property
    def epoch(self) -> float:
        """Fraction of passes over the training blocks so far, by all processes together."""
        return self.position * self.world_size * self.micro_batch_size / self.size

    def state_dict(self) -> dict:
        return {"kind": "blocks", "position": self.position, "size": self.size, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "blocks":
            raise ValueError(f"the checkpoint's data state is for {state.get('kind')!r} data, not a non-streamed dataset")
        if state["size"] != self.size:
            logger.warning(
                "the training split now has %d blocks, the checkpoint was taken with %d; the batch order "
                "after resuming differs from the original run",
                self.size, state["size"],
            )
        self.position = int(state["position"])


class StreamBatches:
    """Micro-batches from a streamed dataset; the stream restarts with a new epoch when it ends.

    NOTE: streamed text is downloaded, tokenized and packed in the training process, between
    updates, so on a fast GPU it can limit throughput. Worker processes (a ``DataLoader`` over the
    stream's shards) would overlap it with training, but are not implemented.
    """

    def __init__(self, blocks: Any, micro_batch_size: int):
        self.blocks = blocks
        self.micro_batch_size = micro_batch_size
        self.position = 0
        self.epoch_index = 0
        self._iterator = None

    def next_batch(self) -> torch.Tensor:
        """Return the next ``(micro_batch_size, seq_len)`` int64 tensor of token ids."""
        rows: list[list[int]] = []
        restarted = False
        while len(rows) < self.micro_batch_size:
            if self._iterator is None:
                self._iterator = iter(self.blocks)
            try:
                rows.append(next(self._iterator)["input_ids"])
                restarted = False
            except StopIteration:
                if restarted:
                    raise ConfigError("the streamed training split yields no complete block; check data.seq_len")
                self.epoch_index += 1
                self.blocks.set_epoch(self.epoch_index)
                self._iterator = None
                restarted = True
        self.position += 1
        return torch.tensor(rows, dtype=torch.long)

    @property
    def epoch(self) -> float:
        return float(self.epoch_index)

    def state_dict(self) -> dict:
        # The datasets state holds only plain values; JSON keeps the checkpoint weights_only-loadable.
        return {
            "kind": "stream",
            "position": self.position,
            "epoch": self.epoch_index,
            "stream": json.dumps(self.blocks.state_dict()),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "stream":
            raise ValueError(f"the checkpoint's data state is for {state.get('kind')!r} data, not a streamed dataset")
        self.position = int(state["position"])
        self.epoch_index = int(state["epoch"])
        self.blocks.set_epoch(self.epoch_index)
        self.blocks.load_state_dict(json.loads(state["stream"]))
        self._iterator = None


def make_batches(
    train_blocks: Any, micro_batch_size: int, seed: int, rank: int = 0, world_size: int = 1
) -> BlockBatches | StreamBatches:
    """Wrap training blocks in the batch source that fits them (streamed or not).

    With ``world_size > 1`` each process gets its own share: every ``world_size``-th micro-batch of
    a non-streamed dataset, or ``datasets.distributed.split_dataset_by_node``'s share of a stream.
    """
    import datasets

    if isinstance(train_blocks, datasets.IterableDataset):
        if world_size > 1:
            from datasets.distributed import split_dataset_by_node

            train_blocks = split_dataset_by_node(train_blocks, rank=rank, world_size=world_size)
        return StreamBatches(train_blocks, micro_batch_size)
    return BlockBatches(train_blocks, micro_batch_size, seed, rank, world_size)


def eval_batches(validation_blocks: Any, batches: int, batch_size: int) -> list[torch.Tensor]:
    """Return the fixed evaluation set of ``batches × batch_size`` validation blocks, batched.

    A non-streamed split is sampled with a fixed permutation (seed 0, the same for every run), so
    the set spans all validation documents instead of the first files only. A streamed split gives
    its first blocks. When the split has fewer blocks, all of them are used (the last batch may be
    shorter).

    Raises:
        ConfigError: when the validation split has no complete block.
    """
    import datasets

    requested = batches * batch_size
    if isinstance(validation_blocks, datasets.IterableDataset):
        rows = [example["input_ids"] for example in validation_blocks.take(requested)]
        tensor = torch.tensor(rows, dtype=torch.long) if rows else torch.empty(0, dtype=torch.long)
    else:
        count = min(requested, len(validation_blocks))
        indices = np.random.default_rng(0).permutation(len(validation_blocks))[:count].tolist()
        tensor = validation_blocks.with_format("torch")[indices]["input_ids"] if count else torch.empty(0)
    if tensor.numel() == 0:
        raise ConfigError("the validation split has no complete block of data.seq_len tokens; use more validation text")
    if tensor.shape[0] < requested:
        logger.warning(
            "the validation split has %d blocks, fewer than eval.batches × batch size = %d; evaluating on all of them",
            tensor.shape[0], requested,
        )
    return list(torch.split(tensor, batch_size))
