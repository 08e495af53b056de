#!/usr/bin/env python3
"""Sum a Kineto/Chrome trace written by bench_gpu_trace (MECHSCOPE_BENCH_TRACE=FILE).

Prints where the traced run's time went: the wall span, the GPU's busy time (kernels and copies, overlaps
merged) and idle time, kernel time by kernel name, GPU time under each named range of ours (gpu_user_annotation,
e.g. probe::moments_column_pass), CPU time in those ranges, and the ATen ops launched most often.
  trace_summary.py TRACE.json[.gz] [--top N]
"""
import argparse
import collections
import gzip
import json


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)["traceEvents"]


def merged_length(intervals):
    """Total length of the union of [start, end) intervals."""
    total, end = 0.0, None
    start = None
    for s, e in sorted(intervals):
        if end is None or s > end:
            if end is not None:
                total += end - start
            start, end = s, e
        else:
            end = max(end, e)
    if end is not None:
        total += end - start
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=20)
    a = ap.parse_args()
    ev = [e for e in load(a.trace) if e.get("ph") == "X" and "dur" in e]
    gpu = [e for e in ev if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    cpu_ops = [e for e in ev if e.get("cat") == "cpu_op"]
    span_start = min(e["ts"] for e in ev)
    span_end = max(e["ts"] + e["dur"] for e in ev)
    busy = merged_length([(e["ts"], e["ts"] + e["dur"]) for e in gpu])
    span = span_end - span_start
    print(f"span {span / 1e3:.2f} ms, GPU busy {busy / 1e3:.2f} ms ({100 * busy / max(span, 1):.0f} %), "
          f"{len(gpu)} GPU activities, {len(cpu_ops)} CPU ops")
    by_kernel = collections.defaultdict(lambda: [0.0, 0])
    for e in gpu:
        k = by_kernel[e["name"][:110]]
        k[0] += e["dur"]
        k[1] += 1
    print(f"GPU time by kernel (top {a.top}):")
    for name, (d, c) in sorted(by_kernel.items(), key=lambda kv: -kv[1][0])[: a.top]:
        print(f"  {d / 1e3:9.2f} ms {c:6d}x  {name}")
    for cat, what in (("gpu_user_annotation", "GPU"), ("user_annotation", "CPU")):
        ranges = collections.defaultdict(lambda: [[], 0])
        for e in ev:
            if e.get("cat") == cat:
                r = ranges[e["name"]]
                r[0].append((e["ts"], e["ts"] + e["dur"]))
                r[1] += 1
        if ranges:
            print(f"{what} time in our named ranges (nested ranges overlap):")
            for name, (iv, c) in sorted(ranges.items(), key=lambda kv: -merged_length(kv[1][0])):
                print(f"  {merged_length(iv) / 1e3:9.2f} ms {c:6d}x  {name}")
    launches = collections.Counter(e["name"] for e in cpu_ops)
    cpu_time = collections.defaultdict(float)
    for e in cpu_ops:
        cpu_time[e["name"]] += e["dur"]
    print(f"ATen ops launched most often (top {a.top}; count, CPU ms incl. children):")
    for name, c in launches.most_common(a.top):
        print(f"  {c:6d}x {cpu_time[name] / 1e3:9.2f} ms  {name}")


if __name__ == "__main__":
    main()
