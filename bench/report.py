"""Render docs/benchmarks.md and its plots from the JSON under bench/results/.

    uv run python -m bench.report

Missing result files leave their section out. The hand-written analysis in
bench/findings.md is copied into the page below the generated tables.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from bench.common import REPOSITORY_ROOT, RESULTS_DIR

__all__ = ["main", "render"]

DOCS_DIR = REPOSITORY_ROOT / "docs"
PAGE = DOCS_DIR / "benchmarks.md"
PLOT_DIR = DOCS_DIR / "benchmarks"
FINDINGS = REPOSITORY_ROOT / "bench" / "findings.md"

INGEST_RATIO_TARGET = 0.6
HALF_LOAD_P99_TARGET_MS = 25.0
DISPATCH_RATIO_TARGET = 0.8
WEBHOOK_TO_CREATED_P95_TARGET_MS = 300.0
GROWTH_TOLERANCE = 0.15


# Frames on every stack (process start, event loop, worker threads), left out of
# the profile tables because they show nothing about where the time goes.
_BOILERPLATE_FRAMES = (
    "<frozen runpy>",
    "<module>",
    "click/",
    "uvicorn/main.py",
    "uvicorn/server.py",
    "uvicorn/_compat.py",
    "asyncio/runners.py",
    "asyncio/base_events.py",
    "Thread._bootstrap",
    "WorkerThread.run",
)


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _verdict(passed: bool) -> str:
    return "met" if passed else "**missed**"


def _plot_path(name: str) -> Path:
    PLOT_DIR.mkdir(parents=True, exist_ok=True)
    return PLOT_DIR / name


def _save(figure: Any, name: str) -> str:
    path = _plot_path(name)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return f"benchmarks/{name}"


def _ingest_section(ingest: dict[str, Any], targets: list[list[str]]) -> list[str]:
    lines = ["## Ingest", ""]
    lines.append(
        "wrk (one thread, pre-signed bodies with distinct event ids) against "
        "`POST /hooks/bench-hmac`: HMAC-SHA256 check, template rendering and one "
        "committed inbox insert per request. The bare baseline reads the body and "
        "answers 202. Both run under the same uvicorn flags "
        f"(`{ingest['machine']['uvicorn_flags']}`, loop "
        f"{ingest['machine']['loop']}, HTTP {ingest['machine']['http']}), back to "
        f"back, {ingest['settings']['duration_seconds']:.0f} s per run, "
        f"repeats: {ingest['settings']['repeats']}, the table shows the median "
        "one. Latency is wrk's, from request write to response."
    )
    lines.append("")
    throughput_figure, throughput_axes = plt.subplots(figsize=(6.4, 4))
    latency_figure, latency_axes = plt.subplots(figsize=(6.4, 4))
    for backend, data in ingest["backends"].items():
        rows = []
        summary = data["summary"]
        for run in summary:
            bare, gateway = run["bare"], run["gateway"]
            rows.append(
                [
                    str(run["connections"]),
                    f"{bare['rps']:.0f}",
                    f"{gateway['rps']:.0f}",
                    f"{run['ratio']:.2f}",
                    "{p50:.1f} / {p90:.1f} / {p99:.1f}".format(**bare["latency_ms"]),
                    "{p50:.1f} / {p90:.1f} / {p99:.1f}".format(**gateway["latency_ms"]),
                    f"{gateway['rss'].get('max_mib', 0):.0f}",
                    "" if gateway["valid"] else "pool wrapped",
                ]
            )
        lines += [f"### {backend}", ""]
        lines += _table(
            [
                "connections",
                "bare req/s",
                "gateway req/s",
                "ratio",
                "bare p50 / p90 / p99 ms",
                "gateway p50 / p90 / p99 ms",
                "gateway max RSS MiB",
                "note",
            ],
            rows,
        )
        half = data["half_load"]
        lines.append(
            f"Half load: about {half['target_rps']:.0f} req/s offered "
            f"({half['connections']} connections, {half['delay_ms']} ms pause before "
            f"each request), {half['rps']:.0f} req/s achieved, latency p50 / p90 / "
            f"p99 {half['latency_ms']['p50']:.1f} / {half['latency_ms']['p90']:.1f} / "
            f"{half['latency_ms']['p99']:.1f} ms."
        )
        lines.append("")
        connections = [run["connections"] for run in summary]
        throughput_axes.plot(
            connections, [run["gateway"]["rps"] for run in summary], "o-",
            label=f"gateway, {backend}",
        )  # fmt: skip
        throughput_axes.plot(
            connections, [run["bare"]["rps"] for run in summary], "x--",
            label=f"bare (during {backend} runs)",
        )  # fmt: skip
        latency_axes.plot(
            connections, [run["gateway"]["latency_ms"]["p99"] for run in summary],
            "o-", label=f"gateway, {backend}",
        )  # fmt: skip
        latency_axes.plot(
            connections, [run["bare"]["latency_ms"]["p99"] for run in summary],
            "x--", label=f"bare (during {backend} runs)",
        )  # fmt: skip
        max_ratio = data["max_gateway_rps"] / max(run["bare"]["rps"] for run in summary)
        targets.append(
            [
                (
                    f"ingest {backend}: max gateway req/s / max bare req/s "
                    f"≥ {INGEST_RATIO_TARGET}"
                ),
                f"{max_ratio:.2f}",
                _verdict(max_ratio >= INGEST_RATIO_TARGET),
            ]
        )
        targets.append(
            [
                (
                    f"ingest {backend}: p99 at half the maximum load "
                    f"≤ {HALF_LOAD_P99_TARGET_MS:.0f} ms"
                ),
                f"{half['latency_ms']['p99']:.1f} ms",
                _verdict(half["latency_ms"]["p99"] <= HALF_LOAD_P99_TARGET_MS),
            ]
        )
    for axes, label in (
        (throughput_axes, "requests per second"),
        (latency_axes, "p99 latency (ms)"),
    ):
        axes.set_xscale("log", base=2)
        connection_counts = ingest["settings"]["connections"]
        axes.set_xticks(connection_counts, [str(count) for count in connection_counts])
        axes.set_xlabel("concurrent connections")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    latency_axes.set_yscale("log")
    throughput_axes.set_title("Ingest throughput")
    latency_axes.set_title("Ingest p99 latency")
    throughput_plot = _save(throughput_figure, "ingest-throughput.png")
    latency_plot = _save(latency_figure, "ingest-latency.png")
    lines += [
        f"![Ingest throughput]({throughput_plot})",
        "",
        f"![Ingest p99 latency]({latency_plot})",
        "",
    ]
    profiles = [
        (backend, data["profile"])
        for backend, data in ingest["backends"].items()
        if data.get("profile")
    ]
    for backend, profile in profiles:
        lines += [
            f"### Profile: {backend}, {profile['connections']} connections",
            "",
            (
                f"py-spy, {profile['samples']} samples, "
                f"{profile['rps_while_profiled']:.0f} req/s while sampled; collapsed "
                f"stacks in `{profile['output']}`. Largest inclusive shares of the "
                "gateway's own and library frames:"
            ),
            "",
        ]
        rows = [
            [f"{entry['share'] * 100:.1f} %", f"`{entry['frame']}`"]
            for entry in profile["inclusive"]
            if not any(part in entry["frame"] for part in _BOILERPLATE_FRAMES)
        ][:15]
        lines += _table(["share of samples", "frame"], rows)
    return lines


def _dispatch_section(dispatch: dict[str, Any], targets: list[list[str]]) -> list[str]:
    settings = dispatch["settings"]
    lines = ["## Dispatch", ""]
    lines.append(
        f"{settings['events']} pending events pre-filled in a fresh inbox, then a "
        "gateway with its dispatcher on creates one run each on a deployment that no "
        "worker serves. The plain loop calls `create_flow_run_from_deployment` with "
        f"the dispatcher's concurrency ({settings['concurrency']}) on the same "
        "Prefect server. Rates are from the first to the last `created` timestamp "
        "Prefect stored."
    )
    lines.append("")
    rows = []
    ratios_by_backend: dict[str, float] = {}
    for backend, rounds in dispatch["throughput"].items():
        for number, round_ in enumerate(rounds):
            rows.append(
                [
                    backend,
                    str(number + 1),
                    f"{round_['plain_loop']['events_per_second']:.1f}",
                    f"{round_['gateway']['events_per_second']:.1f}",
                    f"{round_['ratio']:.2f}",
                ]
            )
        ratios_by_backend[backend] = statistics.median(r["ratio"] for r in rounds)
    lines += _table(
        ["inbox", "repeat", "plain loop runs/s", "gateway runs/s", "ratio"], rows
    )
    for backend, ratio in ratios_by_backend.items():
        targets.append(
            [
                f"dispatch {backend}: gateway / plain loop ≥ {DISPATCH_RATIO_TARGET}",
                f"{ratio:.2f}",
                _verdict(ratio >= DISPATCH_RATIO_TARGET),
            ]
        )

    latency = dispatch.get("latency")
    running = dispatch.get("running")
    rows = []

    def add(name: str, stats: dict[str, Any]) -> None:
        rows.append(
            [name, str(stats["count"])]
            + [f"{stats[key]:.0f}" for key in ("p50", "p90", "p95", "p99", "max")]
        )

    if latency:
        add("webhook answer (202)", latency["answer_ms"])
        add("webhook → run created", latency["webhook_to_created_ms"])
    if running:
        add("run created → Running", running["created_to_running_ms"])
        add("webhook → Running", running["webhook_to_running_ms"])
    if rows:
        lines.append(
            f"Latency: {settings['latency_events']} signed webhooks at "
            f"{settings['latency_rate_per_second']:.1f} per second to a SQLite "
            "gateway; webhook → run created is Prefect's `created` timestamp minus "
            f"the client's send time. Running: {settings['running_runs']} runs of a "
            "no-op flow served with PREFECT_RUNNER_POLL_FREQUENCY=1, one every 2 s, "
            "timed from each run's state history."
        )
        lines.append("")
        lines += _table(
            ["path", "n", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "max ms"], rows
        )
    if latency:
        p95 = latency["webhook_to_created_ms"]["p95"]
        targets.append(
            [
                f"webhook → run created p95 ≤ {WEBHOOK_TO_CREATED_P95_TARGET_MS:.0f} ms",
                f"{p95:.0f} ms",
                _verdict(p95 <= WEBHOOK_TO_CREATED_P95_TARGET_MS),
            ]
        )
        figure, axes = plt.subplots(figsize=(6.4, 4))
        samples = sorted(latency["webhook_to_created_samples_ms"])
        axes.plot(
            samples,
            [(index + 1) / len(samples) for index in range(len(samples))],
            label="webhook → run created",
        )
        if running:
            running_samples = sorted(running["created_to_running_samples_ms"])
            axes.plot(
                running_samples,
                [
                    (index + 1) / len(running_samples)
                    for index in range(len(running_samples))
                ],
                label="run created → Running",
            )
        axes.axvline(WEBHOOK_TO_CREATED_P95_TARGET_MS, color="grey", linestyle=":")
        axes.set_xscale("log")
        axes.set_xlabel("milliseconds")
        axes.set_ylabel("fraction of runs")
        axes.set_title("Dispatch latency (cumulative)")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
        lines += [f"![Dispatch latency]({_save(figure, 'dispatch-latency.png')})", ""]
    return lines


def _growth_section(growth: dict[str, Any], targets: list[list[str]]) -> list[str]:
    settings = growth["settings"]
    lines = ["## Growth", ""]
    lines.append(
        "One inbox per backend grows by bulk inserts; at each level a fresh gateway "
        f"(dispatcher off) takes {settings['connections']} wrk connections for "
        f"{settings['duration_seconds']:.0f} s (repeats: {settings['repeats']}, "
        "median shown) while its resident memory is sampled every 0.2 s."
    )
    lines.append("")
    rows = []
    figure, axes = plt.subplots(figsize=(6.4, 4))
    memory_figure, memory_axes = plt.subplots(figsize=(6.4, 4))
    for backend, measurements in growth["backends"].items():
        for measurement in measurements:
            median = measurement["median"]
            rows.append(
                [
                    backend,
                    f"{measurement['stored_before']:,}",
                    f"{median['rps']:.0f}",
                    f"{measurement['change_vs_empty'] * 100:+.1f} %",
                    "{p50:.1f} / {p99:.1f}".format(**median["latency_ms"]),
                    (
                        f"{median['rss'].get('start_mib', 0):.0f} → "
                        f"{median['rss'].get('max_mib', 0):.0f}"
                    ),
                ]
            )
            samples = median.get("rss_samples") or []
            memory_axes.plot(
                [seconds for seconds, _ in samples],
                [rss / 2**20 for _, rss in samples],
                label=f"{backend}, {measurement['stored_before']:,} stored",
            )
        axes.plot(
            [m["stored_before"] for m in measurements],
            [m["median"]["rps"] for m in measurements],
            "o-",
            label=backend,
        )
        last = measurements[-1]
        targets.append(
            [
                (
                    f"growth {backend}: req/s at {last['stored_before']:,} stored within "
                    f"±{GROWTH_TOLERANCE * 100:.0f} % of empty"
                ),
                f"{last['change_vs_empty'] * 100:+.1f} %",
                _verdict(abs(last["change_vs_empty"]) <= GROWTH_TOLERANCE),
            ]
        )
    lines += _table(
        [
            "inbox",
            "stored events",
            "req/s",
            "vs empty",
            "p50 / p99 ms",
            "RSS MiB start → max",
        ],
        rows,
    )
    axes.set_xscale("symlog", linthresh=1000)
    axes.set_xlabel("events already stored")
    axes.set_ylabel("requests per second")
    axes.set_title(f"Ingest throughput at {settings['connections']} connections")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    memory_axes.set_xlabel("seconds into the wrk run")
    memory_axes.set_ylabel("gateway RSS (MiB)")
    memory_axes.set_title("Gateway resident memory under load")
    memory_axes.grid(True, alpha=0.3)
    memory_axes.legend(fontsize="small")
    lines += [
        f"![Growth]({_save(figure, 'growth.png')})",
        "",
        f"![Memory]({_save(memory_figure, 'memory.png')})",
        "",
    ]
    return lines


def _machine_lines(results: list[dict[str, Any]]) -> list[str]:
    machine = results[0]["machine"]
    dates = sorted({result["machine"]["date"] for result in results})
    commits = sorted(
        {
            result["machine"]["git_commit"][:12]
            + (" (uncommitted changes)" if result["machine"]["git_dirty"] else "")
            for result in results
        }
    )
    rows = [
        ["date (UTC)", ", ".join(dates)],
        ["git commit", ", ".join(commits)],
        ["CPU", f"{machine['cores']} cores, {machine['cpu_model']}"],
        ["memory", f"{machine['memory_gib']} GiB"],
        [
            "load average at start",
            ", ".join(f"{value:.2f}" for value in machine["load_average"]),
        ],
        ["kernel", machine["kernel"]],
        [
            "software",
            (
                f"Python {machine['python']}, Prefect {machine['prefect']}, FastAPI "
                f"{machine['fastapi']}, uvicorn {machine['uvicorn']} ({machine['loop']}, "
                f"{machine['http']}), {machine['wrk']}"
            ),
        ],
    ]
    return ["## Machine", ""] + _table(["", ""], rows)


def render() -> Path:
    """Write docs/benchmarks.md and the PNG plots; return the page's path."""
    ingest, dispatch, growth = _load("ingest"), _load("dispatch"), _load("growth")
    present = [result for result in (ingest, dispatch, growth) if result]
    if not present:
        raise FileNotFoundError(
            f"no results in {RESULTS_DIR}; run `uv run python -m bench.run_all` first"
        )
    targets: list[list[str]] = []
    body: list[str] = []
    if ingest:
        body += _ingest_section(ingest, targets)
    if dispatch:
        body += _dispatch_section(dispatch, targets)
    if growth:
        body += _growth_section(growth, targets)

    lines = ["# Benchmarks", ""]
    if any(result["quick"] for result in present):
        lines += [
            (
                "> **Preliminary.** These numbers come from `--quick` smoke runs on a "
                "machine shared with other jobs, so they are noisy; rerun the full "
                "benchmarks on a quiet machine before quoting them."
            ),
            "",
        ]
    lines += [
        (
            "Generated by `uv run python -m bench.report` from `bench/results/*.json`. "
            "Everything runs on 127.0.0.1; the benchmarks are not part of the test suite."
        ),
        "",
        "## Commands",
        "",
        "```sh",
        "apt-get install -y wrk            # load generator",
        "uv sync                           # dev group: matplotlib, py-spy",
        "uv run python -m bench.run_all    # all three, then this page; add --quick",
        "```",
        "",
        "Commands of the runs shown here:",
        "",
    ]
    lines += [f"- `uv run {result['command'].strip()}`" for result in present]
    lines.append("")
    lines += _machine_lines(present)
    lines += ["## Targets", ""]
    lines += _table(["target", "measured", "result"], targets)
    lines += body
    if FINDINGS.exists():
        lines += [FINDINGS.read_text(encoding="utf-8").rstrip(), ""]
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text("\n".join(lines), encoding="utf-8")
    return PAGE


def main() -> int:
    print(f"wrote {render()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
