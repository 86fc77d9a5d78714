"""DistributedDataParallel under ``torchrun``: the few places where N processes differ from one.

Semantics (issue 19): ``batch_size`` stays the global batch; each epoch's order is still the
function of (seed, epoch); each global batch is split into N disjoint contiguous shards
(``tensor_split``: equal when ``batch_size`` is divisible by N, which the session requires; an
epoch's last, shorter batch may split unequally) and rank r gets shard r. Each rank's loss is
weighted by its shard's share of the global batch, so DDP's averaging of gradients gives exactly
the gradient of the global batch's mean loss: a DDP run follows the single-process run with the same
config up to floating-point reduction order (and, with dropout, the random masks, which depend on
the shard). The logged loss is the global batch's mean (all-reduced); validation runs on every rank
over the whole validation set (the weights are identical, so the values are too, and no rank waits
on another); only rank 0 writes files. Rank 0 decides when to stop (signals, control requests) and
tells the others every step. In DDP each rank reseeds its RNG from (seed, global step, rank) before
every step, so a resume with the same world size is bit-identical without per-rank RNG states in the
checkpoint, and a resume with another world size is allowed (the data order is the same; the shards
change).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass

import torch

# A pause (or a long validation on rank 0) keeps the other ranks waiting in a collective.
COLLECTIVE_TIMEOUT = dt.timedelta(hours=24)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Dist:
        """What torchrun put in the environment; a single process otherwise."""
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                   int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def active(self) -> bool:
        return self.world > 1

    def device(self, device: torch.device) -> torch.device:
        """Under DDP each process of a node drives its own GPU (``cuda:LOCAL_RANK``)."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def start(self, device: torch.device) -> None:
        if self.active and not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            torch.distributed.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)

    def stop(self, *, together: bool = False) -> None:
        """Tear the process group down; ``together`` (every rank ended the loop at the same step):
        meet at a barrier first, so no rank exits while another still has collectives in flight
        (gloo aborts a process whose threads are torn down mid-operation)."""
        if self.active and torch.distributed.is_initialized():
            if together:
                try:
                    torch.distributed.barrier()
                except Exception:  # a peer is gone: nothing left to wait for
                    pass
            torch.distributed.destroy_process_group()

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The module the training steps call: DDP around ``model`` (the raw model stays what is
        validated, sampled and checkpointed, so checkpoints do not depend on the world size)."""
        if not self.active:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of a global batch's indices."""
        return idx if not self.active else idx.tensor_split(self.world)[self.rank]

    def weighted(self, loss: torch.Tensor, n_local: int, n_global: int) -> torch.Tensor:
        """The loss to backpropagate: a rank's mean loss times the factor that makes DDP's gradient
        average the global mean's; in one process the loss itself (no extra autograd node)."""
        return loss if not self.active else loss * (n_local * self.world / n_global)

    def global_loss(self, loss: torch.Tensor, n_local: int, n_global: int) -> torch.Tensor:
        """The global batch's mean loss (detached; all-reduced across the ranks)."""
        value = loss.detach()
        if not self.active:
            return value
        value = value.float() * (n_local / n_global)
        torch.distributed.all_reduce(value)
        return value

    def decide(self, why: str | None) -> str | None:
        """Rank 0's stop decision, known to every rank (the others' own flags are ignored)."""
        if not self.active:
            return why
        flag = torch.tensor([1 if (self.rank == 0 and why is not None) else 0], dtype=torch.int32)
        if torch.distributed.get_backend() == "nccl":
            flag = flag.cuda()
        torch.distributed.broadcast(flag, src=0)
        if int(flag.item()) == 0:
            return None
        return why if self.rank == 0 else "stopped by rank 0"

    def peer_lost(self, error: BaseException) -> bool:
        """Whether ``error`` is a collective failing because another process of the job is gone
        (its connection reset or closed). The job is then down, not failed by its own code: the
        status is left to say running, and readers call the run crashed once this process is gone."""
        if not self.active:
            return False
        dist_error = getattr(torch.distributed, "DistError", ())
        text = str(error)
        return isinstance(error, dist_error) or ("gloo" in text and ("peer" in text or "closed" in text))

    def reseed(self, seed: int, step: int) -> None:
        """DDP only: the RNG of this step is a function of (seed, step, rank)."""
        if self.active:
            blob = hashlib.sha256(f"{seed}/{step}/{self.rank}".encode()).digest()
            torch.manual_seed(int.from_bytes(blob[:8], "big") % (2**63))
