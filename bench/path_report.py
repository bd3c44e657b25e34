"""The path benchmark's Markdown: the tables ``bench/path_bench.py`` prints, and writes into
docs/benchmarks.md between its markers with --write-docs."""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- path-bench:begin -->", "<!-- path-bench:end -->"


def table(results: list[dict], loop_rate: float, load: tuple[str, str]) -> str:
    lines = [
        f"Load average before and after: {load[0]} -> {load[1]} (2 cores).",
        "",
        "| setup | ingest 1 client/s | p50 / p99 ms | ingest 4 clients/s | p50 / p99 ms |"
        " end to end deliveries/s | × urllib3 loop | latency p50 / p99 ms at 50/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        one, four, e2e, lat = r["ingest_1"], r["ingest_4"], r["e2e"], r["latency"]
        jobs = r["e2e_jobs"]
        lines.append(
            f"| {r['setup']} | {one['per_second']:.0f} | {one['p50']:.1f} / {one['p99']:.1f}"
            f" | {four['per_second']:.0f} | {four['p50']:.1f} / {four['p99']:.1f}"
            f" | {e2e['per_second']:.0f} | {e2e['per_second'] / loop_rate:.2f}"
            f" | {lat['p50']:.1f} / {lat['p99']:.1f} |"
        )
        lines.append(
            f"| {r['setup']}, with job events | | | | | {jobs['per_second']:.0f}"
            f" | {jobs['per_second'] / loop_rate:.2f} | |"
        )
    lines.append(f"| plain urllib3 keep-alive loop | | | | | {loop_rate:.0f} | 1.00 | |")
    if results:
        jobs = results[0]["e2e_jobs"]
        per_commit, states = jobs["per_commit"], jobs["states"]
        lines += [
            "",
            f"With job events on, each commit's statuses ({', '.join(states)}) send each"
            f" hook {per_commit['job']} Job Hooks (the service's rules) besides its"
            f" {per_commit['pipeline']} Pipeline Hooks, all in that (hook, pipeline)'s one"
            " stream; logged counts are the hooks' event logs, by trigger.",
        ]
    rows = [
        (label, e2e, refused)
        for r in results
        for label, e2e, refused in (
            (r["setup"], r["e2e"], r["ingest_1"]["failed"] + r["ingest_4"]["failed"]),
            (f"{r['setup']}, with job events", r["e2e_jobs"], 0),
        )
    ]
    lines += [
        "",
        "| setup | deliveries (expected) | Pipeline Hooks logged (expected) |"
        " Job Hooks logged (expected) | all logged | CPU ms/delivery: web | workers | broker |"
        " database |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for label, e2e, _ in rows:
        cpu = e2e["cpu_ms"]
        kinds = [
            f"{e2e['logged_by_kind'][kind]} ({e2e['expected_by_kind'][kind]})"
            if e2e["expected_by_kind"][kind] or e2e["logged_by_kind"][kind]
            else "–"
            for kind in ("pipeline", "job")
        ]
        lines.append(
            f"| {label} | {e2e['deliveries']} ({e2e['expected']}) | {kinds[0]} | {kinds[1]}"
            f" | {e2e['logged']} | {cpu['web']:.2f} | {cpu['workers']:.2f}"
            f" | {cpu['broker']:.2f} | {cpu['database']:.2f} |"
        )
    lines += [
        "",
        "| setup | (b): first status post → all logged, s | status posts/s | p50 / p99 ms |"
        " web CPU ms/status post | statuses refused ((a) and (b)) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, e2e, refused in rows:
        posts = e2e["statuses"]
        lines.append(
            f"| {label} | {e2e['seconds']:.2f} | {posts['per_second']:.0f}"
            f" | {posts['p50']:.1f} / {posts['p99']:.1f} | {posts['web_cpu_ms']:.1f}"
            f" | {refused + posts['failed']} |"
        )
    return "\n".join(lines)


def write_docs(text: str) -> None:
    current = DOCS.read_text()
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in current:
        head, _, rest = current.partition(BEGIN)
        _, _, tail = rest.partition(END)
        DOCS.write_text(head + block + tail)
    else:
        DOCS.write_text(current.rstrip() + "\n\n" + block + "\n")
