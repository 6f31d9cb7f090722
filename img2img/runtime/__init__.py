"""Inference: the Translator over ONNX Runtime or PyTorch, with the padding, tiling and pixel
handling any image needs. Batch file translation is img2img.batch.

  backends.py     ONNX Runtime and PyTorch backends (device choice: img2img.devices)
  onnx_graphs.py  graph rewrites for tiles that share instance-norm statistics
  tiling.py       pad amounts, tile origins, blend weights
  pixels.py       prepare (PIL -> the model's channels), to_pil, shrink, resize_to, colour_under, restore_luminance
  memory.py       tune_for_large_images, release_free_memory: allocator settings for large images, by backend
  translator.py   Translator
"""

from img2img.runtime.pixels import prepare, restore_luminance, to_pil
from img2img.runtime.tiling import blend_weights, ceil_to, pad_amounts, reflect_pad, tile_starts
from img2img.runtime.translator import BACKENDS, DEFAULT_TILE, WORK_SIZE, Translator

__all__ = [
    "BACKENDS", "DEFAULT_TILE", "Translator", "WORK_SIZE", "blend_weights", "ceil_to", "pad_amounts", "prepare",
    "reflect_pad", "restore_luminance", "tile_starts", "to_pil",
]  # fmt: skip
