"""Layer-wise updates: step each parameter as soon as its gradient is complete, then free it.

In the usual loop every gradient stays alive from the backward pass until ``optimizer.step()``.
Here a post-accumulate-grad hook updates a parameter and drops its gradient the moment autograd
finishes it, so at the last micro-batch of an update only the gradients of the layers still in
flight are alive (GaLore's per-layer weight updates). With gradient accumulation, the earlier
micro-batches only accumulate: gradients must survive until the last one in any mode.

Rules that public per-layer implementations break, and this one keeps:

- one update per optimizer update, on the last micro-batch only, never one per micro-batch;
- the LR schedule and the refresh interval advance once per update (call the scheduler once,
  after :meth:`LayerwiseUpdate.finish_update`);
- global gradient-norm clipping needs every gradient before any update, so it is rejected;
  per-parameter clipping is offered instead, under its own name;
- under data-parallel training the hooks would fire before gradients are averaged across ranks,
  so layer-wise mode is rejected there.
"""

from __future__ import annotations

import logging
from typing import Iterable

import torch

from lowrank.optimizers.lowrank_adamw import LowRankAdamW

__all__ = ["LayerwiseUpdate"]

logger = logging.getLogger(__name__)


class LayerwiseUpdate:
    """Drive ``optimizer`` from gradient hooks instead of ``optimizer.step()``.

    Usage::

        layerwise = LayerwiseUpdate(optimizer, accumulation_steps=4)
        for micro in range(4):
            layerwise.begin_microbatch(last=micro == 3)
            loss_of(micro).backward()   # the last backward updates each parameter in place
        layerwise.finish_update()
        scheduler.step()

    Args:
        optimizer: The optimizer whose parameters to update; every parameter it manages gets a hook.
        accumulation_steps: Micro-batches per optimizer update; used to check the caller's calls.
        max_grad_norm_per_parameter: Clip each parameter's gradient to this L2 norm before its
            update. This is not global-norm clipping: every parameter is clipped on its own.
        clip_grad_norm: Only to reject: global clipping cannot work layer-wise. Pass ``None``.

    Raises:
        ValueError: for global clipping, data-parallel training, or a bad argument.
    """

    def __init__(
        self,
        optimizer: LowRankAdamW,
        accumulation_steps: int = 1,
        *,
        max_grad_norm_per_parameter: float | None = None,
        clip_grad_norm: float | None = None,
    ):
        if clip_grad_norm is not None:
            raise ValueError(
                f"clip_grad_norm={clip_grad_norm} is global gradient-norm clipping, which needs every "
                "gradient before any update; layer-wise updates cannot apply it. Set it to None, or use "
                "max_grad_norm_per_parameter to clip each parameter's gradient on its own"
            )
        if isinstance(accumulation_steps, bool) or not isinstance(accumulation_steps, int) or accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be an integer >= 1, got {accumulation_steps!r}")
        if max_grad_norm_per_parameter is not None and not max_grad_norm_per_parameter > 0:
            raise ValueError(f"max_grad_norm_per_parameter must be positive, got {max_grad_norm_per_parameter}")
        if not isinstance(optimizer, LowRankAdamW):
            raise ValueError(f"layer-wise updates need a LowRankAdamW, got {type(optimizer).__name__}")
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if torch.distributed.get_world_size() > 1:
                raise ValueError(
                    "layer-wise updates are not supported with data-parallel training: the gradient hooks "
                    "fire before gradients are averaged across ranks, so each rank would step on its own "
                    "gradient. Turn layer-wise mode off, or train on one process"
                )

        self.optimizer = optimizer
        self.accumulation_steps = accumulation_steps
        self.max_grad_norm_per_parameter = max_grad_norm_per_parameter
        self._microbatch = 0
        self._last = False
        self._stepped: set[int] = set()
        self._handles = [
            param.register_post_accumulate_grad_hook(self._hook)
            for param in _parameters(optimizer.param_groups)
        ]

    def begin_microbatch(self, last: bool) -> None:
        """Declare, before each backward pass, whether it completes this update's gradients.

        Raises:
            RuntimeError: when ``last`` disagrees with ``accumulation_steps``.
        """
        expected_last = self._microbatch == self.accumulation_steps - 1
        if last != expected_last:
            raise RuntimeError(
                f"micro-batch {self._microbatch + 1} of {self.accumulation_steps} declared last={last}; "
                f"expected last={expected_last}. Call begin_microbatch once per backward pass"
            )
        self._last = last
        self._microbatch += 1

    def finish_update(self) -> int:
        """Close an optimizer update; return how many parameters it updated.

        Raises:
            RuntimeError: when the update's micro-batches were not all declared.
        """
        if self._microbatch != self.accumulation_steps:
            raise RuntimeError(
                f"finish_update after {self._microbatch} of {self.accumulation_steps} micro-batches; "
                "run every micro-batch of the update first"
            )
        updated = len(self._stepped)
        # torch's LR schedulers warn when scheduler.step() comes before any optimizer.step();
        # this flag is how they detect a step, and here the hooks took its place.
        self.optimizer._opt_called = True
        self._stepped.clear()
        self._microbatch = 0
        self._last = False
        return updated

    def remove(self) -> None:
        """Remove the hooks; the optimizer can then be stepped as usual."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @torch.no_grad()
    def _hook(self, param: torch.Tensor) -> None:
        if not self._last:
            return
        if id(param) in self._stepped:
            raise RuntimeError(
                "a parameter received two gradients in the last micro-batch of one update; call "
                "begin_microbatch before every backward pass"
            )
        if self.max_grad_norm_per_parameter is not None:
            norm = torch.linalg.vector_norm(param.grad)
            factor = torch.clamp(self.max_grad_norm_per_parameter / (norm + 1e-6), max=1.0)
            param.grad.mul_(factor)
        self.optimizer.step_parameter(param)
        param.grad = None
        self._stepped.add(id(param))


def _parameters(groups: Iterable[dict]) -> list[torch.Tensor]:
    return [param for group in groups for param in group["params"]]
