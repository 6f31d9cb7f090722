"""Inference speed of the default generators on this machine against the classic ones: the
papers' nets (transposed-conv decoders) in eager PyTorch, ours in eager PyTorch, ours in ONNX
Runtime as `img2img export` writes them (fp32, exact pixel-shuffle upsampling), and the faster
candidates (static int8; bf16 where the CPU has it natively), with quality as PSNR against our
fp32 output and achieved GFLOP/s against the machine's measured fp32 matmul peak.

    .venv/bin/python benchmarks/inference_speed.py                      # 256 and 1024, both generators
    .venv/bin/python benchmarks/inference_speed.py --archs resnet --sizes 256 --variants classic,ort
    .venv/bin/python benchmarks/inference_speed.py --memory-only        # 4096x4096 photo, peak RSS

All variants of one generator are loaded in one process and timed interleaved: each round runs
every variant once, in turn, so load on the machine hits all of them alike; the table gives the
median over rounds after one warm-up call each. Prints a Markdown table (docs/inference.md
keeps one)."""

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
from typing import Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from img2img.checkpoint import load_generator, save_generator  # noqa: E402
from img2img.config import load_config  # noqa: E402
from img2img.devices import cpu_flags, cpu_model, native_bf16  # noqa: E402
from img2img.export import export_onnx, rewrite_upsampling  # noqa: E402
from img2img.runtime.backends import TorchBackend  # noqa: E402
from train_vs_classic import classic_resnet, classic_unet  # noqa: E402  (the papers' nets, one home)

# name: (preset, overrides). The defaults: CycleGAN's ResNet-9 (instance norm) and pix2pix's
# U-Net-256 (batch norm, dropout); resnet-cpu is the cyclegan-cpu preset's generator (ResNet-6,
# ngf 32: what a CPU user trains), still measured against the paper's ResNet-9.
ARCHS = {
    "resnet": (None, ["model.generator=resnet", "model.ngf=64", "model.n_blocks=9", "model.norm_g=instance"]),
    "unet": (None, ["model.generator=unet", "model.ngf=64", "model.num_downs=8", "model.norm_g=batch", "model.dropout=0.5"]),
    "resnet-cpu": ("cyclegan-cpu", []),
}
CLASSIC = {"resnet": lambda: classic_resnet(3, 64, 9), "unet": lambda: classic_unet(3, 3, 8, 64)}
CLASSIC["resnet-cpu"] = CLASSIC["resnet"]  # the paper's ResNet-9 is the lighter one's reference too
VARIANTS = ("classic", "eager", "compile", "ort", "ort-int8", "ort-int8-rr", "ort-int8-u8", "torch-bf16")
DEFAULT_VARIANTS = ("classic", "eager", "ort", "ort-int8", "torch-bf16")
DESCRIPTION = {
    "classic": "classic net, PyTorch eager fp32",
    "eager": "ours, PyTorch eager fp32",
    "compile": "ours, torch.compile fp32",
    "ort": "ours, ORT fp32 (as exported)",
    "ort-int8": "ours, ORT int8 (static QDQ)",
    "ort-int8-rr": "ours, ORT int8, 7-bit weights (reduce_range)",
    "ort-int8-u8": "ours, ORT int8, uint8 weights, first/last conv fp32",
    "torch-bf16": "ours, PyTorch bf16 autocast, channels_last (the torch backend's auto on native-bf16 CPUs)",
}
CPU_FLAGS_SHOWN = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


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


def ort_session(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False  # as img2img.runtime does (and several sessions stay alive here)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


# Static int8 variants: (uint8 weights, 7-bit weight range, keep the first and last conv fp32).
# Without VNNI, x86 int8 kernels multiply uint8 x int8 pairs into saturating int16 sums
# (vpmaddubsw): a 7-bit weight range or uint8 x uint8 avoids the saturation, at some speed.
INT8 = {"ort-int8": (False, False, False), "ort-int8-rr": (False, True, False), "ort-int8-u8": (True, False, True)}


def quantize_int8(src: Path, dst: Path, calibration: np.ndarray, u8_weights: bool = False, reduce_range: bool = False,
                  float_ends: bool = False) -> None:  # fmt: skip
    """Static int8 (QDQ, per-channel weights, uint8 activations) of the convolutions, calibrated
    on real photos; norms, pads and tanh stay fp32."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"image": calibration[i : i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self.items, None)

    import onnx

    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
    quantize_static(
        str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8 if u8_weights else QuantType.QInt8,
        op_types_to_quantize=["Conv"], nodes_to_exclude=[convs[0], convs[-1]] if float_ends else [],
    )  # fmt: skip


def torch_fn(net: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x)).float().numpy()

    return run


def variant_fns(arch: str, variants: list[str], work: Path, threads: int) -> tuple[dict[str, Callable], dict[str, float], list[str]]:
    """({variant: callable B x 3 x H x W float32 -> same}, {variant: FLOPs per pixel}, notes) for one
    generator: random weights (seed 0), ours in eval mode as the runtime uses it."""
    torch.manual_seed(0)
    cfg = load_config(*ARCHS[arch])
    save_generator(work / arch / "G_AtoB.safetensors", cfg.model.generator_spec().build(), cfg, "AtoB")
    net = load_generator(work / arch / "G_AtoB.safetensors")
    classic = CLASSIC[arch]().eval()
    probe = max(64, net.size_multiple)
    # Executed FLOPs per pixel: the sub-pixel form (PyTorch's UpConv forward in nearest mode, and
    # the export) does 16/36 of the plain form's upsampling multiply-adds.
    ours_fpp = count_flops(rewrite_upsampling(net)[0], probe) / probe**2
    fns: dict[str, Callable] = {}
    fpp: dict[str, float] = {}
    notes: list[str] = []
    for v in variants:
        if v == "classic":
            fns[v], fpp[v] = torch_fn(classic), count_flops(classic, probe) / probe**2
            continue
        if v == "torch-bf16" and native_bf16() is None:
            notes.append(f"{arch} torch-bf16: skipped, this CPU has no native bf16 (it would be emulated, slower than fp32)")
            continue
        if v in ("eager", "torch-bf16"):  # the runtime's PyTorch backend itself (bf16: autocast + channels_last)
            backend = TorchBackend(work / arch / "G_AtoB.safetensors", "cpu", threads, "bf16" if v == "torch-bf16" else "fp32")
            fns[v] = backend.run
        elif v == "compile":
            fns[v] = torch_fn(torch.compile(net, dynamic=False))
        elif v == "ort":
            fns[v] = ort_session(export_onnx(work / arch, work / f"{arch}.onnx").path, threads)
        elif v in INT8:
            fp32 = work / f"{arch}.onnx"
            if not fp32.exists():
                export_onnx(work / arch, fp32)
            t = time.perf_counter()
            quantize_int8(fp32, work / f"{arch}-{v}.onnx", photos(max(256, net.size_multiple), 4), *INT8[v])
            notes.append(f"{arch} {v}: quantized in {time.perf_counter() - t:.0f} s (4 calibration photos)")
            fns[v] = ort_session(work / f"{arch}-{v}.onnx", threads)
        fpp[v] = ours_fpp
    return fns, fpp, notes


def bench_arch(arch: str, args: argparse.Namespace, work: Path) -> tuple[list[dict], list[str]]:
    """Every variant of one generator at every size and batch, interleaved."""
    fns, fpp, notes = variant_fns(arch, args.variants, work, args.threads)
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            x = photos(size, batch)
            outs = {v: fn(x) for v, fn in fns.items()}  # warm-up (compilation, first allocations)
            times: dict[str, list[float]] = {v: [] for v in fns}
            for _ in range(args.repeats):
                for v, fn in fns.items():
                    # ONNX Runtime's pool threads spin-wait after a run and PyTorch's OpenMP threads
                    # after theirs: a pause keeps either from taking cores from the next variant.
                    time.sleep(0.5)
                    t = time.perf_counter()
                    outs[v] = fn(x)
                    times[v].append(time.perf_counter() - t)
            ref = outs.get("eager")
            if ref is None:
                ref = torch_fn(load_generator(work / arch / "G_AtoB.safetensors"))(x)
            base = statistics.median(times["classic"]) if "classic" in times else None
            for v in fns:
                sec = statistics.median(times[v])
                rows.append({
                    "arch": arch, "size": size, "batch": batch, "variant": v,
                    "latency_ms": sec * 1e3, "images_per_s": batch / sec, "gflop_per_image": fpp[v] * size * size / 1e9,
                    "gflops": fpp[v] * size * size * batch / sec / 1e9,
                    "psnr_db": None if v == "classic" else psnr(outs[v], ref),  # another network: no PSNR
                    "vs_classic": (base / sec) if base else float("nan"),
                })  # fmt: skip
                r = rows[-1]
                print(f"{arch:6} {size:4} b{batch:<2} {v:10} {r['latency_ms']:9.0f} ms  {r['gflops']:6.1f} GFLOP/s  "
                      f"PSNR {r['psnr_db'] or float('nan'):6.1f} dB  x{r['vs_classic']:.2f} vs classic", file=sys.stderr, flush=True)  # fmt: skip
    return rows, notes


def memory_check(work: Path, tile: int) -> dict:
    """Translate a 4096 x 4096 photo with the default ResNet through the ONNX runtime (default
    tiling) in a fresh process; report its peak RSS and time."""
    torch.manual_seed(0)
    cfg = load_config(*ARCHS["resnet"])
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
    p.add_argument("--archs", default="resnet,unet", help=f"comma-separated: {', '.join(ARCHS)}")
    p.add_argument("--sizes", default="256,1024", help="comma-separated square sizes")
    p.add_argument("--batches", default="1", help="comma-separated batch sizes")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"comma-separated: {', '.join(VARIANTS)}")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
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
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows: list[dict] = []
        notes: list[str] = []
        peak = matmul_peak(args.threads)
        if not args.memory_only:
            for arch in args.archs:
                arch_rows, arch_notes = bench_arch(arch, args, work)
                rows, notes = rows + arch_rows, notes + arch_notes
        mem = memory_check(work, args.tile) if (args.memory or args.memory_only) else None
        # Other load on the machine lowers any single measurement: take the better of two.
        peak = max(peak, matmul_peak(args.threads))
        for r in rows:
            r["peak_pct"] = 100 * r["gflops"] / peak

    cpu = cpu_model()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import onnxruntime as ort

    flags = cpu_flags()
    shown = " ".join(f for f in CPU_FLAGS_SHOWN if f in flags) or "none of " + " ".join(CPU_FLAGS_SHOWN)
    print(f"\nMachine: {cpu}, {os.cpu_count()} cores, {args.threads} threads; CPU flags: {shown}; torch {torch.__version__}, "
          f"ONNX Runtime {ort.__version__}; fp32 matmul peak (2048^3, torch.mm) {peak:.0f} GFLOP/s; "
          f"load average {load:.1f} at the end; {args.repeats} interleaved rounds.\n")
    for note in notes:
        print(f"- {note}")
    if rows:
        print("\n| generator | size | batch | backend | latency (ms) | images/s | GFLOP/image | GFLOP/s | % of matmul peak | PSNR vs our fp32 (dB) | vs classic |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            q = r["psnr_db"]
            quality = "-" if q is None else "exact" if q == float("inf") else f"{q:.1f}"
            print(
                f"| {r['arch']} | {r['size']}² | {r['batch']} | {DESCRIPTION[r['variant']]} | {r['latency_ms']:.0f} | "
                f"{r['images_per_s']:.2f} | {r['gflop_per_image']:.1f} | {r['gflops']:.0f} | {r['peak_pct']:.0f}% | "
                f"{quality} | {r['vs_classic']:.2f}x |"
            )
    if mem:
        print(f"\n4096x4096 photo, default ResNet, ONNX Runtime CPU, tile {mem['tile']} (overlap {mem['overlap']}): "
              f"{mem['seconds']:.0f} s, peak RSS {mem['peak_rss_mb']:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "memory": mem, "peak_gflops": peak}, indent=1))


if __name__ == "__main__":
    main()
