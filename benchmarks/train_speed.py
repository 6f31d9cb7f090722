"""Training speed of img2img: images/s and peak memory per training step, plus a DDP scaling row.

    .venv/bin/python benchmarks/train_speed.py                       # defaults: 694 s on a shared 2-core CPU
    .venv/bin/python benchmarks/train_speed.py --device cuda --steps 20 --warmup 5
    .venv/bin/python benchmarks/train_speed.py --methods cyclegan --sizes 256 --no-ddp

Part 1 (per method and size) builds the method exactly as img2img/train.py does
(img2img.train.setup_training: precision, memory format, the method and its nets) from the
preset's DEFAULT nets, and times one training step (train_step + the LR schedule) on real photos from skimage.data
(already in memory, so data loading is not timed). Each (method, size) runs in a fresh
subprocess, so one measurement's memory cannot hide in another's.

Peak memory: on CUDA, torch.cuda.max_memory_allocated() over the warm-up and timed steps,
minus what was allocated before the nets were built. On CPU, the resident set size
(/proc/self/statm) sampled every 2 ms by a background thread; reported is the peak RSS minus
the RSS just before the nets were built. Both therefore include weights, gradients, Adam state
and activations (tracemalloc cannot see torch's allocations, and getrusage's ru_maxrss is a
lifetime maximum that includes importing everything).

Part 2 (DDP, CPU only) trains a small CycleGAN through the real CLI on a temporary folder of
the same photos (data.num_workers=0, so no loader processes compete for the cores):
`torchrun --standalone --nproc-per-node 2 -m img2img train ...` with OMP_NUM_THREADS=1 per process, against `python -m img2img train ...` with 2 and with 1
thread(s). The images/s is the one the trainer itself logs (TensorBoard scalar
speed/images_per_s in <run-dir>/tb, logged every step; it counts all ranks), averaged over the
steps after the warm-up; process start-up, data scanning and the final checkpoint are outside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRESETS = {"pix2pix": "pix2pix", "cyclegan": "cyclegan"}  # method -> preset with its default nets
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle")
DDP_SETS = [  # small CycleGAN for the DDP comparison: 128 px crops, ngf = ndf = 16
    "data.load_size=144", "data.crop_size=128", "model.ngf=16", "model.ndf=16", "data.num_workers=0",
    "train.log_every=1", "train.sample_every=1000000", "train.checkpoint_every=1000000",
]


# --------------------------------------------------------------------------------------------
# Machine


def cpu_busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def own_cpu_seconds() -> float:
    """CPU seconds used by this process and every waited-for descendant."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


# --------------------------------------------------------------------------------------------
# Part 1 worker: one (method, size) in this process


def photos_rgb(size: int):
    """The skimage photos as HxWx3 uint8 arrays resized to size x size (bicubic)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    raw = {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee(),
           "rocket": data.rocket(), "motorcycle": data.stereo_motorcycle()[0]}
    return [np.asarray(Image.fromarray(raw[n]).convert("RGB").resize((size, size), Image.BICUBIC)) for n in PHOTOS]


def unet_downs_for(size: int, num_downs: int) -> int:
    """The deepest U-Net (<= num_downs) whose stride divides size: U-Net-256 needs 256 px, 128 px gets U-Net-128."""
    while num_downs > 2 and size % 2**num_downs:
        num_downs -= 1
    return num_downs


class RssSampler(threading.Thread):
    """Samples this process's resident set size every `interval` s; .peak in bytes."""

    def __init__(self, interval: float = 0.002):
        super().__init__(daemon=True)
        self.interval, self.page = interval, os.sysconf("SC_PAGE_SIZE")
        self.peak, self._stop_event = self.rss(), threading.Event()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, self.rss())
        return self.peak


def worker(method_name: str, size: int, args: argparse.Namespace) -> dict:
    import torch

    from img2img.config import load_config
    from img2img.train import select_device, setup_training

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = [f"data.load_size={size}", f"data.crop_size={size}", f"data.batch_size={args.batch_size}", *args.set]
    preset = load_config(PRESETS[method_name], args.set)  # the preset's nets, at its own crop size
    note = ""
    if preset.model.generator == "unet" and size % 2**preset.model.num_downs:
        # The config rejects crops that are not a multiple of the U-Net's stride (2**num_downs).
        downs = unet_downs_for(size, preset.model.num_downs)
        note = (f"the preset's U-Net-{2**preset.model.num_downs} needs sides that are multiples of "
                f"{2**preset.model.num_downs} px (the config rejects {size} px); measured with model.num_downs={downs} "
                f"(U-Net-{2**downs}: the same nets, {preset.model.num_downs - downs} level(s) shallower)")
        overrides.append(f"model.num_downs={downs}")
    cfg = load_config(PRESETS[method_name], overrides)
    m = cfg.model
    net = (f"U-Net-{2**m.num_downs} ngf {m.ngf}" if m.generator == "unet" else f"ResNet-{m.n_blocks} ngf {m.ngf}")

    device = select_device(args.device)
    cuda = device.type == "cuda"
    seed = cfg.train.seed
    torch.manual_seed(seed)
    steps_per_epoch = max(len(PHOTOS) // args.batch_size, 1)

    # Batches of real photos in [-1, 1], on the device before the clock starts.
    rgb = [torch.from_numpy(a).permute(2, 0, 1).float().div(127.5).sub(1) for a in photos_rgb(size)]
    grey = [x.mul(torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True).expand(3, -1, -1) for x in rgb]
    n, bs = len(rgb), args.batch_size
    batches = []
    for i in range(n):
        idx = [(i + k) % n for k in range(bs)]
        if cfg.method == "pix2pix":  # aligned pair: grey photo -> colour photo
            a, b = torch.stack([grey[j] for j in idx]), torch.stack([rgb[j] for j in idx])
        else:  # unpaired: two different photos
            a, b = torch.stack([rgb[j] for j in idx]), torch.stack([rgb[(j + 2) % n] for j in idx])
        batches.append({"A": a.contiguous(), "B": b.contiguous()})
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]

    # --- memory baseline: before the nets exist --------------------------------------------
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        sampler = None
    else:
        sampler = RssSampler()
        base = sampler.rss()
        sampler.start()

    # Exactly what img2img/train.py builds: precision, memory format, the method and its nets.
    training = setup_training(cfg, device, steps_per_epoch)
    amp, memory_format = training.amp, training.memory_format
    batches = [{k: v.to(memory_format=memory_format) for k, v in b.items()} for b in batches]
    params = sum(p.numel() for net in training.method.nets().values() for p in net.parameters())

    def one_step(step: int) -> None:
        training.step(batches[step % n], step, cfg.loss.instance_noise)

    for step in range(args.warmup):
        one_step(step)
    if cuda:
        torch.cuda.synchronize()
    times = []
    for step in range(args.warmup, args.warmup + args.steps):
        t0 = time.perf_counter()
        one_step(step)  # ends in .item() calls, so the GPU has finished too
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    elapsed = sum(times)
    peak = (torch.cuda.max_memory_allocated(device) if cuda else sampler.stop()) - base

    return {
        "method": cfg.method, "net": net, "size": size, "batch": bs, "device": str(device),
        "amp": {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp.dtype],
        "channels_last": memory_format == torch.channels_last,
        "threads": torch.get_num_threads(), "steps": args.steps, "seconds": elapsed,
        "s_per_step": elapsed / args.steps, "step_min": min(times), "step_max": max(times),
        "images_per_s": args.steps * bs / elapsed,
        "peak_mib": peak / 2**20, "params_m": params / 1e6, "note": note,
        "gpu": torch.cuda.get_device_name(device) if cuda else "",
    }


def run_worker(method_name: str, size: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--_worker", f"{method_name}:{size}", "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--device", args.device, "--batch-size", str(args.batch_size),
           "--threads", str(args.threads)]
    for s in args.set:
        cmd += ["--set", s]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"method": method_name, "size": size, "error": f"timed out after {args.timeout} s (see --timeout, --steps)"}
    if r.returncode != 0:
        return {"method": method_name, "size": size, "error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Part 2: DDP through the real CLI


def make_unpaired_folder(root: Path) -> Path:
    """trainA: astronaut, coffee, motorcycle; trainB: chelsea, rocket (full-size JPEGs)."""
    from PIL import Image

    arrays = dict(zip(PHOTOS, photos_rgb_full()))
    for side, names in (("trainA", ("astronaut", "coffee", "motorcycle")), ("trainB", ("chelsea", "rocket"))):
        (root / side).mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.fromarray(arrays[name]).save(root / side / f"{name}.jpg", quality=95)
    return root


def photos_rgb_full():
    from skimage import data

    return [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.stereo_motorcycle()[0]]


def torch_threads(env: dict) -> int:
    r = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                       capture_output=True, text=True, env=env)
    return int(r.stdout.strip() or 0)


def tb_speed(tb_dir: Path, skip: int) -> tuple[float, list[float]]:
    """Images/s over the logged steps after `skip` = (n steps) / sum(1 / value), where each
    logged value is images / seconds since the previous log (log_every = 1); and the values."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    events = sorted(acc.Scalars("speed/images_per_s"), key=lambda e: e.step)
    timed = [e.value for e in events if e.step > skip]
    if not timed:
        raise RuntimeError(f"no speed/images_per_s after step {skip} in {tb_dir}")
    return len(timed) / sum(1 / v for v in timed), timed


def ddp_runs(args: argparse.Namespace, tmp: Path) -> list[dict]:
    data = make_unpaired_folder(tmp / "photos")
    torchrun = Path(sys.executable).parent / "torchrun"
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    common = ["-m", "img2img", "train", "--config", "cyclegan", "--data", str(data), "--device", "cpu",
              "--max-steps", str(args.ddp_warmup + args.ddp_steps), "--no-progress",
              *[a for s in [*DDP_SETS, f"data.batch_size={args.batch_size}"] for a in ("--set", s)]]
    setups = [
        ("DDP 2 proc (gloo)", 2, 1),
        ("1 proc", 1, 2),
        ("1 proc", 1, 1),
    ]
    rows = []
    for label, procs, threads in setups:
        run_dir = tmp / f"run_{procs}p{threads}t"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
        if procs > 1:
            cmd = [*launcher, "--standalone", "--nproc-per-node", str(procs), *common, "--run-dir", str(run_dir)]
            shown = ["torchrun", "--standalone", "--nproc-per-node", str(procs), *common, "--run-dir", "RUN"]
        else:
            cmd = [sys.executable, *common, "--run-dir", str(run_dir)]
            shown = ["python", *common, "--run-dir", "RUN"]
        row = {"setup": label, "procs": procs, "threads": threads, "batch": args.batch_size,
               "command": f"OMP_NUM_THREADS={threads} " + " ".join(shown).replace(str(data), "PHOTOS")}
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp)
        try:
            _, err = proc.communicate(timeout=args.ddp_timeout)
        except subprocess.TimeoutExpired:
            # SIGTERM, not SIGKILL: torchrun passes it on to its workers (which run in their own session).
            proc.terminate()
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            err = f"timed out after {args.ddp_timeout} s (see --ddp-timeout)\n{err}"
        row["wall_s"] = time.perf_counter() - t0
        row["torch_threads"] = torch_threads(env)
        if proc.returncode != 0 or err.startswith("timed out"):
            row["error"] = err.strip()[-3000:]
        else:
            try:
                row["images_per_s"], values = tb_speed(run_dir / "tb", args.ddp_warmup)
                steps = [args.batch_size * procs / v for v in values]
                row["steps"], row["step_min"], row["step_max"] = len(values), min(steps), max(steps)
            except Exception as e:  # noqa: BLE001 - reported in the table
                row["error"] = f"{type(e).__name__}: {e}"
        rows.append(row)
        print(f"  ddp: {label} x{threads} thread(s): "
              + (f"{row['images_per_s']:.3f} img/s" if "images_per_s" in row else "FAILED"), file=sys.stderr, flush=True)
    return rows


# --------------------------------------------------------------------------------------------
# Report


def fmt_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="pix2pix,cyclegan", help="comma-separated: pix2pix,cyclegan")
    p.add_argument("--sizes", default="128,256", help="comma-separated crop sizes in px")
    p.add_argument("--steps", type=int, default=2, help="timed training steps per (method, size)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--batch-size", type=int, default=1, help="batch size (per process in the DDP part)")
    p.add_argument("--device", default="auto", help="auto (CUDA if usable), cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads in part 1 (0: torch's default, as the trainer)")
    p.add_argument("--timeout", type=int, default=600, help="seconds before one (method, size) measurement is given up")
    p.add_argument("--set", action="append", default=[], help="extra config override for part 1, e.g. train.amp=off")
    p.add_argument("--ddp", action=argparse.BooleanOptionalAction, default=None,
                   help="run the DDP part (default: on when the device is CPU)")
    p.add_argument("--ddp-steps", type=int, default=4, help="timed steps per DDP/1-proc run")
    p.add_argument("--ddp-warmup", type=int, default=2, help="untimed steps at the start of each DDP/1-proc run")
    p.add_argument("--ddp-timeout", type=int, default=300, help="seconds before a DDP/1-proc run is given up")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.steps < 1 or args.ddp_steps < 1 or args.warmup < 0 or args.ddp_warmup < 0:
        p.error("--steps and --ddp-steps must be at least 1, the warm-ups at least 0")

    if args._worker:
        name, size = args._worker.split(":")
        print(json.dumps(worker(name, int(size), args)))
        return

    import torch

    start_wall, start_cpu, (busy0, _) = time.perf_counter(), own_cpu_seconds(), cpu_busy_jiffies()
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    ddp = (not cuda) if args.ddp is None else args.ddp

    results = []
    for m in methods:
        if m not in PRESETS:
            raise SystemExit(f"unknown method {m!r}; choose from {', '.join(PRESETS)}")
        for s in sizes:
            r = run_worker(m, s, args)
            results.append(r)
            print(f"  {m} {s}px: " + (f"{r['images_per_s']:.3f} img/s" if "error" not in r else "FAILED"), file=sys.stderr, flush=True)
    ddp_rows = []
    if ddp:
        with tempfile.TemporaryDirectory(prefix="img2img-bench-") as tmp:
            ddp_rows = ddp_runs(args, Path(tmp))

    wall = time.perf_counter() - start_wall
    busy1, total1 = cpu_busy_jiffies()
    ncpu = os.cpu_count() or 1
    tick = os.sysconf("SC_CLK_TCK")
    all_busy_s = (busy1 - busy0) / tick
    others = max(0.0, all_busy_s - (own_cpu_seconds() - start_cpu)) / (wall * ncpu) * 100

    # ---- header ----
    device = next((r["device"] for r in results if "device" in r), "cuda" if cuda else "cpu")
    gpu = next((r["gpu"] for r in results if r.get("gpu")), "")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else ncpu
    from img2img.devices import cpu_summary

    print(f"Machine: {cpu_summary()}, {ncpu} logical CPU(s) ({affinity} usable), "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM")
    print(f"Software: Python {platform.python_version()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch thread(s) by default")
    print(f"Device: {device}{f' ({gpu})' if gpu else ''}")
    print(f"Command: {' '.join(['python', 'benchmarks/train_speed.py', *sys.argv[1:]])}")
    print(f"Took {wall:.0f} s; other processes used {others:.0f}% of the machine's CPU meanwhile "
          f"(load average at the end: {os.getloadavg()[0]:.1f})")
    print()

    # ---- part 1 ----
    print(f"### Training step (batch {args.batch_size}, {args.warmup} warm-up + {args.steps} timed step(s), data in memory)")
    print()
    rows, notes = [], []
    for r in results:
        if "error" in r:
            rows.append([r["method"], "", f"{r['size']}", "", "", "", "", "", f"FAILED: {r['error']}", ""])
            continue
        net = r["net"] + (f" [{len(notes) + 1}]" if r["note"] else "")
        if r["note"]:
            notes.append(r["note"])
        rows.append([r["method"], net, str(r["size"]), r["device"], r["amp"], "yes" if r["channels_last"] else "no",
                     f"{r['params_m']:.1f}", f"{r['s_per_step']:.2f} ({r['step_min']:.2f}-{r['step_max']:.2f})",
                     f"{r['images_per_s']:.3f}", f"{r['peak_mib']:.0f}"])
    mem = "peak CUDA alloc (MiB)" if cuda else "peak RSS increase (MiB)"
    print(fmt_table(["method", "generator", "px", "device", "AMP", "channels_last", "params G+D (M)", "s/step (min-max)",
                     "images/s", mem], rows))
    if results and not cuda:
        print(f"\nCPU threads per process: {next((r['threads'] for r in results if 'threads' in r), '?')}. "
              "Memory: peak RSS (sampled every 2 ms) minus RSS before the nets were built: weights, grads, "
              "Adam state and activations.")
    for i, n in enumerate(notes, 1):
        print(f"[{i}] {n}")

    # ---- part 2 ----
    if ddp_rows:
        print()
        print(f"### DDP on CPU: small CycleGAN (ResNet-9 ngf 16, ndf 16, 128 px crops), batch {args.batch_size} per process, "
              f"{args.ddp_warmup} warm-up + {args.ddp_steps} timed steps, images/s from the trainer's speed/images_per_s")
        print()
        rows = []
        base = next((r["images_per_s"] for r in ddp_rows if r["procs"] == 1 and r["threads"] == 1 and "images_per_s" in r), None)
        for r in ddp_rows:
            if "images_per_s" in r:
                ips = r["images_per_s"]
                rows.append([r["setup"], f"{r['procs']} x {r['threads']} (torch: {r['torch_threads']})",
                             f"{r['batch'] * r['procs']}", f"{r['batch'] * r['procs'] / ips:.2f} ({r['step_min']:.2f}-{r['step_max']:.2f})", f"{ips:.3f}",
                             f"{ips / base:.2f}x" if base else "", f"{r['wall_s']:.0f}"])
            else:
                rows.append([r["setup"], f"{r['procs']} x {r['threads']}", "", "", "FAILED", "", f"{r['wall_s']:.0f}"])
        print(fmt_table(["run", "processes x threads", "images/step", "s/step (min-max)", "images/s (all ranks)",
                         "vs 1 proc x 1 thread", "wall incl. start-up (s)"], rows))
        print()
        for r in ddp_rows:
            print(f"    {r['command']}")
        for r in ddp_rows:
            if "error" in r:
                print(f"\n{r['setup']} ({r['procs']} x {r['threads']}) failed:\n```\n{r['error']}\n```")


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    main()
