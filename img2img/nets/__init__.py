from img2img.nets.discriminators import MultiScaleDiscriminator, PatchDiscriminator
from img2img.nets.generators import GENERATORS, ResnetGenerator, UnetGenerator, build_generator

__all__ = [
    "GENERATORS",
    "MultiScaleDiscriminator",
    "PatchDiscriminator",
    "ResnetGenerator",
    "UnetGenerator",
    "build_generator",
]
