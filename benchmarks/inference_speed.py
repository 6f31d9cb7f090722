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
import platform
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

from img2img.checkpoint import generator_spec, load_generator, save_generator  # noqa: E402
from img2img.config import load_config  # noqa: E402
from img2img.export import export_onnx  # noqa: E402

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


def timed_round_robin(fns: dict, x: np.ndarray, warmup: int, repeats: int) -> dict[str, tuple[float, np.ndarray]]:
    """Median seconds per call and the last output, per variant. The variants take turns, one
    call each per round, so a change of background load on the machine hits all of them alike."""
    outs: dict[str, np.ndarray] = {}
    times: dict[str, list[float]] = {v: [] for v in fns}
    for v, fn in list(fns.items()):
        try:
            for _ in range(warmup):  # first calls include torch.compile's compilation
                outs[v] = fn(x)
        except Exception as e:  # noqa: BLE001 - report and go on (e.g. no compiler for inductor)
            print(f"{v}: failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}", file=sys.stderr)
            del times[v]
    for _ in range(repeats):
        for v in times:
            t = time.perf_counter()
            outs[v] = fns[v](x)
            times[v].append(time.perf_counter() - t)
    return {v: (statistics.median(ts), outs[v]) for v, ts in times.items()}


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


def bench_arch(arch: str, args: argparse.Namespace, work: Path) -> list[dict]:
    torch.manual_seed(0)
    cfg = load_config(None, ARCHS[arch])
    spec = generator_spec(cfg, 3, 3)
    from img2img.nets.generators import build_generator

    net = build_generator(spec["arch"], **spec["kwargs"])
    run = work / arch
    save_generator(run / "G_AtoB.safetensors", net, spec, cfg, "AtoB")
    net = load_generator(run / "G_AtoB.safetensors")  # eval mode, as the runtime uses it
    multiple = net.size_multiple
    flops_per_px = count_flops(net, max(64, multiple)) / max(64, multiple) ** 2

    variants = [v for v in args.variants if v in VARIANTS]
    fns: dict[str, object] = {}
    notes: dict[str, str] = {}
    if "eager" in variants:
        def eager(x):
            with torch.inference_mode():
                return net(torch.from_numpy(x)).numpy()
        fns["eager"] = eager
    if "compile" in variants:
        compiled = torch.compile(net, dynamic=False)

        def comp(x):
            with torch.inference_mode():
                return compiled(torch.from_numpy(x)).numpy()
        fns["compile"] = comp
    if {"ort", "ort-basic"} & set(variants):
        plain = export_onnx(run, work / f"{arch}.onnx", pixel_shuffle=False).path
        if "ort-basic" in variants:
            fns["ort-basic"] = ort_session(plain, args.threads, "basic")
        if "ort" in variants:
            fns["ort"] = ort_session(plain, args.threads, "all")
    if {"ort-ps", "ort-ps-int8"} & set(variants):
        ps = export_onnx(run, work / f"{arch}-ps.onnx", pixel_shuffle=True).path
        if "ort-ps" in variants:
            fns["ort-ps"] = ort_session(ps, args.threads, "all")
        if "ort-ps-int8" in variants:
            q = work / f"{arch}-ps-int8.onnx"
            t = time.perf_counter()
            quantize_int8(ps, q, photos(max(256, multiple), 4))
            notes["ort-ps-int8"] = f"quantized in {time.perf_counter() - t:.0f} s"
            fns["ort-ps-int8"] = ort_session(q, args.threads, "all")

    # Executed FLOPs per pixel: the rewrite does 16/36 of the upsampling convs' multiply-adds.
    from img2img.export import rewrite_upsampling

    ps_net, _ = rewrite_upsampling(net)
    ps_flops_per_px = count_flops(ps_net, max(64, multiple)) / max(64, multiple) ** 2

    rows = []
    for size in args.sizes:
        if size % multiple:
            continue
        for batch in args.batches:
            x = photos(size, batch)
            results = timed_round_robin({v: fns[v] for v in VARIANTS if v in fns}, x, args.warmup, args.repeats)
            if "eager" in results:
                base, ref = results["eager"]
            else:  # quality is always measured against fp32 eager
                base = None
                with torch.inference_mode():
                    ref = net(torch.from_numpy(x)).numpy()
            for v, (sec, out) in results.items():
                fpp = ps_flops_per_px if v.startswith("ort-ps") else flops_per_px
                gflops = fpp * size * size * batch / sec / 1e9
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
    for v, note in notes.items():
        print(f"{arch} {v}: {note}", file=sys.stderr)
    return rows


def memory_check(work: Path, tile: int) -> dict:
    """Translate a 4096 x 4096 photo with the default ResNet through the ONNX runtime (default
    tiling) in a fresh process; report its peak RSS and time."""
    torch.manual_seed(0)
    cfg = load_config(None, ARCHS["resnet"])
    spec = generator_spec(cfg, 3, 3)
    from img2img.nets.generators import build_generator

    run = work / "resnet-mem"
    save_generator(run / "G_AtoB.safetensors", build_generator(spec["arch"], **spec["kwargs"]), spec, cfg, "AtoB")
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
    args = p.parse_args()
    args.archs = args.archs.split(",")
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.batches = [int(b) for b in args.batches.split(",")]
    args.variants = args.variants.split(",")
    torch.set_num_threads(args.threads)

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

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
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
