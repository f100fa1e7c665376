"""Build a ``transformers.LlamaForCausalLM`` from a :class:`~lowrank.train.config.ModelConfig`."""

from __future__ import annotations

import torch

from lowrank.train.config import ModelConfig

__all__ = ["build_model", "count_parameters"]


def build_model(config: ModelConfig, vocab_size: int, eos_token_id: int | None = None):
    """Return a randomly initialized ``LlamaForCausalLM`` in float32 on the current default device.

    Nothing is downloaded. Seed ``torch`` before calling for a reproducible initialization; wrap the
    call in ``with torch.device(...)`` to initialize directly on an accelerator.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    llama_config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads or config.num_attention_heads,
        max_position_embeddings=config.max_position_embeddings,
        rms_norm_eps=config.rms_norm_eps,
        rope_theta=config.rope_theta,
        initializer_range=config.initializer_range,
        hidden_act=config.hidden_act,
        tie_word_embeddings=config.tie_word_embeddings,
        eos_token_id=eos_token_id,
        bos_token_id=None,
        pad_token_id=None,
        use_cache=False,
        attn_implementation=config.attn_implementation,
    )
    return LlamaForCausalLM(llama_config)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """Return ``(all, non-embedding)`` parameter counts; tied weights count once."""
    seen: set[int] = set()
    total = embedding = 0
    for name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        if "embed_tokens" in name or name.startswith("lm_head"):
            embedding += param.numel()
    return total, total - embedding
