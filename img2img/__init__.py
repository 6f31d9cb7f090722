"""img2img: pix2pix and CycleGAN image-to-image translation."""

__version__ = "0.1.0"


class Img2ImgError(Exception):
    """A user-facing error: the message says what went wrong and what to do.

    The CLI prints it on one line, without a traceback.
    """
