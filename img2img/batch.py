"""Batch translation of files (`img2img translate`): expand the inputs (files, folders, globs),
choose the output paths, and translate with decoding and encoding overlapped with inference.
A file that cannot be read or written is reported with its reason; the others are translated.
Nothing is translated when an output would replace an input or the output folder is not
writable."""

from __future__ import annotations

import glob
import os
import stat
import tempfile
import threading
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Iterable, Iterator

import numpy as np
from PIL import Image

from img2img import Img2ImgError
from img2img.data.images import ImageReadError, load_image
from img2img.io import atomic_write
from img2img.runtime import Translator, prepare, to_pil
from img2img.runtime.memory import release_free_memory

OUTPUT_FORMATS = {"png": ("PNG", ".png"), "jpg": ("JPEG", ".jpg")}  # --format -> (Pillow format, suffix)
GLOB_CHARS = set("*?[")
SPECIAL_FILES = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}
# Images being decoded, decoded or being encoded hold at most this many pixels together, or one
# image alone when it is larger: about 100 MB as uint8, a few times that while Pillow decodes or
# encodes. A large image is then translated with no other image in memory, which is what bounds
# the peak of a folder of them; small ones still overlap decoding and encoding with inference.
PIPELINE_PIXELS = 32_000_000


@dataclass
class BatchReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)            # outputs that existed (no --overwrite)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # input file, reason
    notes: list[tuple[Path, str]] = field(default_factory=list)   # input file, what the decoder warned about


def check_format(fmt: str) -> str:
    if fmt not in OUTPUT_FORMATS:
        raise Img2ImgError(f"unknown output format {fmt!r}; choose {' or '.join(OUTPUT_FORMATS)}")
    return fmt


def not_a_file(path: Path) -> str | None:
    """Why path cannot be read as an input file, or None when it is a regular file (or a link
    to one)."""
    if path.is_symlink() and not path.exists():
        return f"broken link to {os.readlink(path)}"
    try:
        mode = path.stat().st_mode
    except OSError as e:
        return f"cannot read it ({e.strerror or e})"
    if stat.S_ISREG(mode):
        return None
    return f"not a regular file ({SPECIAL_FILES.get(stat.S_IFMT(mode), 'a special file')})"


def collect_inputs(inputs: Iterable[str | Path]) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Expand files, folders (recursive) and glob patterns into (file, relative output stem)
    pairs, where the relative path is kept from the folder (or the glob's fixed prefix).

    Every regular, non-hidden file found is a candidate: files that are not images are reported
    by the decoder with the reason rather than silently ignored. What cannot be a candidate is
    reported here, with what it is: a special file (FIFO, socket, device), a broken link, a
    folder without images, a pattern that matches nothing. Returns (jobs, problems)."""
    jobs: list[tuple[Path, Path]] = []
    problems: list[tuple[Path, str]] = []
    seen: set[Path] = set()

    def add(path: Path, root: Path) -> None:
        """path as a candidate, its output stem relative to root (else its name), or a problem
        saying why it cannot be one."""
        why = not_a_file(path)
        if why is not None:
            problems.append((path, why))
            return
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            jobs.append((path, path.relative_to(root) if path.is_relative_to(root) else Path(path.name)))

    def add_folder(folder: Path, root: Path) -> bool:
        """The visible non-folders under folder, output stems relative to root; whether any."""
        found = False
        for f in sorted(folder.rglob("*")):
            if not f.is_dir() and not any(part.startswith(".") for part in f.relative_to(folder).parts):
                add(f, root)
                found = True
        return found

    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            if not add_folder(path, path):
                problems.append((path, "no images in the folder" if any(path.iterdir()) else "the folder is empty"))
        elif path.exists() or path.is_symlink():
            add(path, path.parent)
        elif GLOB_CHARS & set(text):
            # The fixed leading directories of the pattern are the root of the relative paths.
            parts = Path(text).parts
            fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if GLOB_CHARS & set(p))]]
            root = Path(*fixed) if fixed else Path(".")
            found = False
            for m in sorted(Path(m) for m in glob.glob(text, recursive=True)):
                if m.is_dir():
                    found = add_folder(m, root) or found
                else:
                    add(m, root)
                    found = True
            if not found:
                problems.append((path, "the pattern matches no files"))
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


def check_not_inputs(jobs: list[tuple[Path, Path]], outputs: list[Path]) -> None:
    """Refuse outputs that are input files (`-i D -o D`): the same file by inode, so links and
    other spellings of a path are caught too. Outputs that do not exist yet cannot be inputs."""
    inputs: dict[tuple[int, int], Path] = {}
    for src, _ in jobs:
        try:
            st = src.stat()
        except OSError:
            continue  # gone: the decoder reports it
        inputs[(st.st_dev, st.st_ino)] = src
    clashes = []
    for dst in outputs:
        try:
            st = dst.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in inputs:
            clashes.append((dst, inputs[(st.st_dev, st.st_ino)]))
    if clashes:
        dst, src = clashes[0]
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise Img2ImgError(
            f"the output {dst} would replace the input {src}{more}; nothing was translated. "
            f"Choose an output folder that holds no inputs"
        )


def check_writable(folder: Path) -> None:
    """Create folder if needed and write a file in it, so that a folder that cannot be written
    is found before anything is translated, not once per image after."""
    if folder.exists() and not folder.is_dir():
        raise Img2ImgError(f"the output {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise Img2ImgError(f"cannot write into the output folder {folder} ({e.strerror or e})") from None


@contextmanager
def warnings_as_notes(notes: list[tuple[Path, str]]) -> Iterator[Callable[[Path], ContextManager[None]]]:
    """Warnings raised while a file is read (Pillow's "Corrupt EXIF data", numpy's "invalid value
    encountered in cast", ...) become one note per file and message, instead of raw lines on
    stderr. Files are read in worker threads and the warnings machinery is process-wide, so one
    handler serves the whole batch; it yields reading(src), the context in which a thread reads
    src. Warnings raised elsewhere go to the usual handler."""
    where = threading.local()

    @contextmanager
    def reading(src: Path) -> Iterator[None]:
        where.src = src
        try:
            yield
        finally:
            where.src = None

    with warnings.catch_warnings():
        # Every file's warnings (the default shows a warning once per line of code).
        warnings.simplefilter("always", UserWarning)
        warnings.simplefilter("always", RuntimeWarning)
        # MAX_PIXELS is our limit (load_image); Pillow's bomb warning below it is noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        usual = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
            src = getattr(where, "src", None)
            if src is None:
                usual(message, category, filename, lineno, file, line)
                return
            note = "the decoder warned: " + " ".join(str(message).split())
            if (src, note) not in notes:
                notes.append((src, note))

        warnings.showwarning = show
        yield reading


def header_pixels(path: Path) -> int:
    """Width x height from the file's header (nothing is decoded); 0 when it cannot be read:
    the decoder then says why."""
    try:
        with Image.open(path) as img:
            return img.width * img.height
    except Exception:  # noqa: BLE001 - any failure is the decoder's to report
        return 0


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
    runs behind in a thread pool (PIL and zlib release the GIL), overlapping inference, within
    `prefetch` batches and PIPELINE_PIXELS; a file that cannot be read or written is recorded
    with its reason and the rest continue. The progress bar counts images, and advances within
    a large image tile by tile."""
    from tqdm import tqdm

    output_dir = Path(output_dir)
    suffix = OUTPUT_FORMATS[check_format(fmt)][1]
    outputs = output_paths(jobs, output_dir, suffix)
    check_not_inputs(jobs, outputs)
    check_writable(output_dir)
    report = BatchReport()
    todo = []
    for (src, _), dst in zip(jobs, outputs):
        if dst.exists() and not overwrite:
            report.skipped.append(dst)
        else:
            todo.append((src, dst))
    channels = translator.card.input_channels
    batch = translator.batch_size
    window = max(1, prefetch) * batch  # images decoded ahead / waiting to be saved
    pixels: dict[Path, int] = {}  # header sizes, read once

    # In flight: (src, dst, pixels, future); pending: decoding or decoded, saving: encoding.
    pending: deque[tuple[Path, Path, int, Future[np.ndarray]]] = deque()
    saving: deque[tuple[Path, Path, int, Future[None]]] = deque()

    def held() -> int:
        return sum(px for _, _, px, _ in pending) + sum(px for _, _, px, _ in saving)

    def finish_save() -> None:
        src, dst, _, fut = saving.popleft()
        try:
            fut.result()
        except OSError as e:
            report.failed.append((src, f"cannot write {dst} ({e})"))
            return
        report.written.append(dst)

    bar_format = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} img [{elapsed}<{remaining}, {rate_fmt}]"
    with warnings_as_notes(report.notes) as reading, ThreadPoolExecutor(max_workers=max(1, prefetch)) as pool, tqdm(
        total=len(todo), unit="img", disable=not progress, desc="translate", bar_format=bar_format
    ) as bar:
        position = 0.0  # images done, in fractions of an image within a translate call

        def move_to(p: float) -> None:
            nonlocal position
            bar.update(p - position)
            position = p

        def decode(src: Path) -> np.ndarray:
            with reading(src):
                return prepare(load_image(src), channels)

        def translate_chunk(chunk: list[tuple[Path, Path, int, Future[np.ndarray]]]) -> None:
            """Wait for the chunk's decoding, translate it and queue the encoding. A function,
            so that its arrays are dropped when it returns."""
            ready, arrays = [], []
            for src, dst, px, fut in chunk:
                try:
                    arrays.append(fut.result())
                    ready.append((src, dst, px))
                except ImageReadError as e:
                    report.failed.append((src, str(e).removeprefix(f"{src}: ")))
                except Img2ImgError as e:
                    report.failed.append((src, str(e)))
            del fut  # the loop variable would keep the last future, and its array, alive
            start = position + len(chunk) - len(ready)  # failed ones count as done
            move_to(start)
            chunk.clear()  # the futures hold the decoded arrays too
            if ready:
                outs = translator.translate_arrays(arrays, progress=lambda done, total: move_to(start + len(ready) * done / total))
                arrays.clear()  # inputs are not held while outputs are encoded, nor outputs once in PIL
                release_free_memory()  # the network's buffers, freed: back to the OS before the next image
                for src, dst, px in ready:
                    saving.append((src, dst, px, pool.submit(save_image, to_pil(outs.pop(0)), dst, fmt)))

        nxt = 0
        while nxt < len(todo) or pending:
            # Decode ahead within the window and the pixel budget; an image over the budget goes
            # only when nothing else is held.
            while nxt < len(todo) and len(pending) < window + batch:
                src, dst = todo[nxt]
                if src not in pixels:
                    with reading(src):  # Pillow reads EXIF when it opens a JPEG
                        pixels[src] = header_pixels(src)
                if (pending or saving) and held() + pixels[src] > PIPELINE_PIXELS:
                    break
                pending.append((src, dst, pixels[src], pool.submit(decode, src)))
                nxt += 1
            if not pending:  # the budget is held by images being encoded
                finish_save()
                continue
            translate_chunk([pending.popleft() for _ in range(min(batch, len(pending)))])
            while len(saving) > window:
                finish_save()
        while saving:
            finish_save()
    return report
