"""Splitting a scene's windows across torch.distributed ranks (``torchrun``), one process per device.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is started here: NCCL for CUDA, gloo otherwise.
Window ``i`` goes to rank ``i % world_size``; every rank saves its cores into the shared partial folder,
and rank 0 assembles the output once all ranks are past the last barrier. Rank 0 alone takes the outputs'
locks and prepares their partial folders, before any rank starts. On several nodes, the output's
folder must be on a file system that every node sees.

A collection of items is shared by whole items instead (:func:`alone`): each rank runs its items as a world
of one, so no rank waits on another until the last item is done.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from ..errors import AxsModelError

T = TypeVar("T")
BARRIER_TIMEOUT = timedelta(hours=12)
"""Ranks that finish early wait this long for the others (the default of 30 minutes is short for big scenes)."""
_ALONE: ContextVar[bool] = ContextVar("alone", default=False)


@dataclass(frozen=True)
class Ranks:
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shows_progress(self) -> bool:
        """Whether this process draws the progress bar: the job's first process only."""
        return self.is_main and int(os.environ.get("RANK", "0")) == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's items: every ``world_size``-th, starting at ``rank``."""
        return list(items[self.rank :: self.world_size])

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def on_main(self, action: Callable[[], None]) -> None:
        """Run ``action`` on rank 0 only, then on every rank raise the library error it raised, if any.

        Rank 0 takes the outputs' locks for the whole job, so its other ranks trust it, and every rank of a
        second job is refused with rank 0's message.
        """
        error = None
        if self.is_main:
            try:
                action()
            except AxsModelError as raised:
                error = raised
        if self.world_size > 1:
            shared = [error]
            dist.broadcast_object_list(shared, src=0)
            error = shared[0]
        if error is not None:
            raise error

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank."""
        if self.world_size == 1:
            return [value]
        values: list = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_device(device: torch.device) -> torch.device:
    """Under ``torchrun``, CUDA means this process's own GPU (``LOCAL_RANK``)."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


@contextmanager
def alone() -> Iterator[None]:
    """Inside the block, :func:`start` gives a world of one: this process does a whole scene by itself."""
    token = _ALONE.set(True)
    try:
        yield
    finally:
        _ALONE.reset(token)


def start(device: torch.device) -> Ranks:
    """Join the ``torchrun`` process group (started once per process), or run alone."""
    if _ALONE.get():
        return Ranks(0, 1)
    if launched_world_size() > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=BARRIER_TIMEOUT)
    if dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks(0, 1)


def stop() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()
