from img2img.methods.cyclegan import CycleGAN
from img2img.methods.pix2pix import Pix2Pix

# Users pick a method by name (config key `method`).
METHODS: dict[str, type[Pix2Pix] | type[CycleGAN]] = {"pix2pix": Pix2Pix, "cyclegan": CycleGAN}

__all__ = ["METHODS", "CycleGAN", "Pix2Pix"]
