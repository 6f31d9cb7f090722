"""Inference speed of the default generators on this machine: PyTorch eager, torch.compile,
ONNX Runtime (graph optimization levels, the exact pixel-shuffle upsampling rewrite, static
int8), with quality loss as PSNR against fp32 PyTorch and achieved GFLOP/s against the
machine's measured fp32 matmul peak.

    .venv/bin/python benchmarks/inference_speed.py                      # everything (long on 2 cores)
    .venv/bin/python benchmarks/inference_speed.py --archs resnet --sizes 256 --batches 1 \
        --variants eager,ort,ort-ps                                     # a few minutes
    .venv/bin/python benchmarks/inference_speed.py --memory-only        # 4096x4096 photo, peak RSS

Prints a Markdown table (docs/inference.md keeps one)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from img2img.checkpoint import load_generator, save_generator  # noqa: E402
from img2img.config import load_config  # noqa: E402
from img2img.devices import cpu_model  # noqa: E402
from img2img.export import export_onnx, plain_upsampling, rewrite_upsampling  # noqa: E402

# The defaults: CycleGAN's ResNet-9 (instance norm) and pix2pix's U-Net-256 (batch norm, dropout).
ARCHS = {
    "resnet": ["model.generator=resnet", "model.ngf=64", "model.n_blocks=9", "model.norm_g=instance"],
    "unet": ["model.generator=unet", "model.ngf=64", "model.num_downs=8", "model.norm_g=batch", "model.dropout=0.5"],
}
VARIANTS = ("eager", "compile", "ort-basic", "ort", "ort-ps", "ort-ps-int8")
DESCRIPTION = {
    "eager": "PyTorch eager fp32",
    "compile": "torch.compile (inductor) fp32",
    "ort-basic": "ORT fp32, basic graph opts",
    "ort": "ORT fp32, all graph opts",
    "ort-ps": "ORT fp32 + pixel-shuffle rewrite",
    "ort-ps-int8": "ORT int8 (static QDQ) + rewrite",
}


def photos(size: int, batch: int) -> np.ndarray:
    """Real photos (scikit-image) resized to size x size, as B x 3 x H x W in [-1, 1]."""
    from PIL import Image
    from skimage import data

    names = ["astronaut", "coffee", "chelsea", "rocket"]
    out = []
    for i in range(batch):
        img = Image.fromarray(getattr(data, names[i % len(names)])()).resize((size, size), Image.Resampling.BICUBIC)
        out.append(np.asarray(img.convert("RGB"), np.float32).transpose(2, 0, 1) / 127.5 - 1)
    return np.stack(out)


def matmul_peak(threads: int, n: int = 2048, reps: int = 10) -> float:
    """Best fp32 GFLOP/s of an n x n matmul (2 n^3 flops) with torch (oneDNN/MKL)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def count_flops(net: torch.nn.Module, size: int) -> float:
    """FLOPs (2 per multiply-add) of one image at size x size; these nets scale with H x W."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.zeros(1, 3, size, size))
    return float(counter.get_total_flops())


def psnr(x: np.ndarray, ref: np.ndarray) -> float:
    """PSNR over the [-1, 1] output range (peak-to-peak 2)."""
    mse = float(np.mean((x.astype(np.float64) - ref) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(4.0 / mse)


def timed(fn, x: np.ndarray, warmup: int, repeats: int) -> tuple[float, np.ndarray]:
    """Median seconds per call after warmup (which includes torch.compile's compilation), and
    the last output."""
    out = None
    for _ in range(warmup):
        out = fn(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def ort_session(path: Path, threads: int, level: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False  # as img2img.runtime does (and several sessions stay alive here)
    options.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def quantize_int8(src: Path, dst: Path, calibration: np.ndarray) -> None:
    """Static int8 (QDQ, per-channel weights, uint8 activations) of the convolutions, calibrated
    on real photos; norms, pads and tanh stay fp32."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"image": calibration[i : i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self.items, None)

    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
    )  # fmt: skip


def variant_fn(variant: str, work: Path, arch: str, threads: int):
    """The callable (B x 3 x H x W float32 -> same) that runs one variant."""
    torch.set_num_threads(threads)
    if variant in ("eager", "compile"):
        net = load_generator(work / arch / "G_AtoB.safetensors")
        if variant == "compile":
            net = torch.compile(net, dynamic=False)

        def run(x):
            with torch.inference_mode():
                return net(torch.from_numpy(x)).numpy()

        return run
    model = {"ort-basic": f"{arch}.onnx", "ort": f"{arch}.onnx", "ort-ps": f"{arch}-ps.onnx", "ort-ps-int8": f"{arch}-ps-int8.onnx"}
    return ort_session(work / model[variant], threads, "basic" if variant == "ort-basic" else "all")


def worker(args: argparse.Namespace) -> None:
    """Time one variant on every size and batch, in a process of its own: PyTorch's and ONNX
    Runtime's thread pools and the allocator's state would otherwise affect each other."""
    fn = variant_fn(args.variant, args.work, args.arch, args.threads)
    for size in args.sizes:
        for batch in args.batches:
            x = photos(size, batch)
            sec, out = timed(fn, x, args.warmup, args.repeats)
            np.save(args.work / f"out-{args.arch}-{args.variant}-{size}-{batch}.npy", out)
            print(json.dumps({"size": size, "batch": batch, "seconds": sec}), flush=True)


def bench_arch(arch: str, args: argparse.Namespace, work: Path) -> list[dict]:
    torch.manual_seed(0)
    cfg = load_config(None, ARCHS[arch])
    save_generator(work / arch / "G_AtoB.safetensors", cfg.model.generator_spec().build(), cfg, "AtoB")
    net = load_generator(work / arch / "G_AtoB.safetensors")  # eval mode, as the runtime uses it
    multiple = net.size_multiple
    probe = max(64, multiple)
    # Executed FLOPs per pixel. The sub-pixel form (PyTorch's UpConv forward in nearest mode, and
    # the rewritten export) does 16/36 of the plain form's upsampling multiply-adds.
    flops_per_px = count_flops(plain_upsampling(net), probe) / probe**2
    ps_flops_per_px = count_flops(rewrite_upsampling(net)[0], probe) / probe**2

    variants = [v for v in VARIANTS if v in args.variants]
    if {"ort", "ort-basic"} & set(variants):
        export_onnx(work / arch, work / f"{arch}.onnx", pixel_shuffle=False)
    if {"ort-ps", "ort-ps-int8"} & set(variants):
        export_onnx(work / arch, work / f"{arch}-ps.onnx", pixel_shuffle=True)
    if "ort-ps-int8" in variants:
        t = time.perf_counter()
        quantize_int8(work / f"{arch}-ps.onnx", work / f"{arch}-ps-int8.onnx", photos(max(256, multiple), 4))
        print(f"{arch} int8: quantized in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    sizes = [s for s in args.sizes if s % multiple == 0]

    seconds: dict[tuple[str, int, int], float] = {}
    for v in variants:
        cmd = [
            sys.executable, __file__, "--worker", "--arch", arch, "--variant", v, "--work", str(work),
            "--sizes", ",".join(map(str, sizes)), "--batches", ",".join(map(str, args.batches)),
            "--threads", str(args.threads), "--warmup", str(args.warmup), "--repeats", str(args.repeats),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            print(f"{arch} {v}: failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}", file=sys.stderr)
            continue
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                seconds[(v, r["size"], r["batch"])] = r["seconds"]

    rows = []
    for size in sizes:
        for batch in args.batches:
            ref_file = work / f"out-{arch}-eager-{size}-{batch}.npy"
            if ref_file.exists():
                ref = np.load(ref_file)
            else:  # quality is always measured against fp32 eager
                with torch.inference_mode():
                    ref = net(torch.from_numpy(photos(size, batch))).numpy()
            base = seconds.get(("eager", size, batch))
            for v in variants:
                if (v, size, batch) not in seconds:
                    continue
                sec = seconds[(v, size, batch)]
                fpp = flops_per_px if v in ("ort", "ort-basic") else ps_flops_per_px
                gflops = fpp * size * size * batch / sec / 1e9
                out = np.load(work / f"out-{arch}-{v}-{size}-{batch}.npy")
                rows.append({
                    "arch": arch, "size": size, "batch": batch, "variant": v,
                    "latency_ms": sec * 1e3, "images_per_s": batch / sec, "gflop_per_image": fpp * size * size / 1e9,
                    "gflops": gflops, "psnr_db": psnr(out, ref), "speedup": (base / sec) if base else float("nan"),
                })  # fmt: skip
                r = rows[-1]
                print(
                    f"{arch:6} {size:4} b{batch:<2} {v:12} {r['latency_ms']:9.0f} ms  {r['images_per_s']:6.2f} img/s  "
                    f"{gflops:6.1f} GFLOP/s  PSNR {r['psnr_db']:6.1f} dB  x{r['speedup']:.2f}",
                    file=sys.stderr, flush=True,
                )
    return rows


def memory_check(work: Path, tile: int) -> dict:
    """Translate a 4096 x 4096 photo with the default ResNet through the ONNX runtime (default
    tiling) in a fresh process; report its peak RSS and time."""
    torch.manual_seed(0)
    cfg = load_config(None, ARCHS["resnet"])
    run = work / "resnet-mem"
    save_generator(run / "G_AtoB.safetensors", cfg.model.generator_spec().build(), cfg, "AtoB")
    path = export_onnx(run, work / "resnet-mem.onnx").path
    script = textwrap.dedent(
        f"""
        import json, resource, time
        from PIL import Image
        from skimage import data
        from img2img.runtime import Translator
        img = Image.fromarray(data.astronaut()).resize((4096, 4096), Image.Resampling.BICUBIC)
        tr = Translator({str(path)!r}, tile={tile})
        t = time.perf_counter()
        out = tr.translate([img])[0]
        print(json.dumps({{"size": out.size, "seconds": time.perf_counter() - t, "tile": tr.tile,
                          "overlap": tr.tile_overlap,
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="resnet,unet", help="comma-separated: resnet, unet")
    p.add_argument("--sizes", default="256,512", help="comma-separated square sizes")
    p.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated: {', '.join(VARIANTS)}")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory", action="store_true", help="also translate a 4096x4096 photo and report peak RSS")
    p.add_argument("--memory-only", action="store_true", help="only the 4096x4096 memory check")
    p.add_argument("--tile", type=int, default=1024, help="tile size for the memory check")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # internal: time one variant
    p.add_argument("--arch", help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.archs = args.archs.split(",")
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.batches = [int(b) for b in args.batches.split(",")]
    args.variants = args.variants.split(",")
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    if args.worker:
        worker(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows: list[dict] = []
        peak = matmul_peak(args.threads)
        if not args.memory_only:
            for arch in args.archs:
                rows += bench_arch(arch, args, work)
        mem = memory_check(work, args.tile) if (args.memory or args.memory_only) else None
        # Other load on the machine lowers any single measurement: take the better of two.
        peak = max(peak, matmul_peak(args.threads))
        for r in rows:
            r["peak_pct"] = 100 * r["gflops"] / peak

    cpu = cpu_model()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nMachine: {cpu}, {os.cpu_count()} cores, {args.threads} threads; torch {torch.__version__}; "
          f"fp32 matmul peak (2048^3, torch.mm) {peak:.0f} GFLOP/s; load average {load:.1f} at the end.\n")
    if rows:
        print("| generator | size | batch | backend | latency (ms) | images/s | GFLOP/image | GFLOP/s | % of matmul peak | PSNR vs fp32 (dB) | vs eager |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            quality = "exact" if r["psnr_db"] == float("inf") else f"{r['psnr_db']:.1f}"
            print(
                f"| {r['arch']} | {r['size']}² | {r['batch']} | {DESCRIPTION[r['variant']]} | {r['latency_ms']:.0f} | "
                f"{r['images_per_s']:.2f} | {r['gflop_per_image']:.1f} | {r['gflops']:.0f} | {r['peak_pct']:.0f}% | "
                f"{quality} | {r['speedup']:.2f}x |"
            )
    if mem:
        print(f"\n4096x4096 photo, default ResNet, ONNX Runtime CPU, tile {mem['tile']} (overlap {mem['overlap']}): "
              f"{mem['seconds']:.0f} s, peak RSS {mem['peak_rss_mb']:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "memory": mem, "peak_gflops": peak}, indent=1))


if __name__ == "__main__":
    main()
