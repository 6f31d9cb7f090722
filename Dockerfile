# Base: python:3.11-slim (Debian bookworm). The torch and onnxruntime-gpu wheels bring their own
# CUDA and cuDNN libraries from PyPI, so a 5+ GB nvidia/cuda base image adds nothing; the GPU
# driver comes from the host through the NVIDIA container toolkit (`docker run --gpus all`).
# Without a GPU the same image runs on the CPU. 3.11 is the Python the project is tested on.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    NO_ALBUMENTATIONS_UPDATE=1 \
    GRADIO_ANALYTICS_ENABLED=False

# libgl1/libglib2.0-0: OpenCV (pulled in by albumentations) loads them at import.
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home app
WORKDIR /app

# Dependencies first, so code changes don't reinstall torch.
COPY pyproject.toml README.md ./
COPY img2img/__init__.py img2img/__init__.py
# scikit-image ships the real photos the web UI offers as examples.
RUN pip install . "scikit-image>=0.22" && pip uninstall -y img2img

COPY img2img img2img
COPY configs configs
COPY checkpoints checkpoints
COPY serve.py ./
RUN pip install --no-deps -e .

USER app
EXPOSE 7860
# Inside the container the UI must listen on all interfaces to be reachable through -p 7860:7860.
CMD ["img2img", "serve", "--host", "0.0.0.0", "--port", "7860", "--models", "/app/checkpoints"]
