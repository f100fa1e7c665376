"""Run configuration of ``train.py``: model, data, optimizer, schedule, evaluation, logging, checkpoints.

A run YAML is read by :func:`load_run_config` in three steps, all before validation, so that every
mistake is reported by :func:`lowrank.config.from_dict` with its dotted path:

1. ``include:`` (a path or a list of paths, relative to the file that names it) may appear in any
   mapping. The included files are deep-merged in order, then the including mapping's own keys are
   merged on top, so the including file wins. Mappings merge key by key; lists and scalars are
   replaced whole.
2. Keys that contain a dot or a bracket, such as ``groups[0].rank: 32`` under ``optimizer:``, are
   overrides relative to the mapping they sit in. They apply after the merge, which is how a run
   changes one field of a list item that an included file defined.
3. ``--set key=value`` overrides from the command line apply last, at the top level; the value is
   parsed as YAML (``--set train.max_steps=10``, ``--set optimizer.lr=3e-4``).

Example::

    name: quickstart
    model: {include: model/cpu_9m.yaml}
    optimizer:
      include: optim/subtrack_pp.yaml
      groups[0].rank: 32
    train: {max_steps: 300, batch_size: 16}
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from lowrank.config import ConfigError, from_dict, load_yaml, to_dict
from lowrank.optim_config import OptimizerConfig

__all__ = [
    "CheckpointConfig",
    "DataConfig",
    "EvalConfig",
    "LogConfig",
    "ModelConfig",
    "RunConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_override",
    "load_run_config",
    "parse_overrides",
    "resolve_includes",
]


@dataclass
class ModelConfig:
    """Shape of a ``transformers.LlamaForCausalLM``, built from scratch (no weights are loaded)."""

    hidden_size: int = 512
    """Width of the residual stream and of every attention projection."""
    intermediate_size: int = 1376
    """Width of the SwiGLU MLP."""
    num_hidden_layers: int = 8
    """Transformer blocks."""
    num_attention_heads: int = 8
    """Query heads; ``hidden_size`` must be divisible by it."""
    num_key_value_heads: int | None = None
    """Heads of keys and values (grouped-query attention); ``None`` means ``num_attention_heads``."""
    vocab_size: int | None = None
    """Rows of the embedding; ``None`` takes the tokenizer's size."""
    max_position_embeddings: int = 1024
    """Longest sequence in tokens the rotary embedding is set up for; ``data.seq_len`` may not exceed it."""
    rms_norm_eps: float = 1e-6
    """Epsilon of the RMSNorm layers."""
    rope_theta: float = 10000.0
    """Base of the rotary position embedding's frequencies."""
    initializer_range: float = 0.02
    """Standard deviation of the normal initialization of linear and embedding weights."""
    hidden_act: str = "silu"
    """Activation of the gated MLP (``silu`` for LLaMA's SwiGLU)."""
    tie_word_embeddings: bool = False
    """Share one matrix between the input embedding and the output head."""
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    """Attention kernel: ``sdpa`` uses ``torch.nn.functional.scaled_dot_product_attention``."""

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads != 0:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        heads = self.num_key_value_heads or self.num_attention_heads
        if self.num_attention_heads % heads != 0:
            raise ConfigError(
                f"num_attention_heads {self.num_attention_heads} is not divisible by num_key_value_heads {heads}"
            )
        for name in ("hidden_size", "intermediate_size", "num_hidden_layers", "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class DataConfig:
    """Where text comes from, how it is tokenized, and the block length.

    Sources (every one goes through the ``datasets`` API):

    - ``embedded``: the corpus that ``bash setup.sh`` builds under ``corpus_dir``.
    - ``files``: local ``.txt`` files (one document per file, or per line or paragraph with
      ``sample_by``) or JSON Lines files (``.jsonl``, ``.json``, optionally ``.gz``) with a
      ``text_field``. Paths and glob patterns are relative to the current directory.
    - ``hub``: ``datasets.load_dataset(path, name)``, a Hugging Face dataset such as
      ``allenai/c4`` with ``name: en`` (or a local dataset folder), optionally streamed.
    - ``disk``: a ``DatasetDict`` saved with ``save_to_disk`` at ``path``.
    """

    source: Literal["embedded", "files", "hub", "disk"] = "embedded"
    """Source of the text; the class description explains each one."""
    corpus_dir: str = "data/corpus"
    """Folder of the embedded corpus (``train/*.txt`` and ``validation/*.txt``)."""
    train_files: list[str] = field(default_factory=list)
    """Paths or glob patterns of the training files, for ``files``."""
    validation_files: list[str] = field(default_factory=list)
    """Paths or glob patterns of the validation files, for ``files``."""
    sample_by: Literal["document", "paragraph", "line"] = "document"
    """How a ``.txt`` file is cut into documents."""
    path: str | None = None
    """Dataset name or folder for ``hub``; ``save_to_disk`` folder for ``disk``."""
    name: str | None = None
    """Dataset configuration for ``hub`` (``en`` for C4)."""
    train_split: str = "train"
    """Split to train on, for ``hub`` and ``disk``."""
    validation_split: str = "validation"
    """Split to evaluate on, for ``hub`` and ``disk``."""
    text_field: str = "text"
    """Column (or JSON key) that contains the text."""
    streaming: bool = False
    """Stream a ``hub`` dataset instead of downloading it whole (the usual choice for C4)."""
    shuffle_buffer: int = 10000
    """Examples in the shuffle buffer of a streamed dataset."""
    tokenizer: str = "data/tokenizer.json"
    """A ``tokenizer.json`` file, a tokenizer folder, or a Hugging Face hub name such as ``t5-base``."""
    seq_len: int = 256
    """Tokens per training sequence; documents are joined with the end-of-text token and cut into
    blocks of this length."""
    cache_dir: str | None = None
    """Cache folder of ``datasets`` (tokenized blocks are cached there); ``None`` uses its default."""
    num_proc: int | None = None
    """Processes for tokenization of non-streamed data; ``None`` tokenizes in this process."""

    def __post_init__(self):
        if self.seq_len < 2:
            raise ConfigError(f"seq_len must be at least 2 tokens, got {self.seq_len}")
        if self.shuffle_buffer < 1:
            raise ConfigError(f"shuffle_buffer must be at least 1, got {self.shuffle_buffer}")
        if self.source == "files" and not self.train_files:
            raise ConfigError("source 'files' needs train_files (paths or glob patterns)")
        if self.source in ("hub", "disk") and not self.path:
            raise ConfigError(f"source {self.source!r} needs path (a dataset name or folder)")


@dataclass
class TrainConfig:
    """The optimization loop. Every count is in optimizer updates unless it says otherwise."""

    max_steps: int = 1000
    """Optimizer updates to train for."""
    batch_size: int = 64
    """Sequences per optimizer update, summed over all data-parallel processes."""
    micro_batch_size: int | None = None
    """Sequences per forward and backward pass of one process; ``batch_size / (micro_batch_size ×
    processes)`` passes are accumulated per update. ``None`` means ``batch_size`` divided by the
    number of processes (no accumulation)."""
    grad_clip: float = 1.0
    """Maximum global gradient norm; 0 disables clipping (the norm is still logged)."""
    precision: Literal["auto", "float32", "bfloat16", "bf16-autocast"] = "auto"
    """``bfloat16`` keeps weights in bf16 (as GaLore's scripts do); ``bf16-autocast`` keeps float32
    weights and runs matrix products in bf16. ``auto`` is ``bfloat16`` on CUDA and ``float32`` on
    the CPU."""
    max_nonfinite_in_a_row: int = 5
    """Stop with an error after this many consecutive updates with a non-finite loss or gradient
    norm; each such update is skipped."""
    layerwise: bool = False
    """Update each parameter from its gradient hook as soon as the last micro-batch completes its
    gradient, and free that gradient, so fewer gradients are alive at once (GaLore's per-layer
    mode). It needs ``grad_clip: 0``, because global clipping needs every gradient first, and one
    process, because the hooks fire before data-parallel averaging. A non-finite loss is logged
    and counted, but its update has already been applied."""
    zero_redundancy: bool = False
    """Shard the optimizer state across data-parallel processes with
    ``torch.distributed.optim.ZeroRedundancyOptimizer``; each process keeps the state of whole
    matrices only."""

    def __post_init__(self):
        if self.max_steps < 1:
            raise ConfigError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        micro = self.micro_batch_size or self.batch_size
        if micro < 1 or self.batch_size % micro != 0:
            raise ConfigError(
                f"batch_size {self.batch_size} is not a multiple of micro_batch_size {micro}; "
                "pick a micro_batch_size that divides batch_size"
            )
        if self.grad_clip < 0:
            raise ConfigError(f"grad_clip must be >= 0, got {self.grad_clip}")
        if self.max_nonfinite_in_a_row < 1:
            raise ConfigError(f"max_nonfinite_in_a_row must be at least 1, got {self.max_nonfinite_in_a_row}")
        if self.layerwise and self.grad_clip > 0:
            raise ConfigError(
                f"layerwise: true cannot apply grad_clip {self.grad_clip}: global gradient-norm clipping needs "
                "every gradient before the first update; set train.grad_clip: 0"
            )
        if self.layerwise and self.zero_redundancy:
            raise ConfigError("layerwise and zero_redundancy cannot be combined; choose one")

    @property
    def accumulation_steps(self) -> int:
        """Forward and backward passes per optimizer update in a single process."""
        return self.batch_size // (self.micro_batch_size or self.batch_size)

    def split(self, world_size: int) -> tuple[int, int]:
        """Return ``(micro_batch_size, accumulation_steps)`` for each of ``world_size`` processes.

        Raises:
            ConfigError: when ``batch_size`` does not divide evenly.
        """
        micro = self.micro_batch_size or self.batch_size // world_size
        if micro < 1 or self.batch_size % (micro * world_size) != 0:
            raise ConfigError(
                f"train.batch_size {self.batch_size} is not a multiple of micro_batch_size {micro} × "
                f"{world_size} processes; pick sizes that divide it"
            )
        return micro, self.batch_size // (micro * world_size)


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, as a factor on each parameter group's own ``lr``."""

    kind: Literal["cosine", "constant"] = "cosine"
    """``cosine`` decays from 1 to ``min_lr_ratio`` after warmup; ``constant`` stays at 1."""
    warmup_steps: int = 0
    """Optimizer updates of linear warmup; the factor is ``(step + 1) / warmup_steps`` during it."""
    min_lr_ratio: float = 0.1
    """Floor of the cosine decay, as a fraction of the peak learning rate."""

    def __post_init__(self):
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")


@dataclass
class EvalConfig:
    """Periodic evaluation on a fixed set: the first ``batches`` batches of the validation split."""

    interval: int = 100
    """Optimizer updates between evaluations; 0 evaluates only before and after training."""
    batches: int = 20
    """Batches per evaluation; the reported loss is the token-weighted mean over exactly these."""
    batch_size: int | None = None
    """Sequences per evaluation batch; ``None`` means the training micro-batch size."""

    def __post_init__(self):
        if self.interval < 0:
            raise ConfigError(f"interval must be >= 0, got {self.interval}")
        if self.batches < 0:
            raise ConfigError(f"batches must be >= 0 (0 disables evaluation), got {self.batches}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")


@dataclass
class LogConfig:
    """Console output and the run folder ``<output_dir>/<name>``."""

    interval: int = 10
    """Optimizer updates between training-metric lines (console and ``metrics.jsonl``)."""
    output_dir: str = "runs"
    """Folder that contains one run folder per run name."""
    progress: bool = True
    """Show a live progress bar (on rank 0, in a terminal)."""
    plot: bool = True
    """Write ``loss.png`` with the training and evaluation loss at the end."""

    def __post_init__(self):
        if self.interval < 1:
            raise ConfigError(f"interval must be at least 1, got {self.interval}")


@dataclass
class CheckpointConfig:
    """Checkpoints in ``<run folder>/checkpoints``; one is always written at the end and on Ctrl-C."""

    interval: int = 0
    """Optimizer updates between checkpoints; 0 writes only the final and interrupt checkpoints."""
    keep_last: int = 2
    """Checkpoints kept; older ones are deleted after each successful write."""

    def __post_init__(self):
        if self.interval < 0:
            raise ConfigError(f"interval must be >= 0, got {self.interval}")
        if self.keep_last < 1:
            raise ConfigError(f"keep_last must be at least 1, got {self.keep_last}")


@dataclass
class RunConfig:
    """One training run: everything ``train.py`` needs, read from a run YAML."""

    name: str = "run"
    """Run folder name under ``log.output_dir``."""
    seed: int = 0
    """Seed of model initialization and data order."""
    device: str = "auto"
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:<index>``."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ConfigError(f"name {self.name!r} must be a folder name of letters, digits, '_', '.' or '-'")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device {self.device!r} is not one of auto, cpu, cuda, cuda:<index>")

    def to_dict(self) -> dict:
        """Return the resolved configuration as plain YAML-ready data."""
        return to_dict(self)


# ----------------------------------------------------------------------------------------- loading


def load_run_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a run YAML, resolve its includes and overrides, and validate it.

    Raises:
        ConfigError: on a missing file, an include cycle, a malformed override, or any key or value
            that :class:`RunConfig` rejects (with the key's dotted path).
    """
    path = Path(path)
    data = resolve_includes(load_yaml(path), path.parent, [path.resolve()])
    for key, value in parse_overrides(overrides or []):
        apply_override(data, key, value)
    return from_dict(RunConfig, data)


def resolve_includes(data: Any, base_dir: Path, stack: list[Path] | None = None) -> Any:
    """Return ``data`` with every ``include:`` merged in and every dotted key applied.

    ``stack`` holds the files being read, to reject include cycles.
    """
    stack = stack or []
    if isinstance(data, list):
        return [resolve_includes(item, base_dir, stack) for item in data]
    if not isinstance(data, dict):
        return data

    merged: dict = {}
    includes = data.get("include", [])
    for entry in [includes] if isinstance(includes, str) else includes:
        if not isinstance(entry, str):
            raise ConfigError(f"include: expected a path or a list of paths, got {entry!r}")
        included_path = (base_dir / entry).resolve()
        if included_path in stack:
            chain = " -> ".join(str(item) for item in [*stack, included_path])
            raise ConfigError(f"include cycle: {chain}")
        if not included_path.is_file():
            raise ConfigError(f"included file not found: {str(base_dir / entry)!r}; paths are relative to the including file")
        included = resolve_includes(load_yaml(included_path), included_path.parent, [*stack, included_path])
        merged = _deep_merge(merged, included)

    plain = {key: value for key, value in data.items() if key != "include" and not _is_dotted(key)}
    merged = _deep_merge(merged, {key: resolve_includes(value, base_dir, stack) for key, value in plain.items()})
    for key, value in data.items():
        if key != "include" and _is_dotted(key):
            apply_override(merged, key, resolve_includes(value, base_dir, stack))
    return merged


def _is_dotted(key: Any) -> bool:
    return isinstance(key, str) and ("." in key or "[" in key)


def _deep_merge(base: dict, top: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """Split ``key=value`` strings; each value is parsed as YAML (``10``, ``3e-4``, ``[a, b]``, ``null``)."""
    parsed = []
    for item in items:
        key, separator, text = item.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, for example train.max_steps=100")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML: {error}") from error
        parsed.append((key.strip(), value))
    return parsed


_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def apply_override(data: dict, key: str, value: Any) -> None:
    """Set ``data[...]`` at the dotted path ``key`` (``a.b[0].c`` or ``a.b.0.c``), creating mappings.

    Unknown keys are created, so that validation rejects them with their full path.
    """
    tokens: list[str | int] = []
    position = 0
    for match in _SEGMENT.finditer(key):
        if match.start() != position and key[position:match.start()] != ".":
            raise ConfigError(f"override key {key!r} is malformed; write it like optimizer.groups[0].rank")
        name, index = match.groups()
        if index is not None:
            tokens.append(int(index))
        elif name.isdigit():
            tokens.append(int(name))
        else:
            tokens.append(name)
        position = match.end()
    if not tokens or position != len(key):
        raise ConfigError(f"override key {key!r} is malformed; write it like optimizer.groups[0].rank")

    node: Any = data
    for depth, token in enumerate(tokens):
        where = _format_path(tokens[:depth]) or "the top level"
        last = depth == len(tokens) - 1
        if isinstance(token, int):
            if not isinstance(node, list):
                raise ConfigError(f"cannot set {key!r}: {where} is not a list")
            if not -len(node) <= token < len(node):
                raise ConfigError(f"cannot set {key!r}: {where} has {len(node)} items, no index {token}")
            if last:
                node[token] = value
            else:
                node = node[token]
            continue
        if not isinstance(node, dict):
            raise ConfigError(
                f"cannot set {key!r}: {where} is {node!r}, not a mapping; write it as a mapping "
                "(for a strategy: {name: ..., option: ...})"
            )
        if last:
            node[token] = value
        else:
            if node.get(token) is None:
                node[token] = {}
            node = node[token]


def _format_path(tokens: list[str | int]) -> str:
    text = ""
    for token in tokens:
        if isinstance(token, int):
            text += f"[{token}]"
        elif text:
            text += f".{token}"
        else:
            text += token
    return text
