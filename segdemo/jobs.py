"""Background jobs for the app: ``python -m train demo`` as a subprocess, and its progress.

The app must stay responsive while the demo trains (tens of minutes on a CPU), and a browser
reload must not lose track of it. So the job is a separate process in its own session, and all
its state lives in the checkpoint folder, where any later page run can read it:

* ``.demo.pid``  - JSON ``{"pid", "started", "command"}`` written when the job starts;
* ``.demo.log``  - its stdout and stderr;
* ``.demo_progress.json`` - written by the demo itself (see ``train/demo.py``, ``PROGRESS_FILE``).

segdemo never imports ``train``; the demo is only ever started as a command.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segdemo.profiles import DEFAULT_PROFILE, DEMO_PROFILES

__all__ = [
    "LOG_FILE",
    "PID_FILE",
    "PROGRESS_FILE",
    "DemoStatus",
    "EvaluationJob",
    "JobError",
    "data_arguments",
    "demo_command",
    "demo_status",
    "evaluation_command",
    "evaluation_status",
    "is_running",
    "log_tail",
    "new_job_name",
    "progress_fraction",
    "read_progress",
    "start_demo",
    "start_evaluation",
    "stop_demo",
]

REPO = Path(__file__).resolve().parents[1]
PROGRESS_FILE = ".demo_progress.json"
"""The demo's progress file, written by ``train.demo`` and read here."""
LOG_FILE = ".demo.log"
PID_FILE = ".demo.pid"
# Processes started by this Python process: polled to reap them (no zombies) and to get their state
# exactly; a job started by an earlier app process is found through the pid file instead.
_CHILDREN: dict[int, subprocess.Popen] = {}


class JobError(RuntimeError):
    """A job that cannot be started; the message says why."""


@dataclass
class DemoStatus:
    """What the app shows about the demo job."""

    running: bool
    state: str
    """"idle" (never started here), "starting", "generating", "training", "done", "failed" or "stopped"."""
    fraction: float
    """Overall progress in [0, 1]."""
    message: str
    progress: dict[str, Any] | None = None
    pid: int | None = None
    finished: list[str] = field(default_factory=list)
    """Variants whose checkpoints are complete."""


def demo_command(
    root: str | Path, python: str | None = None, extra: Sequence[str] = (), profile: str = DEFAULT_PROFILE
) -> list[str]:
    """The command line of the demo of one of ``segdemo.profiles.DEMO_PROFILES``, writing its checkpoints into
    ``root``."""
    if profile not in DEMO_PROFILES:
        raise JobError(f"unknown demo profile {profile!r}; choose among {', '.join(DEMO_PROFILES)}")
    chosen = ["--profile", profile] if profile != DEFAULT_PROFILE else []
    argv = [python or sys.executable, "-m", "train", "demo", "--out", str(Path(root).resolve())]
    return argv + chosen + list(extra)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):  # missing, or caught between two writes of a non-atomic writer
        return None
    return value if isinstance(value, dict) else None


def read_progress(root: str | Path) -> dict[str, Any] | None:
    """The demo's progress file in ``root`` as a dict, or None when there is none (or it is unreadable)."""
    return _read_json(Path(root) / PROGRESS_FILE)


def _pid(root: Path) -> int | None:
    record = _read_json(root / PID_FILE)
    pid = record.get("pid") if record else None
    return pid if isinstance(pid, int) and pid > 0 else None


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None  # also reaps it when it has ended
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else: not ours
        return False
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        # The pid may have been reused by an unrelated process, or be a zombie of an ended job.
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            return False
        return state != "Z" and b"train" in cmdline and (b"demo" in cmdline or b"evaluate" in cmdline)
    return True


def is_running(root: str | Path) -> bool:
    """Whether the demo job recorded in ``root`` is still running."""
    pid = _pid(Path(root))
    return pid is not None and _alive(pid)


def start_demo(
    root: str | Path,
    command: Sequence[str] | None = None,
    cwd: str | Path | None = None,
    profile: str = DEFAULT_PROFILE,
) -> int:
    """Start the demo of ``profile`` (or ``command``) in the background, its output appended to
    ``root/.demo.log``.

    Runs in the repository (``cwd``), where ``python -m train`` and ``data/`` are; in a new session,
    so it survives the app's page runs and is not hit by a Ctrl-C meant for the app server.
    Returns the process id. Raises :class:`JobError` if a demo is already running for ``root``.
    """
    root = Path(root)
    if is_running(root):
        raise JobError(f"the demo is already running (pid {_pid(root)}); see {root / LOG_FILE}")
    argv = list(command) if command is not None else demo_command(root, profile=profile)
    try:
        root.mkdir(parents=True, exist_ok=True)
        # A finished run's progress would read as "done" until the new job writes its own.
        (root / PROGRESS_FILE).unlink(missing_ok=True)
    except OSError as exc:
        raise JobError(f"cannot write into the checkpoint folder {root}: {exc.strerror or exc}") from exc
    return _spawn(argv, root / LOG_FILE, root / PID_FILE, cwd)


def _spawn(argv: list[str], log_file: Path, record: Path, cwd: str | Path | None = None) -> int:
    """Start ``argv`` in the background, in a new session (it survives the app's page runs and a Ctrl-C meant
    for the app server), in the repository, its output appended to ``log_file`` after a line naming the
    command; ``record`` gets its pid. Returns the pid."""
    try:
        log = log_file.open("ab")
    except OSError as exc:
        raise JobError(f"cannot write into {log_file.parent}: {exc.strerror or exc}") from exc
    with log:
        log.write(f"\n$ {' '.join(argv)}   # {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        log.flush()
        try:
            child = subprocess.Popen(
                argv,
                cwd=str(cwd or REPO),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},  # the log shows lines as they are printed
                start_new_session=True,
            )
        except OSError as exc:
            raise JobError(f"cannot start {argv[0]}: {exc}") from exc
    _CHILDREN[child.pid] = child
    record.write_text(json.dumps({"pid": child.pid, "started": time.time(), "command": argv}))
    return child.pid


def stop_demo(root: str | Path, timeout: float = 10.0) -> bool:
    """Interrupt the running demo (SIGINT: it keeps finished checkpoints and can resume).

    A process started from a background shell ignores SIGINT, and so does the demo when the app was
    started that way (``nohup make app &``); if SIGINT has not ended it within half of ``timeout``,
    SIGTERM follows, which training handles the same way (state saved, exit). Waits up to ``timeout``
    seconds in all. Returns False when no demo was running.
    """
    root = Path(root)
    pid = _pid(root)
    if pid is None or not _alive(pid):
        return False
    start = time.monotonic()
    for sig, until in ((signal.SIGINT, start + timeout / 2), (signal.SIGTERM, start + timeout)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        while time.monotonic() < until and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            break
    return True


def progress_fraction(progress: dict[str, Any] | None) -> float:
    """Overall progress of the demo in [0, 1]: finished variants plus the share of the current one."""
    if not progress:
        return 0.0
    if progress.get("state") == "done":
        return 1.0
    try:
        count = max(int(progress.get("count") or 0), 0)
        done = len(progress.get("finished") or [])
        step, total = float(progress.get("step") or 0), float(progress.get("total") or 0)
    except (TypeError, ValueError):
        return 0.0
    if count == 0:
        return 0.0
    current = step / total if total > 0 and progress.get("state") == "training" else 0.0
    return min(max((done + min(current, 1.0)) / count, 0.0), 1.0)


def log_tail(root: str | Path, lines: int = 15) -> str:
    """The last ``lines`` lines of the demo's log ('' when there is none); progress bars' carriage
    returns are resolved so each line reads as its latest state."""
    return log_tail_of(Path(root) / LOG_FILE, lines)


def log_tail_of(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a job's log file, as :func:`log_tail` reads them."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 64_000, 0))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    rows = [row.rsplit("\r", 1)[-1] for row in text.split("\n")]  # not splitlines(): it splits at \r too
    return "\n".join(rows[-lines:])


def demo_status(root: str | Path) -> DemoStatus:
    """The demo's state for ``root``, from its pid and progress files."""
    root = Path(root)
    pid = _pid(root)
    running = pid is not None and _alive(pid)
    progress = read_progress(root)
    finished = list((progress or {}).get("finished") or [])
    if progress is None:
        if running:
            return DemoStatus(True, "starting", 0.0, "starting the demo ...", None, pid)
        if pid is not None:
            return DemoStatus(
                False, "failed", 0.0, "the demo ended before reporting progress; see its log", None, pid
            )
        return DemoStatus(False, "idle", 0.0, "", None, None)
    state = str(progress.get("state") or "starting")
    message = str(progress.get("message") or state)
    if not running and (state in ("generating", "training") or "KeyboardInterrupt" in message):
        # Interrupted (stopped from the app, Ctrl-C, killed): the demo keeps finished variants and resumes.
        where = (
            f"{progress.get('variant')}, step {progress.get('step')}" if progress.get("variant") else state
        )
        state, message = "stopped", f"stopped during {where}; start it again to continue"
    return DemoStatus(running, state, progress_fraction(progress), message, progress, pid, finished)


# ---------------------------------------------------------------------------------------------
# Evaluations: ``python -m train evaluate`` over a labelled set, one job folder each
# ---------------------------------------------------------------------------------------------

EVALUATIONS_DIR = ".evaluations"
_JOB_COUNTER = itertools.count()
"""Under the checkpoint folder: one sub-folder per evaluation job (request, progress, log, result)."""


@dataclass
class EvaluationJob:
    """What the app shows about one evaluation job."""

    folder: Path
    running: bool
    state: str
    """"starting", "running", "done" or "failed"."""
    fraction: float
    message: str
    results: list[dict[str, Any]] | None = None
    """:meth:`segdemo.evaluation.Evaluation.to_json` of each checkpoint, once done."""


def evaluation_command(
    checkpoints: Sequence[str | Path],
    data: Sequence[str],
    folder: str | Path,
    tta: str = "",
    python: str | None = None,
) -> list[str]:
    """The command line of an evaluation job: ``data`` is its data arguments (``--procedural N``,
    ``--images DIR --labels DIR [--label-encoding E]`` or ``--data-root DIR``)."""
    folder = Path(folder)
    return [
        python or sys.executable,
        "-m",
        "train",
        "evaluate",
        *[str(Path(c).resolve()) for c in checkpoints],
        *data,
        *(["--tta", tta] if tta else []),
        "--json",
        str(folder / "result.json"),
        "--progress",
        str(folder / "progress.json"),
    ]


def new_job_name() -> str:
    """A job folder name that sorts by time and never repeats within a process."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(_JOB_COUNTER)}"


def data_arguments(spec: dict[str, Any]) -> list[str]:
    """``python -m train evaluate``'s data arguments for a labelled set's description (see
    :func:`segdemo.evaluation.open_labelled_set`)."""
    source = spec.get("source")
    if source == "procedural":
        return ["--procedural", str(int(spec["count"]))]
    if source == "folders":
        arguments = ["--images", str(spec["images"]), "--labels", str(spec["labels"])]
        arguments += ["--label-encoding", str(spec.get("encoding", "auto"))]
        return arguments + (["--data-name", str(spec["name"])] if spec.get("name") else [])
    if source == "root":
        return ["--data-root", str(spec["root"])]
    raise ValueError(f"unknown labelled set {spec!r}")


KEEP_EVALUATIONS = 5
"""Job folders kept under ``.evaluations`` (an uploaded zip is extracted into its job's folder): starting a
job removes the oldest finished ones beyond this many, so uploads never pile up."""


def _prune_jobs(root: Path, keep: int = KEEP_EVALUATIONS) -> None:
    import shutil

    folders = sorted((d for d in (root / EVALUATIONS_DIR).glob("*") if d.is_dir()), key=lambda d: d.name)
    for folder in folders[: max(len(folders) - keep, 0)]:
        if not evaluation_status(folder).running:
            shutil.rmtree(folder, ignore_errors=True)


def start_evaluation(
    root: str | Path,
    checkpoints: Sequence[str | Path],
    data: Sequence[str],
    tta: str = "",
    job: str | None = None,
) -> Path:
    """Start an evaluation in the background; returns its job folder (``root/.evaluations/<job>``), where
    :func:`evaluation_status` follows it. ``job`` names the folder (default: the time)."""
    folder = Path(root) / EVALUATIONS_DIR / (job or new_job_name())
    _prune_jobs(Path(root), KEEP_EVALUATIONS - 1)
    argv = evaluation_command(checkpoints, data, folder, tta)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("result.json", "progress.json"):
            (folder / name).unlink(missing_ok=True)
    except OSError as exc:
        raise JobError(f"cannot write into {folder}: {exc.strerror or exc}") from exc
    _spawn(argv, folder / "log.txt", folder / "job.json")
    return folder


def evaluation_status(folder: str | Path) -> EvaluationJob:
    """An evaluation job's state, from the files in its folder."""
    folder = Path(folder)
    record = _read_json(folder / "job.json") or {}
    pid = record.get("pid") if isinstance(record.get("pid"), int) else None
    running = pid is not None and _alive(pid)
    progress = _read_json(folder / "progress.json") or {}
    state = str(progress.get("state") or ("starting" if running else "failed"))
    if state == "done":
        try:
            results = json.loads((folder / "result.json").read_text())
        except (OSError, ValueError):
            results = None
        if isinstance(results, list):
            return EvaluationJob(folder, running, "done", 1.0, "done", results)
        state = "failed"
    if not running and state != "failed":
        state = "failed"
    if state == "failed":
        tail = log_tail_of(folder / "log.txt", 3)
        message = str(progress.get("message") or tail or "the evaluation ended without a result")
        return EvaluationJob(folder, False, "failed", 0.0, message)
    done = int(progress.get("checkpoint") or 0) + float(progress.get("image") or 0) / max(
        float(progress.get("images") or 1), 1.0
    )
    fraction = min(max(done / max(int(progress.get("checkpoints") or 1), 1), 0.0), 1.0)
    message = (
        f"checkpoint {int(progress.get('checkpoint') or 0) + 1} of {progress.get('checkpoints', '?')}, image "
        f"{progress.get('image', 0)} of {progress.get('images', '?')}"
        if state == "running"
        else "starting ..."
    )
    return EvaluationJob(folder, True, state, fraction, message)
