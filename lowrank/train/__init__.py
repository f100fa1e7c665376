"""Pre-training of LLaMA models with any optimizer composition (used by ``train.py``)."""
