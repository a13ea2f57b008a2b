"""The WebDataset streaming loader: raw epochs from shards to batches, deterministic and resumable.

Each (node, worker) pair reads its own stream of shards: with ``resampled`` shards are drawn with
replacement forever (webdataset's ``ResampledShards`` idea, seeded per node and worker); otherwise
the shard list is reshuffled every pass and split by node, then by worker (``split_by_node`` /
``split_by_worker`` semantics). Samples go through ``tarfile_to_samples`` and a seeded shuffle buffer,
then are decoded (float16 µV, converted to float32 once per batch), batched and optionally cropped.

Everything random is seeded from ``(seed, rank, logical worker)``, and the DataLoader takes batches
from its workers round-robin, so the stream of batches is a pure function of the seed. Resuming at
batch ``n`` replays each logical worker's raw (undecoded) stream up to its share of the ``n`` batches
and skips it (physical workers are rotated so that round-robin continues where it stopped), which
reproduces the uninterrupted stream exactly.

Batches: ``{"signal": float32 [B, C, T] µV, "channel_mask": bool [B, C], "meta": [dict] * B}``;
recordings with fewer channels are zero-padded (``channel_mask`` False there).
"""

from __future__ import annotations

import logging
import os
import random
import signal
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds

from efm.data.shards import MAX_BAD_IN_A_ROW, BadSample, decode_sample, read_manifest
from efm.errors import EfmError

log = logging.getLogger("efm.train.loader")


class _Skipper:
    """Decode samples, logging and skipping the bad ones; give up after many in a row."""

    def __init__(self) -> None:
        self.skipped = 0
        self.in_a_row = 0

    def decode(self, samples: Iterator[dict[str, Any]], n: int) -> list[dict[str, Any]]:
        """Up to ``n`` decoded samples from ``samples`` (fewer only when it ends)."""
        out: list[dict[str, Any]] = []
        for raw in samples:
            try:
                out.append(decode_sample(raw))
                self.in_a_row = 0
            except BadSample as exc:
                self.skipped += 1
                self.in_a_row += 1
                log.warning("skipped %s", exc)
                if self.in_a_row >= MAX_BAD_IN_A_ROW:
                    raise EfmError(
                        f"{self.in_a_row} shard samples in a row could not be decoded (last: "
                        f"{exc}); the shards are damaged: delete them and run `efm prepare` again"
                    ) from None
            if len(out) == n:
                break
        return out


def _skip_tar_error(exn: Exception) -> bool:
    """webdataset handler: log an unreadable shard or tar member and go on."""
    log.warning("skipped part of a shard: %s", exn)
    return True


def collate(samples: list[dict[str, Any]], dtype: Any = np.float32) -> dict[str, Any]:
    """Stack decoded samples into ``dtype`` (one conversion per batch); zero-pad to the largest
    channel count (``channel_mask`` marks the real channels)."""
    n_times = {s["signal"].shape[1] for s in samples}
    if len(n_times) != 1:
        raise EfmError(f"epochs of different lengths in one batch: {sorted(n_times)} samples")
    chans = np.array([s["signal"].shape[0] for s in samples])
    c_max = int(chans.max())
    signal = np.zeros((len(samples), c_max, n_times.pop()), dtype=dtype)  # [B, C, T]
    if (chans == c_max).all():
        np.stack([s["signal"] for s in samples], out=signal, casting="same_kind")
    else:
        for i, s in enumerate(samples):  # rare path: one copy per sample, not per channel
            signal[i, : s["signal"].shape[0]] = s["signal"]
    mask = np.arange(c_max)[None, :] < chans[:, None]  # [B, C]
    return {
        "signal": torch.from_numpy(signal),
        "channel_mask": torch.from_numpy(mask),
        "meta": [s["meta"] for s in samples],
    }


def random_crop(batch: dict[str, Any], crops_s: list[float], rng: random.Random) -> dict[str, Any]:
    """Crop the whole batch to one length drawn from ``crops_s`` at a random offset per sample."""
    signal = batch["signal"]  # [B, C, T]
    sfreq = float(batch["meta"][0].get("sfreq", 0.0) or 0.0)
    if not crops_s or sfreq <= 0:
        return batch
    n_times = signal.shape[-1]
    length = min(n_times, round(rng.choice(list(crops_s)) * sfreq))
    if length >= n_times:
        return batch
    starts = torch.tensor([rng.randrange(n_times - length + 1) for _ in range(signal.shape[0])])
    idx = starts[:, None] + torch.arange(length)[None, :]  # [B, L]
    batch["signal"] = torch.gather(signal, 2, idx[:, None, :].expand(-1, signal.shape[1], -1))
    for m, s in zip(batch["meta"], starts.tolist()):
        m["crop"] = [s, length]
    return batch


class ShardStream(torch.utils.data.IterableDataset):
    """An endless, deterministic stream of batches from WebDataset shards.

    Parameters
    ----------
    urls : list of str
        Shard paths (``read_manifest(dir)["urls"]``).
    batch_size : int
        Samples per batch (per process).
    seed : int
        Seeds shard order, shuffle buffers and crops.
    shuffle_buffer : int
        Size of the sample shuffle buffer (0 or 1: no shuffle).
    resampled : bool
        Draw shards with replacement (True) or in reshuffled passes split by node and worker.
    crops_s : list of float
        Random crop lengths in seconds (empty: whole epochs).
    start_batch : int
        Number of batches already consumed (the data position to resume from).
    num_workers : int
        The DataLoader's worker count (0 or 1: one stream), needed to split the resume position.
    rank, world_size : int
        This process's node split (defaults: from ``torch.distributed`` when initialised).
    """

    def __init__(
        self,
        urls: list[str],
        batch_size: int,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        resampled: bool = True,
        crops_s: list[float] | None = None,
        start_batch: int = 0,
        num_workers: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        if dtype not in ("float32", "float16"):
            raise EfmError(f"loader dtype {dtype!r}; options: float32, float16")
        self.dtype = np.dtype(dtype)
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = rank if rank is not None else (torch.distributed.get_rank() if dist else 0)
        self.world = (
            world_size
            if world_size is not None
            else (torch.distributed.get_world_size() if dist else 1)
        )
        self.urls, self.batch_size, self.seed = list(urls), int(batch_size), int(seed)
        self.shuffle_buffer, self.resampled = int(shuffle_buffer), bool(resampled)
        self.crops_s, self.start_batch = list(crops_s or []), int(start_batch)
        self.num_workers = max(1, int(num_workers))
        if not self.resampled and len(self.urls) < self.world * self.num_workers:
            raise EfmError(
                f"{len(self.urls)} shard(s) cannot be split over {self.world} node(s) x "
                f"{self.num_workers} worker(s) without resampling; set train.resampled=true or "
                "use fewer workers"
            )

    def _shards(self, worker: int) -> Iterator[dict[str, str]]:
        if self.resampled:
            rng = random.Random(f"shards-{self.seed}-{self.rank}-{worker}")
            while True:
                yield {"url": rng.choice(self.urls)}
        for epoch in range(1 << 62):
            order = list(self.urls)
            random.Random(f"order-{self.seed}-{epoch}").shuffle(order)
            mine = order[self.rank :: self.world][worker :: self.num_workers]
            for url in mine:
                yield {"url": url}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        n_workers = info.num_workers if info is not None else 1
        # the DataLoader starts its round-robin at worker 0: after n batches, physical worker w
        # continues the logical stream (w + n) % n_workers
        worker = ((info.id if info is not None else 0) + self.start_batch) % n_workers
        if n_workers != self.num_workers:
            raise RuntimeError(
                f"ShardStream made for {self.num_workers} workers runs in {n_workers}"
            )
        samples: Iterator[dict[str, Any]] = wds.tarfile_to_samples(handler=_skip_tar_error)(
            self._shards(worker)
        )
        if self.shuffle_buffer > 1:
            rng = random.Random(f"shuffle-{self.seed}-{self.rank}-{worker}")
            samples = wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)(
                samples
            )
        # batches with global index k come from worker k % n_workers: skip this worker's share
        done = max(0, (self.start_batch - worker + n_workers - 1) // n_workers)
        samples = islice(samples, done * self.batch_size, None)  # raw bytes: nothing is decoded
        index = done
        skipper = _Skipper()
        while True:
            chunk = skipper.decode(samples, self.batch_size)
            if len(chunk) < self.batch_size:
                return
            batch = collate(chunk, self.dtype)
            if self.crops_s:
                rng_crop = random.Random(f"crop-{self.seed}-{self.rank}-{worker}-{index}")
                batch = random_crop(batch, self.crops_s, rng_crop)
            index += 1
            yield batch


def make_loader(
    shards: str | Path,
    batch_size: int,
    *,
    seed: int = 0,
    num_workers: int = 0,
    shuffle_buffer: int = 1000,
    resampled: bool = True,
    crops_s: list[float] | None = None,
    start_batch: int = 0,
    pin_memory: bool = False,
    dtype: str = "float32",
) -> torch.utils.data.DataLoader:
    """A DataLoader over a :class:`ShardStream` of the shard directory ``shards``.

    ``dtype="float16"`` keeps the signals as stored (half the bytes to pin and copy); the training
    loop then converts them to float32 on the device.
    """
    urls = read_manifest(shards)["urls"]
    stream = ShardStream(
        urls,
        batch_size,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        resampled=resampled,
        crops_s=crops_s,
        start_batch=start_batch,
        num_workers=num_workers,
        dtype=dtype,
    )
    return torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed),
        prefetch_factor=4 if num_workers > 0 else None,
        worker_init_fn=_worker_init,
        collate_fn=_as_is,
    )


def _as_is(batch: Any) -> Any:
    """Batches are made in the workers; the DataLoader must not walk through their metadata."""
    return batch


def _worker_init(worker_id: int) -> None:
    """Loader workers decode and crop; one thread each leaves the cores to the model.

    They leave the process group of their rank: a Ctrl-C reaches the terminal's whole group, and
    torchrun sends its SIGTERM (a cluster's pre-emption) to each rank's whole group, which would
    kill them mid-step. The training loop, which saves a checkpoint before it stops, ends them
    itself (and PyTorch's watchdog ends a worker whose parent is gone). SIGINT is ignored for a
    signal that comes before the worker has left.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.setpgrp()
    torch.set_num_threads(1)


def iter_epochs(
    shards: str | Path, batch_size: int, max_epochs: int = 0, progress: str | None = "embed"
) -> Iterator[dict[str, Any]]:
    """One ordered pass over every epoch of a shard directory (for embeddings and probes).

    ``progress`` names a progress bar (epochs, with rate and ETA) on stderr; None hides it.
    """
    from tqdm.auto import tqdm

    manifest = read_manifest(shards)
    urls = manifest["urls"]
    samples = wds.tarfile_to_samples(handler=_skip_tar_error)(iter([{"url": u} for u in urls]))
    total = int(manifest.get("n_epochs") or 0) or None
    if max_epochs > 0:
        samples = islice(samples, max_epochs)
        total = min(total or max_epochs, max_epochs)
    skipper = _Skipper()
    with tqdm(
        total=total, unit="epoch", desc=progress, disable=progress is None, dynamic_ncols=True
    ) as bar:
        while True:
            chunk = skipper.decode(samples, batch_size)
            if not chunk:
                if skipper.skipped:
                    log.warning("%d damaged shard sample(s) skipped", skipper.skipped)
                return
            bar.update(len(chunk))
            yield collate(chunk)
