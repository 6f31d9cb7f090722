"""The training loop: devices, AMP, DDP, schedule, logging, samples, checkpoints, resume, stops."""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

from img2img import Img2ImgError, __version__
from img2img.checkpoint import CONFIG_FILE, STATE_FILE, atomic_write, load_state, save_generator, save_state
from img2img.config import RunConfig, dump_config
from img2img.data.datasets import ResumableSampler, build_dataset
from img2img.health import HealthMonitor
from img2img.methods import METHODS
from img2img.methods.common import choose_amp, unwrap


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 when run plainly)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_arg: str) -> tuple[Dist, torch.device]:
    """Read torchrun's environment; start the process group (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    d = Dist(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world)
    device = select_device(device_arg, d.local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return d, device


def select_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise Img2ImgError("--device cuda was asked for, but no CUDA GPU is usable here; use --device cpu or auto")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise Img2ImgError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device("cpu")


def schedule(cfg: RunConfig, steps_per_epoch: int) -> tuple[int, int, int]:
    """(last step, schedule length, decay start) in steps. The learning-rate schedule follows the
    epochs; train.max_steps only stops earlier, so a resumed run with a larger max_steps
    continues the very same schedule."""
    t = cfg.train
    length = max((t.n_epochs + t.n_epochs_decay) * steps_per_epoch, 1)
    return t.max_steps or length, length, t.n_epochs * steps_per_epoch


class StopRequest:
    """First Ctrl-C / SIGTERM asks for a clean stop after the current step (with a checkpoint);
    a second Ctrl-C aborts at once."""

    def __init__(self, log: logging.Logger):
        self.requested, self.log, self.previous = False, log, {}

    def __enter__(self) -> "StopRequest":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.log.warning("%s received: stopping after this step and saving a checkpoint (Ctrl-C again aborts)",
                         signal.Signals(signum).name)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process, which saves a checkpoint and
    then shuts them down. Ctrl-C and `kill -- -PGID` reach the whole process group; a worker
    dying first would turn the clean stop into a crash that loses the steps since the last save."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _grid(rows: list[torch.Tensor], max_images: int = 4) -> torch.Tensor:
    """One line per sample, one column per kind (e.g. input | output | target), in [0, 1].
    Grey (1-channel) images are expanded to RGB."""
    cols = [r[:max_images].detach().float().cpu().expand(-1, 3, -1, -1) for r in rows]
    return make_grid(torch.stack(cols, 1).flatten(0, 1), nrow=len(cols), padding=2).add(1).div(2).clamp(0, 1)


def agree(flags: list[bool], ddp: Dist, device: torch.device) -> list[bool]:
    """Each flag true if it is true on any rank (one tiny all-reduce per step under DDP)."""
    if ddp.world_size == 1:
        return flags
    t = torch.tensor(flags, dtype=torch.float32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def check_ranks_in_sync(method, ddp: Dist) -> None:
    """Under DDP every rank must hold identical weights and buffers (spectral-norm vectors
    included); compare per-tensor fingerprints across ranks and fail loudly if they drift.
    Batch-norm running statistics are local by design (DDP re-broadcasts rank 0's at each
    forward, and rank 0's are saved), so they are left out."""
    if ddp.world_size == 1:
        return
    local_stats = ("running_mean", "running_var")
    tensors = [t for net in method.players.nets.values() for k, t in unwrap(net).state_dict().items()
               if t.is_floating_point() and not k.endswith(local_stats)]
    mine = torch.stack([torch.stack([t.double().sum(), t.double().square().sum()]) for t in tensors]).flatten()
    everyone = [torch.empty_like(mine) for _ in range(ddp.world_size)]
    dist.all_gather(everyone, mine)
    if not all(torch.equal(everyone[0], other) for other in everyone[1:]):
        raise Img2ImgError("DDP ranks hold different weights; please report this with your config")


class Reporter:
    """Rank 0's view of training: progress bar, TensorBoard, sample grids and health.json."""

    def __init__(self, cfg: RunConfig, run_dir: Path, log: logging.Logger, start: int, total: int,
                 images_per_step: int, enabled: bool, progress: bool):
        self.cfg, self.run_dir, self.log, self.enabled = cfg, run_dir, log, enabled
        self.images_per_step = images_per_step
        self.total = total
        self.bar = tqdm(total=total, initial=start, disable=not (progress and enabled), dynamic_ncols=True, unit="step")
        self.health = HealthMonitor(cfg.train.health_window, cfg.train.grad_norm_limit, watch_d=cfg.loss.gan != "wgan-gp")
        self.health_file = run_dir / "health.json"
        self.writer = None
        if enabled:
            self.health.load(self.health_file)  # keep earlier findings of a resumed run
            from torch.utils.tensorboard import SummaryWriter  # slow import; rank 0 only

            self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=start)
        self.tick, self.tick_step = time.perf_counter(), start

    def after_step(self, step: int, stats: dict[str, float], method, batch: dict[str, torch.Tensor]) -> None:
        t = self.cfg.train
        for f in self.health.update(step, stats):
            self.log.warning("step %d: %s; hint: %s", step, f.message, f.hint)
            self.health.save(self.health_file)
        if step % t.log_every == 0 or step == self.total:
            now = time.perf_counter()
            ips = (step - self.tick_step) * self.images_per_step / max(now - self.tick, 1e-9)
            self.tick, self.tick_step = now, step
            flags = {"health": self.health.findings[-1].kind} if self.health.findings else {}
            self.bar.set_postfix({**{k: f"{v:.3g}" for k, v in stats.items()}, "img/s": f"{ips:.1f}", **flags}, refresh=False)
            for k, v in stats.items():
                self.writer.add_scalar(f"loss/{k}", v, step)
            self.writer.add_scalar("speed/images_per_s", ips, step)
            self.writer.add_scalar("lr/G", method.players.optimizers["G"].param_groups[0]["lr"], step)
        if step % t.sample_every == 0 or step == self.total:
            grid = _grid(method.samples(batch))
            (self.run_dir / "samples").mkdir(exist_ok=True)
            save_image(grid, self.run_dir / "samples" / f"step_{step:07d}.png")
            self.writer.add_image("samples", grid, step)
        self.bar.update(step - self.bar.n)

    def record_nan(self, step: int, message: str) -> None:
        if self.enabled:
            self.health.record(step, "nan", message)
            self.health.save(self.health_file)

    def close(self) -> None:
        self.bar.close()
        if self.writer:
            self.writer.close()


def save_checkpoint(run_dir: Path, method, cfg: RunConfig, step: int) -> None:
    """Generators first, then last.pt: last.pt's step never points past the saved weights."""
    for name, net in method.generators().items():
        direction = method.generator_files[name].removeprefix("G_").removesuffix(".safetensors")
        save_generator(run_dir / method.generator_files[name], net, method.spec, cfg, direction)
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    state = {"step": step, "version": __version__, "config": dump_config(cfg), "method": method.state_dict(), "rng": rng}
    save_state(run_dir / STATE_FILE, state)


def train(cfg: RunConfig, data_root: Path, run_dir: Path, device: torch.device, log: logging.Logger,
          resume: bool = False, ddp: Dist = Dist(), progress: bool = True, method_cls: type | None = None) -> int:
    """Train until cfg's step budget or a stop request; returns the last step reached.

    method_cls replaces METHODS[cfg.method] (same interface), e.g. for an ablation's variant."""
    run_dir = Path(run_dir)
    state = load_state(run_dir / STATE_FILE) if resume else None
    start = int(state["step"]) if state else 0
    seed = cfg.train.seed
    torch.manual_seed(seed + ddp.rank)  # per-rank seed: dropout and noise differ across ranks

    dataset = build_dataset(cfg.data, data_root, seed=seed, log=log)
    bs = cfg.data.batch_size
    sampler = ResumableSampler(dataset, bs, seed, ddp.rank, ddp.world_size, start_step=start)
    total, sched_len, decay_start = schedule(cfg, sampler.steps_per_epoch)
    workers = cfg.data.num_workers
    loader = DataLoader(
        dataset, batch_size=bs, sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
        persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
        generator=torch.Generator().manual_seed(seed),  # keeps the global RNG untouched by the loader
        worker_init_fn=ignore_stop_signals,
    )

    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick the fastest kernels
    amp = choose_amp(cfg.train.amp, device)
    memory_format = torch.channels_last if cuda and cfg.train.channels_last else torch.contiguous_format

    def wrap(net: torch.nn.Module) -> torch.nn.Module:
        net = net.to(memory_format=memory_format)
        if ddp.world_size > 1:
            # broadcast_buffers (default) keeps spectral norm's power-iteration vectors equal on all ranks.
            return DistributedDataParallel(net, device_ids=[device.index] if cuda else None)
        return net

    method = (method_cls or METHODS[cfg.method])(cfg, device, amp, sched_len, decay_start, wrap=wrap, seed=seed + 1000 * ddp.rank)
    if state:
        method.load_state_dict(state["method"])
        if ddp.world_size == 1:
            torch.set_rng_state(state["rng"]["torch"])
            if cuda and "cuda" in state["rng"]:
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        log.info("resumed %s at step %d of %d", run_dir, start, total)

    if ddp.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for tmp in run_dir.glob(".*.tmp"):  # left by a crash mid-write; the real files are intact
            tmp.unlink()
        atomic_write(run_dir / CONFIG_FILE, lambda tmp: tmp.write_text(dump_config(cfg)))
        log.info("training %s on %s: %d images, %d steps/epoch, steps %d..%d, batch %d x %d process(es)%s",
                 cfg.method, device, len(dataset), sampler.steps_per_epoch, start, total, bs, ddp.world_size,
                 f", amp {amp.dtype}" if amp.dtype else f", {torch.get_num_threads()} CPU threads" if not cuda else "")

    step, last_saved = start, start
    reporter = Reporter(cfg, run_dir, log, start, total, images_per_step=bs * ddp.world_size, enabled=ddp.main, progress=progress)
    try:
        with StopRequest(log) as stop:
            batches = iter(loader)
            stopping = False
            while step < total and not stopping:
                batch = {k: v.to(device, non_blocking=True).to(memory_format=memory_format) for k, v in next(batches).items()}
                noise = cfg.loss.instance_noise * max(0.0, 1 - step / sched_len)  # annealed to 0
                stats = method.train_step(batch, noise)
                method.players.step_schedules()
                step += 1
                bad = [k for k, v in stats.items() if not math.isfinite(v)]
                # All ranks must leave the loop at the same step, or the others hang in a collective.
                stopping, diverged = agree([stop.requested, bool(bad)], ddp, device)
                if diverged:
                    msg = f"loss {', '.join(bad) or 'on another rank'} became NaN/Inf at step {step}"
                    reporter.record_nan(step, msg)
                    raise Img2ImgError(
                        f"{msg}; training stopped and the last good checkpoint (step {last_saved}) in {run_dir} "
                        f"is kept. Lower train.lr_g/train.lr_d, or set train.amp=off, then --resume"
                    )
                if not ddp.main:
                    continue
                reporter.after_step(step, stats, method, batch)
                if step % cfg.train.checkpoint_every == 0 or step == total:
                    save_checkpoint(run_dir, method, cfg, step)
                    last_saved = step
            check_ranks_in_sync(method, ddp)
            if ddp.world_size > 1:
                log.info("DDP: weights and buffers identical on all %d ranks at step %d", ddp.world_size, step)
            if ddp.main and step != last_saved:
                save_checkpoint(run_dir, method, cfg, step)
            if stopping and ddp.main:
                log.warning("stopped at step %d; checkpoint saved in %s. Continue with --resume", step, run_dir)
    finally:
        reporter.close()
    return step
