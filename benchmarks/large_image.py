"""Time and peak memory of `img2img translate` on one large image (issue 13, item 7; issue 15,
item 2): a real photo (scikit-image's astronaut) upscaled to SIZE (N or WxH) and saved as PNG,
translated by the CLI in a child process through an exported ResNet with the default tiling, on
the backend asked for (auto: ONNX Runtime fp32 or PyTorch bf16, whichever the runtime measures
faster on this machine; that probe is part of the time).

Peak RSS is the child's wait4 ru_maxrss. A child's maxrss starts from its parent's at fork and
survives exec, so the model and the photo are made by another child (--prepare) and this
process stays small.

    .venv/bin/python benchmarks/large_image.py --size 9400                     # default ResNet (ngf 64, 9 blocks): long on 2 cores
    .venv/bin/python benchmarks/large_image.py --size 9400 --ngf 8 --blocks 1  # a tiny network: the memory of everything but the network
    .venv/bin/python benchmarks/large_image.py --size 6000x4000 --ngf 32 --blocks 6 --backend torch  # cyclegan-cpu's generator

The generator is randomly initialised (speed and memory do not depend on the weights)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def export_resnet(folder: Path, ngf: int, blocks: int) -> Path:
    import torch

    from img2img.checkpoint import save_generator
    from img2img.config import load_config
    from img2img.export import export_onnx

    cfg = load_config("cyclegan", [f"model.ngf={ngf}", f"model.n_blocks={blocks}"])
    torch.manual_seed(0)
    save_generator(folder / "run" / "G_AtoB.safetensors", cfg.model.generator_spec().build(), cfg, "AtoB")
    return export_onnx(folder / "run", folder / "run" / "g.onnx").path  # beside its safetensors: backend auto can choose


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h or w)


def write_photo(path: Path, size: tuple[int, int]) -> None:
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).resize(size, Image.Resampling.BICUBIC).save(path, compress_level=1)


def run_cli(args: list[str], threads: int | None, cache: Path) -> dict:
    cmd = [sys.executable, "-m", "img2img", "translate", *args, "--no-progress"]
    if threads:
        cmd += ["--threads", str(threads)]
    start = time.perf_counter()
    env = {**os.environ, "IMG2IMG_CACHE": str(cache)}  # a fresh backend choice, measured here
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"translate failed:\n{out}\n{err}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024), "stderr": err.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=(9400, 9400), help="N (square) or WxH")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--backend", choices=("auto", "onnx", "torch"), default="onnx")
    parser.add_argument("--prepare", type=Path, default=None, help=argparse.SUPPRESS)  # the child's job
    a = parser.parse_args()
    if a.prepare is not None:
        from img2img.devices import cpu_summary

        export_resnet(a.prepare, a.ngf, a.blocks)
        write_photo(a.prepare / "big.png", a.size)
        (a.prepare / "cpu.txt").write_text(cpu_summary())
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        size = "x".join(map(str, a.size))
        prepare = [sys.executable, __file__, "--prepare", tmp, "--size", size, "--ngf", str(a.ngf), "--blocks", str(a.blocks)]
        subprocess.run(prepare, check=True)
        model = folder / "run" if a.backend == "torch" else folder / "run" / "g.onnx"
        args = ["-m", str(model), "-i", str(folder / "big.png"), "-o", str(folder / "out"), "--tile", str(a.tile), "--backend", a.backend]
        result = run_cli(args, a.threads, folder / "cache")
        cpu = (folder / "cpu.txt").read_text()
    print(f"CPU: {cpu}; threads: {a.threads or 'the runtime default'}\n")
    print(result["stderr"] + "\n")  # the start-up line: the backend that ran
    print("| image | generator | backend | tile | seconds | peak RSS (MB) |\n|---|---|---|---|---|---|")
    print(f"| {size} PNG | ResNet ngf {a.ngf}, {a.blocks} blocks | {a.backend} | {a.tile} | {result['seconds']} | {result['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
