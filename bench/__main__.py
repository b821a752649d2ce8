"""Run the benchmarks and write bench/RESULTS.md.

    python -m bench              # all of them (make bench)
    python -m bench ack scale    # some, by name; the other sections are kept
    python -m bench --list
    python -m bench --no-write   # print only

Each benchmark runs in a fresh process (bench/one.py) so that peak memory and CPU
time are its own; its log goes to a file, shown when it fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Section, machine
from bench.report import render, standalone

HERE = Path(__file__).resolve().parent
RESULTS_JSON = HERE / "results.json"
RESULTS_MD = HERE / "RESULTS.md"

# name: (what it measures, time limit in seconds)
BENCHMARKS: dict[str, tuple[str, float]] = {
    "images": ("header-only image check vs full decode", 120),
    "ledger": ("quota ledger reserve + settle per second", 120),
    "polling": ("poll schedule vs the optimum and the fixed schedules, 3 duration models", 300),
    "delivery": ("delivery lag and status calls: engine vs fixed schedules, callbacks", 900),
    "ack": ("interaction acknowledgement latency with 0/100/1,000 jobs in flight", 300),
    "slack_ack": ("Slack command acknowledgement latency with 0/1,000 jobs in flight", 300),
    "scale": ("2,000 concurrent jobs: CPU per job, peak RSS, loop lag", 360),
    "bigimages": ("real sizes: 4 x 2-5 MB results, 1-10 MB inputs, paced transfers", 600),
    "multiproc": ("jobs/min and delivery lag: 1-3 processes on PostgreSQL vs 1 on SQLite", 900),
}


def run_one(name: str, logs: Path) -> Section | None:
    limit = BENCHMARKS[name][1]
    out = logs / f"{name}.json"
    log = logs / f"{name}.log"
    print(f"== {name}: {BENCHMARKS[name][0]} (log: {log})", flush=True)
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as stderr:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "bench.one", name, str(out)],
                stderr=stderr,
                timeout=limit,
                check=False,
            )
        except subprocess.TimeoutExpired:
            print(f"   FAILED: over its {limit:.0f} s limit", flush=True)
            return None
    if done.returncode != 0 or not out.exists():
        print(f"   FAILED (exit {done.returncode}); last lines of the log:", flush=True)
        print("".join(log.read_text(encoding="utf-8").splitlines(True)[-15:]), flush=True)
        return None
    errors = [line for line in log.read_text(encoding="utf-8").splitlines() if " ERROR " in line]
    if errors:
        kept = Path(tempfile.mkdtemp(prefix=f"wanbot-bench-{name}-")) / log.name
        kept.write_text(log.read_text(encoding="utf-8"), encoding="utf-8")
        print(f"   note: {len(errors)} ERROR line(s) in the log, kept at {kept}:", flush=True)
        print(f"   {errors[0]}", flush=True)
    section = Section.from_json(json.loads(out.read_text(encoding="utf-8")))
    for figure in section.figures:
        verdict = f"  [{figure.target}: {figure.verdict().strip('*')}]" if figure.target else ""
        print(f"   {figure.label}: {figure.shown()}{verdict}", flush=True)
    print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    return section


def load_stored() -> dict[str, Section]:
    if not RESULTS_JSON.exists():
        return {}
    data = json.loads(RESULTS_JSON.read_text(encoding="utf-8"))
    return {name: Section.from_json(raw) for name, raw in data.get("sections", {}).items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(BENCHMARKS)}")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)
    if args.list:
        for name, (what, limit) in BENCHMARKS.items():
            print(f"{name:10} {what} (limit {limit:.0f} s)")
        return 0
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; see --list")
    names = args.names or list(BENCHMARKS)
    started = time.monotonic()
    failed = []
    sections = load_stored()
    with tempfile.TemporaryDirectory(prefix="wanbot-bench-logs-") as tmp:
        logs = Path(tmp)
        for name in names:
            section = run_one(name, logs)
            if section is None:
                failed.append(name)
            else:
                sections[name] = section
        if failed:
            # Keep the logs of what failed; the rest of the directory goes.
            keep = Path(tempfile.mkdtemp(prefix="wanbot-bench-failed-"))
            for name in failed:
                log = logs / f"{name}.log"
                if log.exists():
                    log.rename(keep / log.name)
            print(f"logs of the failed benchmarks: {keep}", flush=True)
    total = time.monotonic() - started
    print(f"== {len(names) - len(failed)}/{len(names)} benchmarks ran in {total:.0f} s", flush=True)
    if not args.no_write:
        ordered = [sections[n] for n in BENCHMARKS if n in sections]
        info = machine()
        RESULTS_JSON.write_text(
            json.dumps(
                {"machine": info, "sections": {s.name: s.to_json() for s in ordered}}, indent=1
            )
            + "\n",
            encoding="utf-8",
        )
        current = RESULTS_MD.read_text(encoding="utf-8") if RESULTS_MD.exists() else ""
        kept = standalone(current, ordered)
        RESULTS_MD.write_text(render(info, ordered, kept), encoding="utf-8")
        print(f"wrote {RESULTS_MD}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
