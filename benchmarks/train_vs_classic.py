"""Training step speed: img2img's pix2pix and CycleGAN steps against the classic ones, interleaved
in one process (so machine load hits every row alike), and each of our speed-ups on its own.

    OMP_NUM_THREADS=1 python benchmarks/train_vs_classic.py                 # 128 px, batch 1, 1 thread
    python benchmarks/train_vs_classic.py --threads 2 --size 256 --rounds 5

Rows per method:
- classic: the nets and step of the pix2pix / CycleGAN papers (Isola et al. 2017; Zhu et al.
  2017), written here from the papers: U-Net-128 with batch norm, dropout and a 4x4 stride-2
  transposed-conv decoder, a batch-norm 70x70 PatchGAN, vanilla GAN + 100 L1 (pix2pix);
  ResNet-9 with instance norm and a transposed-conv decoder, instance-norm PatchGANs, LSGAN,
  cycle 10 + identity 5, image pools (CycleGAN). fp32, NCHW: what their code runs on a CPU.
- ours: img2img's preset nets and step exactly as training builds them (setup_training):
  resize + 3x3 conv decoder in its sub-pixel form, spectral norm, relativistic loss, bf16
  autocast where the CPU has native bf16.
- ours, fp32: the same with train.amp=off;  ours, plain upconv: the sub-pixel form off.
- ours, channels_last: NHWC activations and weights (used on CUDA only; here to show why).

Each round times one step of every row in turn; the table gives the median over rounds and the
speed ratio against the classic row of the same method (higher is faster).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from torch import nn

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from img2img.config import load_config  # noqa: E402
from img2img.devices import cpu_summary  # noqa: E402
from img2img.methods.common import ImagePool  # noqa: E402
from img2img.nets.layers import UpConv  # noqa: E402
from img2img.train import setup_training  # noqa: E402

# --------------------------------------------------------------------------------------------
# The classic nets, from the papers


class ClassicUnetBlock(nn.Module):
    """One U-Net level of pix2pix: [LReLU conv4x4/2 BN] -> inner -> [ReLU convT4x4/2 BN (dropout)], skip concat."""

    def __init__(self, outer: int, inner: int, in_ch: int | None = None, sub: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, dropout: bool = False):
        super().__init__()
        in_ch = in_ch or outer
        down = [nn.Conv2d(in_ch, inner, 4, 2, 1, bias=False)]
        if outermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
            layers = down + [sub] + up
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), *down, nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
        else:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
            layers = [nn.LeakyReLU(0.2, True), *down, nn.BatchNorm2d(inner), sub, *up] + ([nn.Dropout(0.5)] if dropout else [])
        self.model, self.outermost = nn.Sequential(*layers), outermost

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


def classic_unet(in_ch: int, out_ch: int, num_downs: int, ngf: int = 64) -> nn.Module:
    block = ClassicUnetBlock(ngf * 8, ngf * 8, innermost=True)
    for _ in range(num_downs - 5):
        block = ClassicUnetBlock(ngf * 8, ngf * 8, sub=block, dropout=True)
    for mult in (4, 2, 1):
        block = ClassicUnetBlock(ngf * mult, ngf * mult * 2, sub=block)
    return ClassicUnetBlock(out_ch, ngf, in_ch=in_ch, sub=block, outermost=True)


def classic_resnet(ch: int = 3, ngf: int = 64, n_blocks: int = 9) -> nn.Module:
    def block(c: int) -> nn.Module:
        body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c), nn.ReLU(True),
                             nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c))

        class Res(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = body

            def forward(self, x):
                return x + self.body(x)

        return Res()

    layers = [nn.ReflectionPad2d(3), nn.Conv2d(ch, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
    for m in (1, 2):
        layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1), nn.InstanceNorm2d(ngf * m * 2), nn.ReLU(True)]
    layers += [block(ngf * 4) for _ in range(n_blocks)]
    for m in (4, 2):
        layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(ngf * m // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, ch, 7), nn.Tanh()]
    return nn.Sequential(*layers)


def classic_patchgan(in_ch: int, norm: type[nn.Module], ndf: int = 64) -> nn.Module:
    layers = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    ch = ndf
    for i, stride in ((1, 2), (2, 2), (3, 1)):
        nxt = ndf * min(2**i, 8)
        layers += [nn.Conv2d(ch, nxt, 4, stride, 1, bias=False), norm(nxt), nn.LeakyReLU(0.2, True)]
        ch = nxt
    layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
    return nn.Sequential(*layers)


def adam(params) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


class ClassicPix2Pix:
    def __init__(self, size: int):
        downs = int(np.log2(size))
        self.G, self.D = classic_unet(1, 3, downs), classic_patchgan(4, nn.BatchNorm2d)
        self.opt_g, self.opt_d = adam(self.G.parameters()), adam(self.D.parameters())
        self.bce = nn.BCEWithLogitsLoss()

    def step(self, a: torch.Tensor, b: torch.Tensor) -> None:
        fake = self.G(a)
        self.opt_d.zero_grad()
        pr, pf = self.D(torch.cat([a, b], 1)), self.D(torch.cat([a, fake.detach()], 1))
        ((self.bce(pr, torch.ones_like(pr)) + self.bce(pf, torch.zeros_like(pf))) * 0.5).backward()
        self.opt_d.step()
        for p in self.D.parameters():
            p.requires_grad_(False)
        self.opt_g.zero_grad()
        pf = self.D(torch.cat([a, fake], 1))
        (self.bce(pf, torch.ones_like(pf)) + 100 * (fake - b).abs().mean()).backward()
        self.opt_g.step()
        for p in self.D.parameters():
            p.requires_grad_(True)


class ClassicCycleGAN:
    def __init__(self, size: int):
        self.G_AB, self.G_BA = classic_resnet(), classic_resnet()
        self.D_A, self.D_B = classic_patchgan(3, nn.InstanceNorm2d), classic_patchgan(3, nn.InstanceNorm2d)
        self.opt_g = adam([*self.G_AB.parameters(), *self.G_BA.parameters()])
        self.opt_d = adam([*self.D_A.parameters(), *self.D_B.parameters()])
        self.pool_a, self.pool_b = ImagePool(50, 0), ImagePool(50, 1)

    def step(self, a: torch.Tensor, b: torch.Tensor) -> None:
        mse = lambda x, t: ((x - t) ** 2).mean()  # noqa: E731 - LSGAN
        fake_b, fake_a = self.G_AB(a), self.G_BA(b)
        for p in [*self.D_A.parameters(), *self.D_B.parameters()]:
            p.requires_grad_(False)
        self.opt_g.zero_grad()
        loss = mse(self.D_B(fake_b), 1) + mse(self.D_A(fake_a), 1)
        loss = loss + 10 * ((self.G_BA(fake_b) - a).abs().mean() + (self.G_AB(fake_a) - b).abs().mean())
        loss = loss + 5 * ((self.G_AB(b) - b).abs().mean() + (self.G_BA(a) - a).abs().mean())
        loss.backward()
        self.opt_g.step()
        for p in [*self.D_A.parameters(), *self.D_B.parameters()]:
            p.requires_grad_(True)
        self.opt_d.zero_grad()
        fa, fb = self.pool_a.query(fake_a.detach()), self.pool_b.query(fake_b.detach())
        d = 0.5 * (mse(self.D_A(a), 1) + mse(self.D_A(fa), 0)) + 0.5 * (mse(self.D_B(b), 1) + mse(self.D_B(fb), 0))
        d.backward()
        self.opt_d.step()


# --------------------------------------------------------------------------------------------
# Ours, exactly as training builds it


class Ours:
    def __init__(self, method: str, size: int, extra: list[str], subpixel: bool = True, channels_last: bool = False):
        preset = "colorization" if method == "pix2pix" else "cyclegan"  # classic pix2pix runs grey -> colour too
        sets = [f"data.crop_size={size}", f"data.load_size={size}", *extra]
        if method == "pix2pix":
            sets.append(f"model.num_downs={int(np.log2(size))}")
        cfg = load_config(preset, sets)
        self.cfg = cfg
        self.training = setup_training(cfg, torch.device("cpu"), steps_per_epoch=100)
        for m in self.training.method.nets().values():
            for up in (u for u in m.modules() if isinstance(u, UpConv)):
                up.subpixel = subpixel and up.subpixel
        self.memory_format = self.training.memory_format
        if channels_last:  # what training does on CUDA only, forced here on the CPU
            self.memory_format = torch.channels_last
            for net in self.training.method.nets().values():
                net.to(memory_format=torch.channels_last)
        self.n = 0

    def step(self, a: torch.Tensor, b: torch.Tensor) -> None:
        batch = {"A": a.to(memory_format=self.memory_format), "B": b.to(memory_format=self.memory_format)}
        self.training.step(batch, self.n, 0.0)
        self.n += 1


def photos(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A real photo pair in [-1, 1]: scikit-image's astronaut (grey and colour) at size px."""
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.BICUBIC)
    rgb = torch.from_numpy(np.asarray(img, np.float32) / 127.5 - 1).permute(2, 0, 1)[None].contiguous()
    grey = torch.from_numpy(np.asarray(img.convert("L"), np.float32) / 127.5 - 1)[None, None].contiguous()
    return grey, rgb


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--methods", default="pix2pix,cyclegan")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    grey, rgb = photos(args.size)
    rows: list[tuple[str, str, object, tuple[torch.Tensor, torch.Tensor]]] = []
    for method in args.methods.split(","):
        inputs = (grey, rgb) if method == "pix2pix" else (rgb, rgb.flip(-1))
        classic = ClassicPix2Pix(args.size) if method == "pix2pix" else ClassicCycleGAN(args.size)
        rows += [
            (method, "classic (fp32, transposed-conv decoder)", classic, inputs),
            (method, "ours (as trained)", Ours(method, args.size, []), inputs),
            (method, "ours, fp32", Ours(method, args.size, ["train.amp=off"]), inputs),
            (method, "ours, plain upconv", Ours(method, args.size, [], subpixel=False), inputs),
            (method, "ours, channels_last", Ours(method, args.size, [], channels_last=True), inputs),
        ]
    times = {id(r[2]): [] for r in rows}
    for _ in range(args.warmup):
        for _, _, runner, (a, b) in rows:
            runner.step(a, b)
    for _ in range(args.rounds):
        for _, _, runner, (a, b) in rows:
            t0 = time.perf_counter()
            runner.step(a, b)
            times[id(runner)].append(time.perf_counter() - t0)

    amp = next(r[2] for r in rows if isinstance(r[2], Ours)).training.amp.dtype
    print(f"CPU: {cpu_summary()}; torch {torch.__version__}, {args.threads} thread(s); Python {platform.python_version()}")
    print(f"Step: {args.size} px, batch 1, real photos; {args.warmup} warm-up + {args.rounds} timed rounds, interleaved; "
          f"'as trained' precision here: {str(amp).removeprefix('torch.') if amp else 'fp32'}")
    print()
    print("| method | step | median s/step (min-max) | speed vs classic |")
    print("|---|---|---|---|")
    for method in args.methods.split(","):
        base = None
        for m, label, runner, _ in rows:
            if m != method:
                continue
            t = np.array(times[id(runner)])
            med = float(np.median(t))
            base = base or med
            print(f"| {m} | {label} | {med:.3f} ({t.min():.3f}-{t.max():.3f}) | {base / med:.2f}x |")


if __name__ == "__main__":
    main()
