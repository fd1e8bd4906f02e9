"""What every estimator shares: its own optimiser, the non-finite guard, gradient sync, state.

An estimator is trained in two calls per iteration, in this order:

1. :meth:`Estimator.update` (before the student step): one step of the estimator's own Adam on
   detached ``t`` and ``s``. Its optimiser is not upstream's, so its learning rate stays out of
   upstream's schedulers and upstream's optimiser checkpoints keep their layout.
2. :meth:`Estimator.loss` (inside the student step): the weighted term for the student, with the
   estimator's parameters frozen, so gradients reach the student only through ``s``.

If anything in an iteration is non-finite (loss, a gradient, a sample), that iteration's update
and student term are both skipped, counted in the ``skipped`` buffer and warned about; nothing
non-finite reaches the estimator's weights or the student. Under ``torch.distributed`` the
gradients are all-reduced (averaged) once per update and the weights are broadcast from rank 0
before the first one, so every rank holds the same estimator.
"""
from __future__ import annotations

import copy

import torch
import torch.distributed as dist
from torch import nn

from vem_plugins.messages import tell
from vem_plugins.method.langevin import widen
from vem_plugins.method.options import check, require


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _average_across_ranks(grads: list[torch.Tensor]) -> None:
    """All-reduce the gradients as one flat buffer (one collective per step) and average them."""
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


class Estimator(nn.Module):
    """Base class; subclasses build their networks, then call :meth:`_init_optimizer`.

    Arguments that mirror a flag are checked against that flag's one rule
    (:data:`vem_plugins.method.options.RULES`); a bad one raises
    :class:`~vem_plugins.errors.OptionError` naming the flag.

    :param config: the architecture (what a saved state must match to be loaded).
    :param weight: weight of the student term (the flag :attr:`WEIGHT_FLAG`).
    :param lr: learning rate of the estimator's Adam.
    :param betas: Adam betas.
    """

    #: the flag that sets this estimator's weight (each estimator has its own)
    WEIGHT_FLAG = "--lambda_mi"

    def __init__(self, config: dict, weight: float, lr: float, betas=(0.0, 0.999)):
        super().__init__()
        require(self.WEIGHT_FLAG, weight)
        require("--ebm_lr", lr)
        require("--ebm_betas", betas)
        self.config = {"estimator": type(self).__name__, **config}
        self.term_weight, self.lr, self.betas = weight, lr, tuple(betas)
        self.register_buffer("skipped", torch.zeros((), dtype=torch.long))
        self._iteration_ok = None  # None: no update yet; False: this iteration is skipped
        self._synced = False

    def _init_optimizer(self):
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, betas=self.betas)
        for p in self.parameters():  # trainable only inside update()
            p.requires_grad_(False)

    # -- what subclasses define -------------------------------------------------------------
    def prepare(self, t: torch.Tensor, s: torch.Tensor) -> None:
        """Work before the estimator's own step (VEM draws its Langevin negatives here)."""

    def objective(self, t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The estimator's own loss on detached inputs, and named statistics to log."""
        raise NotImplementedError

    def student_objective(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The unweighted student term; ``s`` carries the student's graph."""
        raise NotImplementedError

    def after_step(self) -> None:
        """Work after a successful optimiser step (CRD enqueues its embeddings here)."""

    def check_inputs(self, t: torch.Tensor, s: torch.Tensor) -> None:
        """Validate ``t`` and ``s`` (shapes here; subclasses add more)."""
        check(t.dim() == 4 and t.shape[0] == s.shape[0] and t.shape[2:] == s.shape[2:],
              "--mi_target", f"t has shape {tuple(t.shape)} but the student output has shape "
                             f"{tuple(s.shape)}: they need the same batch and image size")

    # -- the two calls per iteration ------------------------------------------------------------
    def update(self, t: torch.Tensor, s: torch.Tensor) -> dict:
        """One step of the estimator's own optimiser. Returns float statistics to log."""
        t, s = widen(t.detach()), widen(s.detach())
        self.check_inputs(t, s)
        self._follow(s.device)
        with torch.autocast(device_type=s.device.type, enabled=False), torch.enable_grad():
            self.prepare(t, s)
            for p in self.parameters():
                p.requires_grad_(True)
            try:
                loss, stats = self.objective(t, s)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
            finally:
                for p in self.parameters():
                    p.requires_grad_(False)
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if _distributed() and grads:
            _average_across_ranks(grads)
        finite = torch.stack([loss.detach().isfinite()] + [g.isfinite().all() for g in grads])
        ok = finite.all().to(torch.float32)
        if _distributed():
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        values = torch.stack([ok] + [v.detach().float().reshape(()) for v in stats.values()]).tolist()
        self._iteration_ok = bool(values[0])
        if self._iteration_ok:
            self.optimizer.step()
            self.after_step()
        else:
            self._skip("update")
        self.optimizer.zero_grad(set_to_none=True)
        out = dict(zip(stats, values[1:]))
        out["skipped"] = int(self.skipped)
        return out

    def loss(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor | None:
        """The weighted student term, or None when this iteration was skipped."""
        if self._iteration_ok is None:
            raise RuntimeError(f"{type(self).__name__}.loss() needs update() first in each iteration")
        if not self._iteration_ok:
            return None
        with torch.autocast(device_type=s.device.type, enabled=False):  # params are frozen here
            value = self.term_weight * self.student_objective(widen(t.detach()), widen(s))
        if not bool(value.detach().isfinite()):
            self._skip("student term")
            return None
        return value

    def _skip(self, what: str):
        self.skipped += 1
        self._iteration_ok = False
        tell(f"non-finite {type(self).__name__} {what}; skipped this iteration's update and MI "
             f"term ({int(self.skipped)} skipped so far)")

    def _follow(self, device: torch.device):
        """Move to the student's device (with the optimiser state) and sync ranks once."""
        if self.skipped.device != device:
            state = self.optimizer.state_dict()
            self.to(device)
            self.optimizer.load_state_dict(state)  # casts the Adam moments to the new device
        if _distributed() and not self._synced:
            for tensor in list(self.parameters()) + list(self.buffers()):
                dist.broadcast(tensor.data, src=0)
        self._synced = True

    # -- state --------------------------------------------------------------------------------
    def get_extra_state(self):
        return {"config": self.config, "optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state):
        # a copy: Adam would otherwise keep (and step in place) the caller's moment tensors
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        group = self.optimizer.param_groups[0]  # a loaded Adam goes on with its saved settings
        self.lr, self.betas = group["lr"], tuple(group["betas"])

    def set_optimizer(self, lr: float | None = None, betas=None) -> None:
        """Change the learning rate and/or betas of the estimator's Adam, keeping its moments
        (a resumed run whose flags ask for other settings than the saved ones)."""
        if lr is not None:
            require("--ebm_lr", lr)
            self.lr = lr
        if betas is not None:
            require("--ebm_betas", betas)
            self.betas = tuple(betas)
        for group in self.optimizer.param_groups:
            group.update(lr=self.lr, betas=self.betas)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load a state; one saved with another architecture fails naming both configurations."""
        saved = state_dict.get("_extra_state", {}).get("config")
        if saved is not None and saved != self.config:
            raise ValueError(f"cannot load an estimator state saved with {saved} into one configured "
                             f"with {self.config}: use the same --mi and network flags, or start "
                             f"the estimator afresh")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
