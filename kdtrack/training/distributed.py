"""Data parallelism with torch.distributed: which process this is (`World`), its part of each
global batch, the per-step reduction of what the loop measures, and the model's replica.

One run, N processes (ranks) that each take batch_size / N of every global batch. Batches are
drawn from the same seeded order on every rank, so with N ranks the sequence of global batches
is the single-process one. Gradients are averaged by DistributedDataParallel with each rank's
loss weighted by its share of the batch, so a step is the single-process step up to float
reassociation. Backend: NCCL on CUDA (one GPU per rank), gloo on CPU.

torch is imported by the methods that use it: the tracking layer carries a `World` in every
RunContext, and commands that only read the store do without torch.
"""
from __future__ import annotations

import io
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Iterator

from kdtrack.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

# Rank 0 evaluates the whole sets and writes checkpoints alone while the other ranks wait at the
# next step's gradient reduction: collectives may wait that long.
STEP_TIMEOUT = timedelta(hours=1)
# The other ranks wait for rank 0's next order while it finds, waits for or reuses runs (possibly
# another process's teacher for hours): orders go through a gloo group of their own that waits long.
ORDER_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class World:
    """This process's place among the processes training one run; one process by default."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""  # "nccl" or "gloo"; "" for one process
    local_size: int = 1  # the processes of this world on this node
    address: str = ""  # where the ranks meet, "tcp://HOST:PORT"; "" = torchrun's MASTER_ADDR and MASTER_PORT
    orders: Any = field(default=None, compare=False, repr=False)  # the gloo group rank 0 sends orders on

    @classmethod
    def started(cls, rank: int, size: int, local_rank: int, local_size: int, address: str = "") -> World:
        """Rank `rank` of `size` processes started together (by torchrun, or as a Slurm job's
        tasks); one process alone is the default world."""
        if size == 1:
            return cls()
        import torch

        return cls(rank, size, local_rank, "nccl" if torch.cuda.is_available() else "gloo", local_size, address)

    @classmethod
    def from_env(cls) -> World:
        """The world torchrun describes in its environment variables; one process without them."""

        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size == 1:
            return cls()
        return cls.started(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")),
                           int(os.environ.get("LOCAL_WORLD_SIZE", size)))

    @property
    def leads(self) -> bool:
        """Rank 0: the one process that touches the tracking store."""
        return self.rank == 0

    def params(self) -> dict[str, str]:
        """What a run records of the processes that trained it."""
        return {"world_size": str(self.size), "backend": self.backend or "none"}

    def join(self) -> World:
        """Join the process group of the world's ranks; the world with its order group."""
        import torch
        import torch.distributed as dist

        if self.backend == "nccl":
            torch.cuda.set_device(self.local_rank)  # so that "cuda" means this rank's GPU everywhere
        dist.init_process_group(self.backend, init_method=self.address or None, rank=self.rank, world_size=self.size,
                                timeout=STEP_TIMEOUT)
        return replace(self, orders=dist.new_group(backend="gloo", timeout=ORDER_TIMEOUT))

    def leave(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def bounds(self, n: int) -> tuple[int, int]:
        """This rank's contiguous part of a global batch of `n`: parts differ by at most one point."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def part(self, batch):
        start, stop = self.bounds(len(batch))
        return batch[start:stop]

    def batch_mean(self, values: dict[str, torch.Tensor], share: float) -> dict[str, torch.Tensor]:
        """Means over the global batch of `values`, which are means over this rank's `share` of it:
        the sum over ranks of share * value. One all-reduce for all of them; every rank gets the
        same numbers, so all stop together on a non-finite loss."""
        if self.size == 1:
            return values
        import torch
        import torch.distributed as dist

        stacked = torch.stack([value.detach().float() for value in values.values()]) * share
        dist.all_reduce(stacked)
        return dict(zip(values, stacked.unbind()))

    def gather(self, part: torch.Tensor, size: int) -> tuple[torch.Tensor, slice]:
        """A global batch's `size` values on every rank, from each rank's `part` of them, and where
        this rank's part lies in it. One all-reduce of the parts, each zero-padded to the whole:
        adding zeros is exact, so every rank holds exactly the values one process would."""
        import torch.distributed as dist

        start, stop = self.bounds(size)
        whole = part.new_zeros((size, *part.shape[1:]))
        whole[start:stop] = part
        dist.all_reduce(whole)
        return whole, slice(start, stop)

    def scaled(self, loss: torch.Tensor, share: float) -> torch.Tensor:
        """The loss whose gradient, averaged over ranks by DDP, is the global batch's mean gradient."""
        return loss if self.size == 1 else loss * (share * self.size)

    @contextmanager
    def replicated(self, model: nn.Module) -> Iterator[nn.Module]:
        """`model` wrapped in DistributedDataParallel for the block (itself for one process).

        BatchNorm layers become SyncBatchNorm for the block: per-rank batch statistics (over
        batch_size / N points) would normalize differently from one process and change the
        result. SyncBatchNorm runs on CUDA only: BatchNorm models on CPU are refused before any run
        starts (kdtrack.pipeline.replicas.check_batch_norm). The layers are swapped back afterwards (they
        share their weights and running statistics), so the model logged and checkpointed is the
        single-process one."""
        if self.size == 1:
            yield model
            return
        from torch import nn

        norms = [name for name, module in model.named_modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
        originals = {name: model.get_submodule(name) for name in norms}
        for name, module in originals.items():
            _set_submodule(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(module))
        try:
            yield nn.parallel.DistributedDataParallel(model, device_ids=[self.local_rank] if self.backend == "nccl"
                                                      else None)
        finally:
            for name, module in originals.items():
                _set_submodule(model, name, module)

    def send(self, order: object) -> None:
        """Rank 0: hand `order` to the other ranks (torch-serialized: tensors and modules included)."""
        import torch
        import torch.distributed as dist

        buffer = io.BytesIO()
        torch.save(order, buffer)
        dist.broadcast_object_list([buffer.getvalue()], src=0, group=self.orders)

    def receive(self, device: torch.device) -> object:
        """The other ranks: rank 0's next order, its tensors on `device`."""
        import torch
        import torch.distributed as dist

        holder = [None]
        dist.broadcast_object_list(holder, src=0, group=self.orders)
        return torch.load(io.BytesIO(holder[0]), map_location=device, weights_only=False)  # rank 0's own bytes


ONE_PROCESS = World()


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def check_world(batch_size: int, size: int) -> None:
    """A global batch must split evenly over the ranks."""
    if batch_size % size:
        raise UserError(f"batch_size={batch_size} does not divide over {size} processes (nproc_per_node); "
                        f"allowed: a batch_size that is a multiple of {size}")
