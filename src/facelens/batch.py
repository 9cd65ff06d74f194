"""``facelens batch``: analyse many images into JSON Lines or Parquet, resumably, on all cores or on Ray.

Resuming: results are appended as they complete (JSON Lines: one flushed line per image; Parquet: a folder of
part files, each written atomically). On start the output is read back and inputs already present are skipped,
so a run stopped by a crash or Ctrl-C continues where it stopped with nothing lost or duplicated. A partly
written last JSON line (the process died mid-write) is cut off before appending. An existing output that does not
hold facelens results is refused, never changed. Inputs whose result is an error can be re-run (``retry_errors``):
their error rows are removed first.

Everything that can be checked before the first image is: the output, the inputs (none found is an error) and the
settings (the analyzer is built once in this process, so a bad setting or head name stops the run with nothing
written). Video files found in folders or globs are skipped and counted; a video named explicitly (or in a
manifest) gets an ``unsupported_input`` result pointing to ``facelens analyze``.

An input that kills its worker process (a native crash in a decoder, the out-of-memory killer) gets a
``worker_crashed`` result and the batch goes on: see :func:`pool_map`.
"""

from __future__ import annotations

import csv
import glob
import json
import multiprocessing
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FaceLensError, UnsupportedInput
from .io import IMAGE_EXTENSIONS, expand_inputs, is_video
from .types import ImageResult

MANIFEST_EXTENSIONS = (".txt", ".csv", ".parquet")
OUTPUT_EXTENSIONS = (".jsonl", ".parquet")
"""What ``output`` may end in: a JSON Lines file or a folder of Parquet part files."""


def read_inputs(inputs: list[str]) -> list[str]:
    """Expand folders, globs, files and manifests (.txt: a path a line; .csv / .parquet: a ``path`` column).

    Relative paths inside a manifest are taken relative to the manifest's folder. Video files found by scanning a
    folder or glob are left out (see :func:`collect_inputs`).

    Raises:
        FaceLensError: If a manifest is malformed.
    """
    return collect_inputs(inputs)[0]


def collect_inputs(inputs: list[str]) -> tuple[list[str], int]:
    """Like :func:`read_inputs`, and also count the video files skipped in folder and glob scans.

    Returns:
        The de-duplicated input paths in order, and the number of distinct video files left out.

    Raises:
        FaceLensError: If a manifest is malformed.
    """
    out: list[str] = []
    videos: set[str] = set()
    for item in inputs:
        p = Path(item)
        if p.is_file() and p.suffix.lower() in MANIFEST_EXTENSIONS and p.suffix.lower() not in IMAGE_EXTENSIONS:
            out.extend(str(_resolve(p.parent, x)) for x in _read_manifest(p))
            continue
        scanned = p.is_dir() or (not p.exists() and glob.has_magic(item))
        for x in expand_inputs([item]):
            if scanned and is_video(x):
                videos.add(str(x))
            else:
                out.append(str(x))
    return list(dict.fromkeys(out)), len(videos)  # de-duplicate, keep order


def _resolve(base: Path, x: str) -> Path:
    q = Path(x)
    return q if q.is_absolute() else base / q


def _read_manifest(p: Path) -> list[str]:
    suffix = p.suffix.lower()
    try:
        if suffix == ".txt":
            return [line.strip() for line in p.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        if suffix == ".csv":
            with open(p, newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise FaceLensError(f"{p}: a manifest must be UTF-8 text (invalid byte at offset {exc.start})") from exc
    if suffix == ".csv":
        if not rows:
            return []
        header = [h.strip().lower() for h in rows[0]]
        col = header.index("path") if "path" in header else None
        if col is None:
            raise FaceLensError(f"{p}: a CSV manifest needs a 'path' column (header: {rows[0]})")
        return [r[col] for r in rows[1:] if len(r) > col and r[col].strip()]
    _require_pyarrow("Parquet manifests")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError) as exc:
        raise FaceLensError(f"{p}: not a readable Parquet manifest ({exc})") from exc
    if "path" not in table.column_names:
        raise FaceLensError(f"{p}: a Parquet manifest needs a 'path' column (columns: {table.column_names})")
    return [str(x) for x in table.column("path").to_pylist()]


def _require_pyarrow(what: str) -> None:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise FaceLensError(f"{what} need pyarrow: pip install 'facelens[scale]'") from exc


_RESULT_START = b'{"path": '
"""How every JSON line written by :class:`ResultSink` starts (``ImageResult.to_dict`` puts ``path`` first)."""


def _is_result(line: bytes) -> dict[str, Any] | None:
    """The parsed result if ``line`` is one JSON result object (path, faces, error), else None."""
    try:
        obj = json.loads(line)
    except ValueError:  # also UnicodeDecodeError
        return None
    return obj if isinstance(obj, dict) and {"path", "faces", "error"} <= obj.keys() else None


class ResultSink:
    """Where results go: a JSON Lines file or a folder of Parquet parts. Knows which inputs are done.

    Raises:
        FaceLensError: If ``output`` does not end in .jsonl or .parquet, is a folder where a .jsonl file is
            expected (or a file where a .parquet folder is), or is .parquet and pyarrow is missing.
    """

    def __init__(self, output: Path, parquet_part_size: int = 1000) -> None:
        output = Path(output)
        suffix = output.suffix.lower()
        if suffix not in OUTPUT_EXTENSIONS:
            raise FaceLensError(
                f"{output}: OUTPUT must be a .jsonl file or a .parquet folder (the last argument is the output)"
            )
        if suffix == ".jsonl" and output.is_dir():
            raise FaceLensError(f"{output}: OUTPUT is a folder; a .jsonl output must be a file")
        if suffix == ".parquet":
            if output.exists() and not output.is_dir():
                raise FaceLensError(f"{output}: a .parquet OUTPUT is a folder of part files, but this is a file")
            _require_pyarrow("Parquet outputs")
        self.output = output
        self.parquet = suffix == ".parquet"
        self.part_size = parquet_part_size
        self._buffer: list[dict[str, Any]] = []
        self._fh = None

    def _foreign(self, why: str) -> FaceLensError:
        msg = f"{self.output} exists but does not hold facelens batch results ({why})"
        return FaceLensError(f"{msg}; choose another OUTPUT or delete it")

    def done_paths(self, retry_errors: bool = False) -> set[str]:
        """Inputs that already have a complete result in the output (repairs a torn last JSON line).

        Args:
            retry_errors: Remove the results that are errors from the output first, so those inputs run again.

        Raises:
            FaceLensError: If the output exists but holds something other than results (nothing is changed).
        """
        if self.parquet:
            return self._done_parquet(retry_errors)
        if not self.output.exists():
            return set()
        data = self.output.read_bytes()
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        if tail and not (tail.startswith(_RESULT_START) or _RESULT_START.startswith(tail)):
            raise self._foreign("the text after the last line break is not a result")
        results: list[tuple[bytes, dict[str, Any]]] = []
        for i, line in enumerate(data[:cut].splitlines(), 1):
            if not line.strip():
                continue
            obj = _is_result(line)
            if obj is None:
                raise self._foreign(f"line {i} is not a result")
            results.append((line, obj))
        if cut != len(data):  # a torn last line from an interrupted run: drop it
            with open(self.output, "r+b") as fh:
                fh.truncate(cut)
        if retry_errors and any(obj["error"] is not None for _, obj in results):
            results = [(line, obj) for line, obj in results if obj["error"] is None]
            tmp = self.output.with_name(f".{self.output.name}.tmp")
            tmp.write_bytes(b"".join(line + b"\n" for line, _ in results))
            os.replace(tmp, self.output)
        return {obj["path"] for _, obj in results}

    def _done_parquet(self, retry_errors: bool) -> set[str]:
        if not self.output.is_dir():
            return set()
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        done: set[str] = set()
        for part in sorted(self.output.glob("part-*.parquet")):
            try:
                table = pq.read_table(part, columns=["path", "error"])
            except (pa.ArrowException, OSError) as exc:
                raise self._foreign(f"{part.name}: {exc}") from exc
            paths, errors = table.column("path"), table.column("error")
            if retry_errors and errors.null_count < len(errors):
                table = pq.read_table(part)
                table = table.filter(pc.is_null(table.column("error")))
                tmp = part.with_name(f".{part.name}.tmp")
                pq.write_table(table, tmp)
                os.replace(tmp, part)
                paths = table.column("path")
            done.update(paths.to_pylist())
        return done

    def write(self, result: dict[str, Any]) -> None:
        """Append one image's result (JSON Lines: written and flushed at once)."""
        if self.parquet:
            self._buffer.append(result)
            if len(self._buffer) >= self.part_size:
                self._flush_parquet()
            return
        if self._fh is None:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.output, "a", encoding="utf-8")
        self._fh.write(json.dumps(result) + "\n")
        self._fh.flush()

    def _flush_parquet(self) -> None:
        if not self._buffer:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.output.mkdir(parents=True, exist_ok=True)
        n = len(list(self.output.glob("part-*.parquet")))
        rows = [
            {
                "path": r["path"],
                "width": r["width"],
                "height": r["height"],
                "frame": r.get("frame"),
                "faces": len(r["faces"]),
                "error": r["error"],
                "error_code": r.get("error_code"),
                "result_json": json.dumps(r),
            }
            for r in self._buffer
        ]
        tmp = self.output / f".part-{n:05d}.parquet.tmp"
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, self.output / f"part-{n:05d}.parquet")
        self._buffer.clear()

    def close(self) -> None:
        """Flush and close (safe to call twice)."""
        if self.parquet:
            self._flush_parquet()
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@dataclass
class BatchSummary:
    """Counts of a batch run (mutable while the run goes on)."""

    total: int = 0
    skipped_done: int = 0
    videos_skipped: int = 0
    processed: int = 0
    faces: int = 0
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def add(self, result: dict[str, Any]) -> None:
        """Count one result."""
        self.processed += 1
        self.faces += len(result["faces"])
        if result["error"] is not None:
            self.errors[result.get("error_code") or "error"] += 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        return {
            "inputs": self.total,
            "already_done": self.skipped_done,
            "videos_skipped": self.videos_skipped,
            "processed": self.processed,
            "faces": self.faces,
            "errors": dict(self.errors),
            "seconds": round(self.seconds, 2),
            "images_per_second": round(rate, 2),
        }


# ---- local multi-process engine -------------------------------------------------------------------------------

WORKER_CRASHED = "worker_crashed"
"""``error_code`` of an input whose worker process died while analysing it, twice (see :func:`pool_map`)."""

_worker_analyzer = None
_worker_error: str | None = None


class WorkerStartError(FaceLensError):
    """A batch worker process could not build its analyzer (the batch stops: every input would fail alike)."""

    code = "worker_start_error"


def _init_worker(settings: dict[str, Any]) -> None:
    global _worker_analyzer, _worker_error
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    try:
        from .pipeline import FaceAnalyzer

        _worker_analyzer = FaceAnalyzer(**settings)
    except Exception as exc:  # noqa: BLE001 - an initializer that raises breaks the pool; the first task reports it
        _worker_error = f"{type(exc).__name__}: {exc}"


def _analyze_path(path: str) -> dict[str, Any]:
    if _worker_analyzer is None:
        raise WorkerStartError(f"a batch worker process could not build its analyzer: {_worker_error}")
    return _analyze_one(_worker_analyzer, path)


def _analyze_one(analyzer: Any, path: str) -> dict[str, Any]:
    """One input's result; a video file (named explicitly or in a manifest) is an ``unsupported_input`` error."""
    if is_video(path):
        msg = f"{path}: videos are not supported by batch; use 'facelens analyze {path}'"
        return ImageResult(path, 0, 0, (), msg, UnsupportedInput.code).to_dict()
    return analyzer.analyze_safe(path).to_dict()


def run_local(
    paths: list[str], settings: dict[str, Any], workers: int, analyzer: Any = None
) -> Iterator[dict[str, Any]]:
    """Analyse paths on ``workers`` processes (1: in this process); yields results as they complete.

    ``analyzer``: an already loaded :class:`~facelens.pipeline.FaceAnalyzer` with these settings, used instead of a
    new one when everything runs in this process.

    Raises:
        WorkerStartError: If the worker processes cannot build their analyzer.
    """
    if workers <= 1:
        if analyzer is None:
            from .pipeline import FaceAnalyzer

            analyzer = FaceAnalyzer(**settings)
        for p in paths:
            yield _analyze_one(analyzer, p)
        return
    settings = {**settings, "threads": settings.get("threads") or 1}
    yield from pool_map(_analyze_path, paths, workers, _init_worker, (settings,))


def pool_map(
    task: Callable[[str], dict[str, Any]],
    paths: Iterable[str],
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[dict[str, Any]]:
    """Run ``task(path)`` on ``workers`` spawned processes; yields each result (an ImageResult dict) as it completes.

    A worker process that dies (a native crash in a decoder, the out-of-memory killer) loses the results of every
    input then in flight, not only its own. Those inputs are run again one at a time, each alone in a worker, so
    only an input that kills its worker a second time gets an error result (``worker_crashed``); the rest of the
    batch goes on in a fresh pool. (``multiprocessing.Pool`` waited forever for a lost result.)

    Raises:
        Exception: Whatever ``task`` raises (a task turns an input's own failure into a result, so this stops the
            batch only for failures that would hit every input, such as :class:`WorkerStartError`).
    """
    todo, analysed, crashed = deque(paths), 0, 0
    while todo:
        lost: deque[str] = deque()
        for path, result in _pool_pass(task, todo, workers, 2 * workers, initializer, initargs):
            if result is None:
                lost.append(path)
            else:
                analysed += 1
                yield result
        while lost:  # alone in a one-process pool, one input in flight: a crash is that input's own
            for path, result in _pool_pass(task, lost, 1, 1, initializer, initargs):
                if result is None:
                    crashed += 1
                    if analysed == 0 and crashed >= 3:
                        raise WorkerStartError(
                            "the batch worker processes died on each of the first 3 inputs and analysed none "
                            "(run with one worker to see the failure in this process)"
                        )
                    result = _crashed(path)
                else:
                    analysed += 1
                yield result


def _pool_pass(
    task: Callable[[str], dict[str, Any]],
    todo: deque[str],
    workers: int,
    in_flight: int,
    initializer: Callable[..., None] | None,
    initargs: tuple[Any, ...],
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Take inputs from ``todo`` into one pool until it is empty or a worker dies; yields ``(path, result)``.

    ``result`` is None for each input whose result the death of a worker lost; the inputs not yet submitted stay in
    ``todo``.
    """
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=initializer, initargs=initargs)
    running: dict[Future, str] = {}
    broken = False
    try:
        while running or (todo and not broken):
            while todo and not broken and len(running) < in_flight:
                path = todo.popleft()
                try:
                    running[pool.submit(task, path)] = path
                except BrokenProcessPool:
                    todo.appendleft(path)
                    broken = True
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                path = running.pop(fut)
                if isinstance(fut.exception(), BrokenProcessPool):
                    broken = True
                    yield path, None
                else:
                    yield path, fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _crashed(path: str) -> dict[str, Any]:
    msg = f"{path}: the worker process analysing this input died (a crash in a decoder, or out of memory)"
    return ImageResult(path, 0, 0, (), msg, WORKER_CRASHED).to_dict()


# ---- Ray engine ----------------------------------------------------------------------------------------------


class _RayAnalyzer:
    """A Ray Data actor that holds one FaceAnalyzer for its lifetime."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from .pipeline import FaceAnalyzer

        self.analyzer = FaceAnalyzer(**settings)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        results = [json.dumps(_analyze_one(self.analyzer, str(p))) for p in batch["path"]]
        return {"path": list(batch["path"]), "result": results}


def run_ray(
    paths: list[str], settings: dict[str, Any], workers: int, address: str | None, batch_size: int = 16
) -> Iterator[dict[str, Any]]:
    """Analyse paths with Ray Data (``map_batches`` with a model per actor); local Ray unless ``address``.

    Raises:
        FaceLensError: If Ray is not installed.
    """
    try:
        import ray
    except ImportError as exc:
        raise FaceLensError("--engine ray needs Ray: pip install 'facelens[scale]'") from exc
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else max(workers, 1), include_dashboard=False,
                 log_to_driver=False)  # fmt: skip
    ds = ray.data.from_items([{"path": p} for p in paths])
    ds = ds.map_batches(
        _RayAnalyzer,
        fn_constructor_kwargs={"settings": {**settings, "threads": settings.get("threads") or 1}},
        batch_size=batch_size,
        concurrency=max(workers, 1),
        num_cpus=1,
    )
    for row in ds.iter_rows():
        yield json.loads(row["result"])


def check_settings(settings: dict[str, Any]) -> Any:
    """Build the analyzer once here, loading the detector and heads, so bad settings fail before any image.

    Returns:
        The loaded :class:`~facelens.pipeline.FaceAnalyzer` (the local engine reuses it with one worker).

    Raises:
        FaceLensError: If a setting is out of range or a detector or head model cannot be loaded.
    """
    from .pipeline import FaceAnalyzer

    analyzer = FaceAnalyzer(**settings)
    analyzer.detector  # noqa: B018 - loading is the check
    analyzer.heads  # noqa: B018
    return analyzer


def run_batch(
    inputs: list[str],
    output: Path,
    settings: dict[str, Any] | None = None,
    workers: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
    limit: int | None = None,
    retry_errors: bool = False,
) -> BatchSummary:
    """Analyse every input into ``output``, skipping inputs already there; returns the summary.

    Args:
        inputs: Folders, globs, files or manifests (see :func:`read_inputs`).
        output: A ``.jsonl`` file or a ``.parquet`` folder.
        settings: :class:`~facelens.pipeline.AnalyzerConfig` fields.
        workers: Processes (local) or actors (Ray); default: the number of CPU cores.
        engine: ``"local"`` or ``"ray"``.
        ray_address: Ray cluster address (``None``: start Ray locally).
        progress: Show a progress bar with rate and ETA on a terminal.
        limit: Process at most this many new inputs (for trials).
        retry_errors: Re-run inputs whose earlier result is an error (their error results are removed first).

    Raises:
        FaceLensError: Before anything is written, if the output is unusable (see :class:`ResultSink`), no input
            image is found, a manifest is malformed, the engine is unknown, or the settings are invalid.
    """
    settings = dict(settings or {})
    workers = workers or os.cpu_count() or 1
    if engine not in ("local", "ray"):
        raise FaceLensError(f"unknown engine {engine!r}; use 'local' or 'ray'")
    sink = ResultSink(output)
    summary = BatchSummary()
    all_paths, summary.videos_skipped = collect_inputs(inputs)
    if not all_paths:
        videos = f" ({summary.videos_skipped} video file(s) skipped)" if summary.videos_skipped else ""
        raise FaceLensError(f"no images found in {', '.join(map(str, inputs))}{videos}")
    summary.total = len(all_paths)
    checked = check_settings(settings)
    done = sink.done_paths(retry_errors)
    todo = [p for p in all_paths if p not in done]
    summary.skipped_done = len(all_paths) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    t0 = time.perf_counter()
    if engine == "ray":
        results: Iterable[dict[str, Any]] = run_ray(todo, settings, workers, ray_address)
    else:
        results = run_local(todo, settings, workers, analyzer=checked)
    bar = None
    if progress and sys.stderr.isatty():
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), unit="img", file=sys.stderr, smoothing=0.1)
        except ImportError:
            bar = None
    try:
        for res in results:
            sink.write(res)
            summary.add(res)
            if bar is not None:
                bar.update(1)
    finally:
        sink.close()
        if bar is not None:
            bar.close()
        summary.seconds = time.perf_counter() - t0
    return summary
