"""The training loop: devices, AMP, DDP, schedule, logging, samples, checkpoints, resume, stops.

setup_training() builds what a step needs (method, precision, memory format, schedule); the
benchmarks call it too, so they time exactly what training runs. train() adds the data, the
Reporter (rank 0's progress, logs, samples, health) and checkpoints around the loop.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

from img2img import Img2ImgError, __version__
from img2img.checkpoint import load_state, save_generator, save_state
from img2img.config import RunConfig, dump_config
from img2img.data.datasets import ResumableSampler, build_dataset
from img2img.devices import cpu_bf16_support, cpu_summary, resolve_device
from img2img.health import HealthMonitor
from img2img.io import atomic_write
from img2img.methods import Method, build_method
from img2img.methods.common import Amp, adversarial, choose_amp, has_batch_norm, recalibrate_batch_norm
from img2img.rundir import CONFIG_FILE, HEALTH_FILE, SAMPLES_DIR, STATE_FILE, TB_DIR, generator_file, sample_file

MakeMethod = Callable[..., Method]  # build_method's signature
WARMUP_STEPS = 5                    # steps before the s/step and ETA are measured
CPU_PRESETS = {"colorization": "colorization-cpu", "sketch": "sketch2photo-cpu", "unpaired": "cyclegan-cpu", "paired": "pix2pix-cpu"}


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
    if resolve_device(name) == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def describe_device(device: torch.device, amp: Amp) -> str:
    """The start-up line: the device, why, and its precision."""
    precision = f"mixed precision {str(amp.dtype).removeprefix('torch.')}" if amp.dtype else "full precision (fp32)"
    if device.type == "cuda":
        return f"device {torch.cuda.get_device_name(device)} (CUDA), {precision}"
    why = "no usable CUDA GPU found" if not torch.cuda.is_available() else "CPU asked for"
    threads = torch.get_num_threads()
    return f"device CPU: {cpu_summary()}, {threads} thread{'s' if threads > 1 else ''} ({why}), {precision}"


def schedule(cfg: RunConfig, steps_per_epoch: int) -> tuple[int, int, int]:
    """(last step, schedule length, decay start) in steps. The learning-rate schedule follows the
    epochs (or train.steps); train.max_steps only stops earlier, so a resumed run with a larger
    max_steps continues the very same schedule."""
    t = cfg.train
    if t.steps is not None:
        return t.max_steps or t.steps, t.steps, t.steps // 2
    length = max((t.n_epochs + t.n_epochs_decay) * steps_per_epoch, 1)
    return t.max_steps or length, length, t.n_epochs * steps_per_epoch


@dataclass
class Training:
    """What one step needs, built the same way for training and for the benchmarks."""

    method: Method
    device: torch.device
    amp: Amp
    memory_format: torch.memory_format
    total: int           # last step
    sched_len: int       # schedule length in steps (instance noise anneals over it)

    def step(self, batch: dict[str, torch.Tensor], step: int, noise_sigma: float) -> dict[str, float]:
        noise = noise_sigma * max(0.0, 1 - step / self.sched_len)  # instance noise, annealed to 0
        stats = self.method.train_step(batch, noise)
        self.method.step_schedules()
        return stats


def setup_training(cfg: RunConfig, device: torch.device, steps_per_epoch: int, ddp: Dist = Dist(),
                   make_method: MakeMethod = build_method) -> Training:
    """Precision, memory format and the method with its nets (DDP-wrapped under torchrun).

    channels_last (NHWC) on CUDA only: cuDNN's tensor-core kernels want it, while on the CPU it
    measured slower than NCHW (docs/training.md). bf16 autocast runs on GPUs and on CPUs with
    native bf16 only (choose_amp)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick the fastest kernels
    amp = choose_amp(cfg.train.amp, device, None if cuda else cpu_bf16_support())
    memory_format = torch.channels_last if cuda and cfg.train.channels_last else torch.contiguous_format

    def wrap(net: torch.nn.Module) -> torch.nn.Module:
        net = net.to(memory_format=memory_format)
        if ddp.world_size > 1:
            # broadcast_buffers (default) keeps spectral norm's power-iteration vectors equal on all ranks.
            return DistributedDataParallel(net, device_ids=[device.index] if cuda else None)
        return net

    total, sched_len, decay_start = schedule(cfg, steps_per_epoch)
    seed = cfg.train.seed + 1000 * ddp.rank
    method = make_method(cfg, device, amp, sched_len, decay_start, wrap=wrap, seed=seed)
    return Training(method, device, amp, memory_format, total, sched_len)


class StopRequest:
    """First Ctrl-C / SIGTERM asks for a clean stop after the current step (with a checkpoint);
    a second Ctrl-C aborts at once. `signal` names the signal that asked."""

    def __init__(self, log: logging.Logger):
        self.requested, self.log, self.previous = False, log, {}
        self.signal: signal.Signals | None = None

    def __enter__(self) -> "StopRequest":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested, self.signal = True, signal.Signals(signum)
        self.log.warning("%s received: stopping after this step and saving a checkpoint (Ctrl-C again aborts)", self.signal.name)

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


def check_ranks_in_sync(method: Method, ddp: Dist) -> None:
    """Under DDP every rank must hold identical weights and buffers (spectral-norm vectors
    included); compare per-tensor fingerprints across ranks and fail loudly if they drift.
    Batch-norm running statistics are local by design (DDP re-broadcasts rank 0's at each
    forward, and rank 0's are saved), so they are left out."""
    if ddp.world_size == 1:
        return
    local_stats = ("running_mean", "running_var")
    tensors = [t for net in method.nets().values() for k, t in net.state_dict().items()
               if t.is_floating_point() and not k.endswith(local_stats)]
    mine = torch.stack([torch.stack([t.double().sum(), t.double().square().sum()]) for t in tensors]).flatten()
    everyone = [torch.empty_like(mine) for _ in range(ddp.world_size)]
    dist.all_gather(everyone, mine)
    if not all(torch.equal(everyone[0], other) for other in everyone[1:]):
        raise Img2ImgError("DDP ranks hold different weights; please report this with your config")


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class Reporter:
    """Rank 0's view of training: progress bar, the ETA line, TensorBoard, sample grids and health.json."""

    def __init__(self, cfg: RunConfig, run_dir: Path, log: logging.Logger, start: int, total: int,
                 images_per_step: int, d_loss_keys: tuple[str, ...], cpu: bool, enabled: bool, progress: bool):
        self.cfg, self.run_dir, self.log, self.enabled, self.cpu = cfg, run_dir, log, enabled, cpu
        self.images_per_step, self.start, self.total = images_per_step, start, total
        self.bar = tqdm(total=total, initial=start, disable=not (progress and enabled), dynamic_ncols=True, unit="step")
        # A WGAN critic's loss may sit near 0 in a healthy run: no D-collapse sign for it.
        self.health = HealthMonitor(cfg.train.health_window, cfg.train.grad_jump,
                                    () if adversarial(cfg).gradient_penalty else d_loss_keys)
        self.health_file = run_dir / HEALTH_FILE
        self.writer = None
        if enabled:
            self.health.load(self.health_file)  # keep earlier findings of a resumed run
            from torch.utils.tensorboard import SummaryWriter  # slow import; rank 0 only

            self.writer = SummaryWriter(str(run_dir / TB_DIR), purge_step=start)
        self.tick, self.tick_step = time.perf_counter(), start
        self.warm: tuple[float, int] | None = None  # (time, step) after the warm-up steps

    def after_step(self, step: int, stats: dict[str, float], method: Method, batch: dict[str, torch.Tensor]) -> None:
        t = self.cfg.train
        for f in self.health.update(step, stats):
            self.log.warning("step %d: %s; hint: %s", step, f.message, f.hint)
            self.health.save(self.health_file)
        self._eta(step)
        if step % t.log_every == 0 or step == self.total:
            now = time.perf_counter()
            ips = (step - self.tick_step) * self.images_per_step / max(now - self.tick, 1e-9)
            self.tick, self.tick_step = now, step
            flags = {"health": self.health.findings[-1].kind} if self.health.findings else {}
            self.bar.set_postfix({**{k: f"{v:.3g}" for k, v in stats.items()}, "img/s": f"{ips:.1f}", **flags}, refresh=False)
            for k, v in stats.items():
                self.writer.add_scalar(f"loss/{k}", v, step)
            self.writer.add_scalar("speed/images_per_s", ips, step)
            self.writer.add_scalar("lr/G", method.learning_rate(), step)
        if step % t.sample_every == 0 or step == self.total:
            grid = _grid(method.samples(batch))
            (self.run_dir / SAMPLES_DIR).mkdir(exist_ok=True)
            save_image(grid, self.run_dir / SAMPLES_DIR / sample_file(step))
            self.writer.add_image("samples", grid, step)
        self.bar.update(step - self.bar.n)

    def _eta(self, step: int) -> None:
        """Once, WARMUP_STEPS steps after the next WARMUP_STEPS: the measured s/step and the
        time the whole run will take, with the CPU preset when that is over a day on a CPU."""
        done = step - self.start
        if done == WARMUP_STEPS:
            self.warm = (time.perf_counter(), step)
        elif self.warm is not None and done == 2 * WARMUP_STEPS:
            per_step = (time.perf_counter() - self.warm[0]) / (step - self.warm[1])
            left = per_step * (self.total - step)
            self.log.info("%.2f s/step: %d steps left, about %s (ETA %s)", per_step, self.total - step,
                          format_duration(left), time.strftime("%a %H:%M", time.localtime(time.time() + left)))
            preset = CPU_PRESETS.get(self.cfg.data.kind)
            if self.cpu and left > 86400 and preset:
                self.log.warning("that is over a day on this CPU. The preset %s is sized for a CPU (a useful model in "
                                 "about an hour on 2 cores): img2img train --config %s --data DIR", preset, preset)
            self.warm = None

    def record_nan(self, step: int, message: str) -> None:
        if self.enabled:
            self.health.record(step, "nan", message)
            self.health.save(self.health_file)

    def close(self) -> None:
        self.bar.close()
        if self.writer:
            self.writer.close()


def recalibration_batches(dataset: Dataset, images: int, device: torch.device, memory_format: torch.memory_format,
                          batch: int = 32) -> Iterator[torch.Tensor]:
    """The A inputs of the training samples with keys 0 .. images-1 (each seeded by its key, so
    the same every time and untouched by the training RNG), in batches of up to `batch`."""
    for start in range(0, images, batch):
        xs = [dataset[k]["A"] for k in range(start, min(images, start + batch))]
        yield torch.stack(xs).to(device).to(memory_format=memory_format)


def save_checkpoint(run_dir: Path, training: Training, cfg: RunConfig, step: int, dataset: Dataset, log: logging.Logger) -> None:
    """Generators first, then last.pt: last.pt's step never points past the saved weights.
    Batch-norm generators get their running statistics re-estimated first (see
    recalibrate_batch_norm), so the saved (and exported) net behaves as it trained."""
    method = training.method
    for direction, net in method.generators().items():
        if has_batch_norm(net) and cfg.train.bn_recalibration_images > 0:
            batches = recalibration_batches(dataset, cfg.train.bn_recalibration_images, training.device, training.memory_format)
            seen = recalibrate_batch_norm(net, batches, training.amp)
            log.debug("batch norm of %s re-estimated over %d training images", direction, seen)
        save_generator(run_dir / generator_file(direction), net, cfg, direction)
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    state = {"step": step, "version": __version__, "config": dump_config(cfg), "method": method.state_dict(), "rng": rng}
    save_state(run_dir / STATE_FILE, state)


@dataclass(frozen=True)
class TrainResult:
    step: int                               # the last step reached (and saved)
    stopped_by: signal.Signals | None = None  # SIGINT / SIGTERM when a signal stopped the run early


def train(cfg: RunConfig, data_root: Path, run_dir: Path, device: torch.device, log: logging.Logger,
          resume: bool = False, ddp: Dist = Dist(), progress: bool = True,
          make_method: MakeMethod = build_method) -> TrainResult:
    """Train until cfg's step budget or a stop request.

    make_method replaces build_method (same signature), e.g. for an ablation's variant."""
    run_dir = Path(run_dir)
    state = load_state(run_dir / STATE_FILE) if resume else None
    start = int(state["step"]) if state else 0
    seed = cfg.train.seed
    torch.manual_seed(seed + ddp.rank)  # per-rank seed: dropout and noise differ across ranks

    dataset = build_dataset(cfg.data, data_root, seed=seed, log=log)
    bs = cfg.data.batch_size
    sampler = ResumableSampler(dataset, bs, seed, ddp.rank, ddp.world_size, start_step=start, weights=dataset.sample_weights)
    workers = cfg.data.num_workers
    loader = DataLoader(
        dataset, batch_size=bs, sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
        persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
        generator=torch.Generator().manual_seed(seed),  # keeps the global RNG untouched by the loader
        worker_init_fn=ignore_stop_signals,
    )
    training = setup_training(cfg, device, sampler.steps_per_epoch, ddp, make_method)
    method, total = training.method, training.total
    if state:
        method.load_state_dict(state["method"])
        if ddp.world_size == 1:
            torch.set_rng_state(state["rng"]["torch"])
            if device.type == "cuda" and "cuda" in state["rng"]:
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        log.info("resumed %s at step %d of %d", run_dir, start, total)

    if ddp.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for tmp in run_dir.glob(".*.tmp"):  # left by a crash mid-write; the real files are intact
            tmp.unlink()
        atomic_write(run_dir / CONFIG_FILE, lambda tmp: tmp.write_text(dump_config(cfg)))
        log.info("%s", describe_device(device, training.amp))
        log.info("training %s on %d images from %s: %d steps/epoch, steps %d..%d, batch %d x %d process(es)",
                 cfg.method, len(dataset), data_root, sampler.steps_per_epoch, start, total, bs, ddp.world_size)

    step, last_saved = start, start
    reporter = Reporter(cfg, run_dir, log, start, total, bs * ddp.world_size, method.d_loss_keys,
                        cpu=device.type == "cpu", enabled=ddp.main, progress=progress)
    try:
        with StopRequest(log) as stop:
            batches = iter(loader)
            stopping = False
            while step < total and not stopping:
                batch = {k: v.to(device, non_blocking=True).to(memory_format=training.memory_format) for k, v in next(batches).items()}
                stats = training.step(batch, step, cfg.loss.instance_noise)
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
                    save_checkpoint(run_dir, training, cfg, step, dataset, log)
                    last_saved = step
            check_ranks_in_sync(method, ddp)
            if ddp.world_size > 1:
                log.info("DDP: weights and buffers identical on all %d ranks at step %d", ddp.world_size, step)
            if ddp.main and step != last_saved:
                save_checkpoint(run_dir, training, cfg, step, dataset, log)
    finally:
        reporter.close()
    # A stop agreed with another rank may have reached this one by no signal of its own.
    return TrainResult(step, (stop.signal or signal.SIGTERM) if stopping else None)
