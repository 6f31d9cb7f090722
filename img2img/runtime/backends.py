"""Backends: run(batch NCHW float32 in [-1, 1]) -> NCHW float32, on ONNX Runtime (an exported
.onnx) or PyTorch (a G_*.safetensors). For tiling with shared instance-norm statistics each also
records the statistics of one pass (record_stats) and runs with them fixed (run_fixed).

The device choice is img2img.devices.resolve_device's. onnxruntime, onnx and torch are imported
by the backend that needs them, so the ONNX Runtime path never loads torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from img2img import Img2ImgError
from img2img.devices import cpu_bf16_support, resolve_device
from img2img.runtime import onnx_graphs
from img2img.runtime.onnx_graphs import LayerStats, NormParams

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort
    import torch

CUDA_EP, CPU_EP = "CUDAExecutionProvider", "CPUExecutionProvider"


class Backend(Protocol):
    device: str                    # cpu | cuda: where it computes
    providers: tuple[str, ...]     # ONNX Runtime execution providers in use; () for PyTorch

    def run(self, batch: np.ndarray) -> np.ndarray: ...

    def describe(self) -> str:
        """Runtime, version, device and CPU threads, for start-up lines."""
        ...

    def norm_layers(self) -> int:
        """Number of instance-norm layers whose statistics tiling can share."""
        ...

    def record_stats(self, batch: np.ndarray, keep: bool = False) -> list[LayerStats]:
        """Per layer: (mean, variance) over H and W (averaged over the batch), and epsilon.
        keep: keep what recording needs for the next call (frames of a video)."""
        ...

    def run_fixed(self, batch: np.ndarray, stats: list[LayerStats]) -> np.ndarray:
        """run() with every instance-norm layer normalizing by `stats` instead of its input's."""
        ...


def _as_input(batch: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(batch, dtype=np.float32)


def ort_providers(device: str) -> list[str]:
    """ONNX Runtime providers for auto | cpu | cuda. get_available_providers() lists CUDA whenever
    the GPU wheel is installed, even where CUDA cannot load, and asking for it there logs a loud
    error: CUDA is asked for only when resolve_device finds a usable GPU. With auto and no CUDA
    provider in this onnxruntime, the GPU is not even probed."""
    import onnxruntime as ort

    has_cuda_ep = CUDA_EP in ort.get_available_providers()
    resolved = "cpu" if device == "auto" and not has_cuda_ep else resolve_device(device)
    if resolved == "cuda" and not has_cuda_ep:
        raise Img2ImgError(
            "--device cuda was asked for, but this onnxruntime has no CUDA provider (pip install onnxruntime-gpu); use --device cpu"
        )
    return [CUDA_EP, CPU_EP] if resolved == "cuda" else [CPU_EP]


class OrtBackend:
    """An ONNX Runtime session, plus the two graphs of onnx_graphs for shared statistics, built
    from the file when a tiled image first needs them."""

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None, reuse_memory: bool = False):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no provider warnings on CPU-only machines
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or 0  # 0 = one per physical core
        options.inter_op_num_threads = 1
        # No CPU memory arena by default: it keeps (and rounds up) the largest activations it ever
        # held, 3.2 instead of 1.9 GB for a 1024^2 ResNet tile. Without it every large activation
        # is a fresh mmap the kernel zeroes: for a stream of same-size inputs (video frames) the
        # arena holds one frame's worth and is faster (720p Starry Night frame: 1.29 vs 1.48 s).
        options.enable_cpu_mem_arena = reuse_memory
        providers = ort_providers(device)
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise Img2ImgError(f"{path}: ONNX Runtime cannot load it ({e})") from None
        self.providers = tuple(self._session.get_providers())
        if device == "cuda" and CUDA_EP not in self.providers:
            raise Img2ImgError("ONNX Runtime could not start its CUDA provider (CUDA/cuDNN libraries?); use --device cpu")
        self.device = "cuda" if CUDA_EP in self.providers else "cpu"
        self.input_name = self._session.get_inputs()[0].name
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self._path, self._options, self._threads = path, options, threads
        self._norms: list[NormParams] | None = None  # per InstanceNormalization, read on first use
        self._fixed: ort.InferenceSession | None = None  # session of fixed_graph
        self._record: ort.InferenceSession | None = None  # session of record_graph, when kept

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self.input_name: _as_input(batch)})[0]

    def describe(self) -> str:
        import onnxruntime as ort

        line = f"ONNX Runtime {ort.__version__} on {self.device.upper()} ({', '.join(self.providers)})"
        if self.device == "cpu":
            # intra_op_num_threads 0 lets ONNX Runtime choose; it does not say what it chose.
            line += f", {self._threads} threads" if self._threads else ", one thread per physical core"
        return line

    def norm_layers(self) -> int:
        if self._norms is None:
            self._norms = onnx_graphs.norm_params(self._load_model())
        return len(self._norms)

    def _load_model(self) -> "onnx.ModelProto":
        import onnx

        return onnx.load(str(self._path))

    def _derived_session(self, model: "onnx.ModelProto") -> "ort.InferenceSession":
        import onnxruntime as ort

        return ort.InferenceSession(model.SerializeToString(), self._options, providers=list(self.providers))

    def record_stats(self, batch: np.ndarray, keep: bool = False) -> list[LayerStats]:
        """The recording session is built for the call and dropped after it unless `keep`: it is
        used once per tiled image, and keeping it holds another copy of the weights."""
        assert self._norms, "norm_layers() first"
        k = len(self._norms)
        session = self._record or self._derived_session(onnx_graphs.record_graph(self._load_model()))
        if keep:
            self._record = session
        outs = session.run(onnx_graphs.record_outputs(k), {self.input_name: _as_input(batch)})
        return [(outs[i].mean(axis=(0, 2, 3)), outs[k + i].mean(axis=(0, 2, 3)), self._norms[i][2]) for i in range(k)]

    def run_fixed(self, batch: np.ndarray, stats: list[LayerStats]) -> np.ndarray:
        assert self._norms, "norm_layers() first"
        if self._fixed is None:
            self._fixed = self._derived_session(onnx_graphs.fixed_graph(self._load_model()))
        feed = {self.input_name: _as_input(batch), **onnx_graphs.fixed_feed(stats, self._norms)}
        return self._fixed.run(None, feed)[0]


PRECISIONS = ("auto", "fp32", "bf16")


class TorchBackend:
    """A generator rebuilt from its G_*.safetensors (img2img.checkpoint.load_generator), in eval
    mode; shared statistics through forward hooks on its InstanceNorm2d layers.

    precision (CPU): bf16 runs the convolutions under bf16 autocast in channels_last (oneDNN's
    bf16 kernels: twice the multiply-adds per instruction of fp32 with AVX512-BF16, more with
    AMX; accumulation stays fp32, normalization and the output fp32). auto takes it where the CPU
    has native bf16 (devices.native_bf16) and fp32 elsewhere, where bf16 would be emulated and
    slower; bf16 on such a CPU is refused. On CUDA the net runs in fp32."""

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None, precision: str = "auto"):
        import torch
        from torch import nn

        from img2img.checkpoint import load_generator

        if precision not in PRECISIONS:
            raise Img2ImgError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        self.device = resolve_device(device)
        self.providers: tuple[str, ...] = ()
        if threads:
            torch.set_num_threads(threads)  # process-wide in PyTorch; there is no per-model setting
        self.native_bf16 = cpu_bf16_support() if self.device == "cpu" else None
        if precision == "bf16" and self.device == "cuda":
            raise Img2ImgError("precision bf16 is a CPU path; on CUDA the PyTorch backend runs in fp32: use precision auto or fp32")
        if precision == "bf16" and self.native_bf16 is None:
            raise Img2ImgError("precision bf16 needs a CPU with native bf16 (AMX or AVX512-BF16); this one would emulate it, "
                               "slower than fp32: use precision auto or fp32")  # fmt: skip
        self.precision = "bf16" if self.native_bf16 and precision != "fp32" else "fp32"
        self.net = load_generator(path, self.device)
        if self.precision == "bf16":
            self.net = self.net.to(memory_format=torch.channels_last)
        self._norms = [m for m in self.net.modules() if isinstance(m, nn.InstanceNorm2d)]

    def _forward(self, batch: np.ndarray) -> "torch.Tensor":
        import torch

        x = torch.from_numpy(_as_input(batch)).to(self.device)
        with torch.inference_mode():
            if self.precision == "fp32":
                return self.net(x).float().cpu()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.net(x.contiguous(memory_format=torch.channels_last)).float().contiguous()

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._forward(batch).numpy()

    def describe(self) -> str:
        import torch

        if self.device == "cuda":
            return f"PyTorch {torch.__version__} on CUDA ({torch.cuda.get_device_name()})"
        precision = f"bf16 autocast ({self.native_bf16})" if self.precision == "bf16" else "fp32"
        return f"PyTorch {torch.__version__} on CPU, {torch.get_num_threads()} threads, {precision}"

    def norm_layers(self) -> int:
        return len(self._norms)

    def record_stats(self, batch: np.ndarray, keep: bool = False) -> list[LayerStats]:
        stats: list[LayerStats] = []  # (hooks are cheap: nothing to keep)

        def hook(module: Any, args: tuple["torch.Tensor", ...]) -> None:
            x = args[0].double()
            mean = x.mean((2, 3), keepdim=True)
            var = ((x - mean) ** 2).mean((2, 3))
            stats.append((mean.mean((0, 2, 3)).cpu().numpy(), var.mean(0).cpu().numpy(), module.eps))

        handles = [m.register_forward_pre_hook(hook) for m in self._norms]
        try:
            self._forward(batch)
        finally:
            for h in handles:
                h.remove()
        return stats

    def run_fixed(self, batch: np.ndarray, stats: list[LayerStats]) -> np.ndarray:
        """Every InstanceNorm2d normalizes by its fixed (mean, var) for this call: its forward is
        replaced by batch norm in eval mode with those statistics, (x - mean) / sqrt(var + eps)
        * weight + bias, one fused pass (a forward hook would run the layer's own normalization
        first and then redo it: 1.7x the time of a tile at ngf 16 in bf16)."""
        import torch
        from torch.nn import functional as F

        def fixed(m: Any, mean: np.ndarray, var: np.ndarray, eps: float) -> Callable[["torch.Tensor"], "torch.Tensor"]:
            mean_t = torch.from_numpy(mean).float().to(self.device)
            var_t = torch.from_numpy(var).float().to(self.device)
            weight, bias = (m.weight, m.bias) if m.affine else (None, None)
            return lambda x: F.batch_norm(x, mean_t, var_t, weight, bias, False, 0.0, eps)

        try:
            for m, s in zip(self._norms, stats):
                m.forward = fixed(m, *s)  # an instance attribute: nn.Module.__call__ finds it first
            return self._forward(batch).numpy()
        finally:
            for m in self._norms:
                m.__dict__.pop("forward", None)  # the class's forward again
