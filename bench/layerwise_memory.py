"""Peak memory of a training step with and without layer-wise updates, side by side.

    python -m bench.layerwise_memory
    python -m bench.layerwise_memory --hidden 512 --layers 8 --vocab 32000 --steps 3

Each mode runs in a fresh subprocess, which builds the same LLaMA model and SubTrack++ optimizer
and trains a few steps on random tokens. On CUDA the peak is ``torch.cuda.max_memory_allocated``;
on the CPU it is the process's maximum resident set size (``ru_maxrss``), which also counts the
Python interpreter and torch itself, so the CPU ratio understates the saving on the training
state. The second measure counts only gradient tensors: the most gradient bytes alive at once,
read at every gradient hook during the backward pass.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import torch


def _worker(args: argparse.Namespace) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    import lowrank

    torch.manual_seed(0)
    device = torch.device(args.device)
    config = LlamaConfig(
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64),
        vocab_size=args.vocab,
        max_position_embeddings=args.seq_len,
    )
    model = LlamaForCausalLM(config).to(device)
    optimizer = lowrank.build_optimizer(
        model,
        {
            "lr": 1e-3,
            "groups": [
                {
                    "match": ["*.self_attn.*_proj.weight", "*.mlp.*_proj.weight"],
                    "rank": args.rank,
                    "tracker": "subtrack",
                    "transport": "projection_aware",
                    "residual": "recovery_scaling",
                }
            ],
        },
    )
    # Gradient bytes alive, measured at every gradient hook. These hooks are registered first, so
    # they run before the layer-wise ones, which free each gradient once its parameter is updated.
    params = list(model.parameters())
    live_peak = 0

    def measure(_):
        nonlocal live_peak
        live = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
        live_peak = max(live_peak, live)

    for param in params:
        param.register_post_accumulate_grad_hook(measure)
    layerwise = lowrank.LayerwiseUpdate(optimizer) if args.mode == "layerwise" else None
    generator = torch.Generator().manual_seed(1)
    for _ in range(args.steps):
        ids = torch.randint(0, args.vocab, (args.batch, args.seq_len), generator=generator).to(device)
        if layerwise is not None:
            layerwise.begin_microbatch(last=True)
        model(input_ids=ids, labels=ids).loss.backward()
        if layerwise is None:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            layerwise.finish_update()

    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    grads = [p.numel() * p.element_size() for p in model.parameters()]
    print(json.dumps({"mode": args.mode, "peak_bytes": peak, "live_grad_peak_bytes": live_peak, "all_grad_bytes": sum(grads)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=512, help="hidden size (default: 512)")
    parser.add_argument("--intermediate", type=int, default=1376, help="MLP width (default: 1376)")
    parser.add_argument("--layers", type=int, default=8, help="transformer blocks (default: 8)")
    parser.add_argument("--vocab", type=int, default=32000, help="vocabulary size (default: 32000)")
    parser.add_argument("--rank", type=int, default=128, help="rank of the projected matrices (default: 128)")
    parser.add_argument("--batch", type=int, default=2, help="sequences per step (default: 2)")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (default: 128)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per mode (default: 3)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--mode", choices=["normal", "layerwise"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.mode:
        _worker(args)
        return

    results = {}
    for mode in ("normal", "layerwise"):
        command = [sys.executable, "-m", "bench.layerwise_memory", *sys.argv[1:], "--mode", mode]
        output = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ).stdout
        results[mode] = json.loads(output.strip().splitlines()[-1])

    from rich.console import Console
    from rich.table import Table

    mib = 2**20
    table = Table(title=f"Peak memory of a training step ({args.device}, SubTrack++ rank {args.rank})")
    for column in ("mode", "peak MiB (process)", "peak gradient MiB alive", "all gradients MiB"):
        table.add_column(column, justify="right")
    normal, layerwise = results["normal"], results["layerwise"]
    for label, result in (("normal", normal), ("layer-wise", layerwise)):
        table.add_row(
            label,
            f"{result['peak_bytes'] / mib:.0f}",
            f"{result['live_grad_peak_bytes'] / mib:.0f}",
            f"{result['all_grad_bytes'] / mib:.0f}",
        )
    Console(width=120).print(table)
    print(f"layer-wise / normal, process peak: {layerwise['peak_bytes'] / normal['peak_bytes']:.3f}")
    print(f"layer-wise / normal, gradient peak: {layerwise['live_grad_peak_bytes'] / normal['live_grad_peak_bytes']:.3f}")


if __name__ == "__main__":
    main()
