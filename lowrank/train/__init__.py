"""Pre-training of LLaMA models with any optimizer composition, as ``train.py`` runs it.

Modules (imported one by one, so ``python -m lowrank.train.corpus`` stays light):

- :mod:`lowrank.train.config`: the run configuration, its includes and ``--set`` overrides.
- :mod:`lowrank.train.corpus`: builds the embedded corpus and tokenizer (``bash setup.sh`` runs it).
- :mod:`lowrank.train.data`: tokenization, packing into blocks, deterministic batches.
- :mod:`lowrank.train.model`: ``LlamaForCausalLM`` from a model configuration.
- :mod:`lowrank.train.schedule`: warmup and cosine decay of the learning rate.
- :mod:`lowrank.train.loss`: the language-model loss and evaluation.
- :mod:`lowrank.train.checkpoint`: atomic checkpoints and random-number state.
- :mod:`lowrank.train.metrics`: the metrics file, the loss plot, optimizer-state size.
- :mod:`lowrank.train.sweep`: a grid of variants of a base run (``train.py --sweep``).
"""
