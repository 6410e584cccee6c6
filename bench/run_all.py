"""Run the ingest, dispatch and growth benchmarks, then render docs/benchmarks.md.

    uv run python -m bench.run_all            # full run, about 20 minutes on 2 cores
    uv run python -m bench.run_all --quick    # smoke run, a few minutes

`--quick` and `--backends` go to every benchmark; `--profile` only to the ingest
benchmark. Each benchmark runs in its own interpreter, because Prefect reads
PREFECT_API_URL once per process and the dispatch benchmark sets it to its own
server.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence

from bench import report
from bench.common import REPOSITORY_ROOT

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke runs")
    parser.add_argument(
        "--backends", default="sqlite,mariadb", help="inbox backends (sqlite,mariadb)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="sample the gateway with py-spy"
    )
    args = parser.parse_args(argv)
    common = ["--backends", args.backends] + (["--quick"] if args.quick else [])
    runs = (
        ("bench.ingest", common + (["--profile"] if args.profile else [])),
        ("bench.dispatch", common),
        ("bench.growth", common),
    )
    for module, arguments in runs:
        completed = subprocess.run(
            [sys.executable, "-m", module, *arguments], cwd=REPOSITORY_ROOT, check=False
        )
        if completed.returncode != 0:
            print(f"{module} failed with code {completed.returncode}", file=sys.stderr)
            return completed.returncode
    return report.main()


if __name__ == "__main__":
    raise SystemExit(main())
