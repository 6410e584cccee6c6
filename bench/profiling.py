"""Sample a running server with py-spy and summarize where its CPU time goes."""

from __future__ import annotations

import collections
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["start_py_spy", "summarize_collapsed"]

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 100


def _py_spy_executable() -> str:
    candidate = Path(sys.executable).with_name("py-spy")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("py-spy")
    if found is None:
        raise RuntimeError(
            "py-spy not found; install the dev dependencies with `uv sync`"
        )
    return found


def start_py_spy(pid: int, duration: float, output: Path) -> subprocess.Popen[bytes]:
    """Start `py-spy record` on `pid` for `duration` seconds, writing collapsed stacks.

    The caller waits on the returned process. `--nonblocking` keeps py-spy from
    pausing the server at each sample, so the load run stays comparable.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [
        _py_spy_executable(), "record",
        "--pid", str(pid),
        "--duration", str(max(1, round(duration))),
        "--rate", str(SAMPLE_RATE_HZ),
        "--format", "raw",
        "--nonblocking",
        "--output", str(output),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _frame_name(frame: str) -> str:
    # py-spy writes frames as "function (path/to/file.py:line)"; keep the function
    # and the file's last two path parts so that frames of one module group.
    name, _, location = frame.partition(" (")
    location = location.rstrip(")")
    path = location.rsplit(":", 1)[0]
    short_path = "/".join(Path(path).parts[-2:]) if path else ""
    return f"{name} ({short_path})" if short_path else name


def summarize_collapsed(path: Path, top: int = 30) -> dict[str, Any]:
    """Return the frames with the largest inclusive and self share of samples.

    Inclusive share counts a sample once per frame even when the frame recurs in
    the stack.
    """
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count

    def shares(counter: collections.Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": frame, "share": count / total, "samples": count}
            for frame, count in counter.most_common(top)
        ]

    return {"samples": total, "inclusive": shares(inclusive), "self": shares(own)}
