"""Helpers for the training tests: a small synthetic corpus, its tokenizer, and run YAML files.

Nothing here touches the network: the corpus is generated, the tokenizer is trained on it, and the
Hugging Face libraries are put in offline mode.
"""

from __future__ import annotations

import importlib.util
import os
import random
from pathlib import Path

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
OPTIM_DIR = ROOT / "configs" / "optim"

_WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there been one all we their has would when if so no will my more out up what about who can "
    "king queen love night sword crown heaven earth water fire stone river field house light dark speak hear see "
    "come go make take give know think tell find call ask seem feel leave keep begin show live believe bring"
).split()


def write_corpus(folder: Path, train_documents: int = 24, validation_documents: int = 4, seed: int = 0) -> Path:
    """Write ``train/*.txt`` and ``validation/*.txt`` documents of pseudo-English text; return ``folder``."""
    generator = random.Random(seed)
    for split, count in (("train", train_documents), ("validation", validation_documents)):
        (folder / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            lines = []
            for _ in range(40):
                words = [generator.choice(_WORDS) for _ in range(generator.randint(5, 14))]
                lines.append(" ".join(words).capitalize() + ".")
            (folder / split / f"doc_{index:03d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def make_tokenizer(corpus: Path, path: Path, vocab_size: int = 384) -> Path:
    """Train the project's byte-level BPE on ``corpus/train`` and save it at ``path``."""
    from lowrank.train.corpus import train_tokenizer

    texts = [file.read_text(encoding="utf-8") for file in sorted((corpus / "train").glob("*.txt"))]
    train_tokenizer(texts, vocab_size, path)
    return path


def run_config(corpus: Path, tokenizer: Path, out: Path, optimizer: dict | None = None, **sections) -> dict:
    """Return a run configuration for a 2-layer model on the synthetic corpus; ``sections`` replace keys."""
    config = {
        "name": "tiny",
        "seed": 0,
        "device": "cpu",
        "model": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "vocab_size": 384,
            "max_position_embeddings": 64,
        },
        "data": {
            "source": "files",
            "train_files": [str(corpus / "train" / "*.txt")],
            "validation_files": [str(corpus / "validation" / "*.txt")],
            "tokenizer": str(tokenizer),
            "seq_len": 32,
            "cache_dir": str(out / "hf_cache"),
        },
        "optimizer": optimizer if optimizer is not None else {"include": str(OPTIM_DIR / "adamw.yaml")},
        "schedule": {"warmup_steps": 2, "min_lr_ratio": 0.1},
        "train": {"max_steps": 6, "batch_size": 4, "micro_batch_size": 2},
        "eval": {"interval": 3, "batches": 2},
        "log": {"interval": 1, "output_dir": str(out / "runs"), "progress": False},
        "checkpoint": {"interval": 3, "keep_last": 2},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def lowrank_optimizer(name: str, rank: int = 8, update_interval: int = 2) -> dict:
    """An optimizer section that includes ``configs/optim/<name>.yaml`` with a rank fit for the tiny model."""
    return {
        "include": str(OPTIM_DIR / f"{name}.yaml"),
        "groups[0].rank": rank,
        "groups[0].update_interval": update_interval,
    }


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def load_train_script():
    """Import the top-level ``train.py`` as a module, so tests can call its ``main(argv)`` in-process."""
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
