"""Batch translation of files (`img2img translate`): expand the inputs (files, folders, globs),
choose the output paths, and translate with decoding and encoding overlapped with inference.
A file that cannot be read or written is reported with its reason; the others are translated."""

from __future__ import annotations

import glob
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from img2img import Img2ImgError
from img2img.data.images import ImageReadError, load_image
from img2img.io import atomic_write
from img2img.runtime import Translator, prepare, to_pil

OUTPUT_FORMATS = {"png": ("PNG", ".png"), "jpg": ("JPEG", ".jpg")}  # --format -> (Pillow format, suffix)
GLOB_CHARS = set("*?[")


@dataclass
class BatchReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)            # outputs that existed (no --overwrite)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # input file, reason


def check_format(fmt: str) -> str:
    if fmt not in OUTPUT_FORMATS:
        raise Img2ImgError(f"unknown output format {fmt!r}; choose {' or '.join(OUTPUT_FORMATS)}")
    return fmt


def collect_inputs(inputs: Iterable[str | Path]) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Expand files, folders (recursive) and glob patterns into (file, relative output stem)
    pairs, where the relative path is kept from the folder (or the glob's fixed prefix).

    Every regular, non-hidden file found is a candidate: files that are not images are reported
    by the decoder with the reason rather than silently ignored. Returns (jobs, problems)."""
    jobs: list[tuple[Path, Path]] = []
    problems: list[tuple[Path, str]] = []
    seen: set[Path] = set()

    def add(path: Path, rel: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            jobs.append((path, rel))

    def visible(rel: Path) -> bool:
        return not any(part.startswith(".") for part in rel.parts)

    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                rel = f.relative_to(path)
                if f.is_file() and visible(rel):
                    add(f, rel)
        elif path.is_file():
            add(path, Path(path.name))
        elif GLOB_CHARS & set(text):
            # The fixed leading directories of the pattern are the root of the relative paths.
            parts = Path(text).parts
            fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if GLOB_CHARS & set(p))]]
            root = Path(*fixed) if fixed else Path(".")
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            files = [m for m in matches if m.is_file()]
            for m in matches:
                if m.is_dir():
                    files += [f for f in sorted(m.rglob("*")) if f.is_file() and visible(f.relative_to(m))]
            if not files:
                problems.append((path, "the pattern matches no files"))
            for f in files:
                add(f, f.relative_to(root) if f.is_relative_to(root) else Path(f.name))
        else:
            problems.append((path, "no such file or folder"))
    return jobs, problems


def output_paths(jobs: list[tuple[Path, Path]], output_dir: Path, suffix: str) -> list[Path]:
    """output_dir / relative path with the new extension; when two inputs would land on the same
    name (a.jpg and a.png), the later keeps its old extension too (a.png.png)."""
    taken: set[Path] = set()
    paths = []
    for _, rel in jobs:
        out = output_dir / rel.with_suffix(suffix)
        if out in taken:
            out = output_dir / rel.with_name(rel.name + suffix)
        taken.add(out)
        paths.append(out)
    return paths


def save_image(img: Image.Image, path: Path, fmt: str) -> None:
    """Written atomically (io.atomic_write), so an interrupted run leaves no half-written image."""
    pil_format, _ = OUTPUT_FORMATS[check_format(fmt)]
    options = {"quality": 95} if pil_format == "JPEG" else {}
    atomic_write(path, lambda tmp: img.save(tmp, format=pil_format, **options))


def translate_files(
    translator: Translator,
    jobs: list[tuple[Path, Path]],
    output_dir: Path,
    fmt: str = "png",
    overwrite: bool = False,
    progress: bool = True,
    prefetch: int = 2,
) -> BatchReport:
    """Translate files into output_dir, keeping relative paths. Decoding runs ahead and encoding
    runs behind in a thread pool (PIL and zlib release the GIL), overlapping inference; a file
    that cannot be read or written is recorded with its reason and the rest continue."""
    from tqdm import tqdm

    suffix = OUTPUT_FORMATS[check_format(fmt)][1]
    report = BatchReport()
    todo = []
    for (src, _), dst in zip(jobs, output_paths(jobs, Path(output_dir), suffix)):
        if dst.exists() and not overwrite:
            report.skipped.append(dst)
        else:
            todo.append((src, dst))
    channels = translator.card.input_channels

    def decode(src: Path) -> np.ndarray:
        return prepare(load_image(src), channels)

    def finish_save(src: Path, dst: Path, fut: Future[None]) -> None:
        try:
            fut.result()
        except OSError as e:
            report.failed.append((src, f"cannot write {dst} ({e})"))
            return
        report.written.append(dst)

    batch = translator.batch_size
    window = max(1, prefetch) * batch  # images decoded ahead / waiting to be saved: bounds memory
    with ThreadPoolExecutor(max_workers=max(1, prefetch)) as pool, tqdm(
        total=len(todo), unit="img", disable=not progress, desc="translate"
    ) as bar:
        pending: list[tuple[Path, Path, Future[np.ndarray]]] = []
        saving: list[tuple[Path, Path, Future[None]]] = []
        nxt = 0
        while nxt < len(todo) or pending:
            while nxt < len(todo) and len(pending) < window + batch:
                src, dst = todo[nxt]
                pending.append((src, dst, pool.submit(decode, src)))
                nxt += 1
            chunk, pending = pending[:batch], pending[batch:]
            ready: list[tuple[Path, Path, np.ndarray]] = []
            for src, dst, fut in chunk:
                try:
                    ready.append((src, dst, fut.result()))
                except ImageReadError as e:
                    report.failed.append((src, str(e).removeprefix(f"{src}: ")))
                except Img2ImgError as e:
                    report.failed.append((src, str(e)))
            if ready:
                outs = translator.translate_arrays([a for _, _, a in ready])
                for (src, dst, _), o in zip(ready, outs):
                    saving.append((src, dst, pool.submit(save_image, to_pil(o), dst, fmt)))
            while len(saving) > window:
                finish_save(*saving.pop(0))
            bar.update(len(chunk))
        for item in saving:
            finish_save(*item)
    return report
