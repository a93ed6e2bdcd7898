"""What every benchmark shares: the machine description, percentiles, the table, the JSON file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """CPU model, cores, memory and GPU (if any), so a number is never without its machine."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        gpu = out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_gib, 1), "gpu": gpu,
            "python": platform.python_version(), "os": platform.platform(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            # other work on the box skews every timing here: say how busy it was
            "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50": pct(values, 50), "p95": pct(values, 95),
            "mean": float(np.mean(values)) if values else float("nan")}


def print_table(title: str, rows: list[tuple[str, dict]], unit: str = "ms") -> None:
    print(f"\n{title}")
    print(f"{'metric':44} {'n':>4} {'p50':>9} {'p95':>9} {'mean':>9}  ({unit})")
    for name, s in rows:
        print(f"{name:44} {s['n']:>4} {s['p50']:>9.1f} {s['p95']:>9.1f} {s['mean']:>9.1f}")


def write_results(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    data = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(RESULTS.parent.parent)}")
    return path
