#!/usr/bin/env python3
"""Compares two per-test NIAH grid files: mechscope's ``<out>.tests.jsonl`` (``mechscope-cli retrieval``)
and ``niah_grid_hf.py``'s JSONL (Hugging Face or the reference port), test by test, keyed by (needle,
length, depth):

* the prompts: n_tokens, needle_span, inserted_at (and prompt_hash where both files carry it);
* generated ids identical (else the first step that differs);
* per-step top-1 keys (argmax [step][L][H]) over the steps both decoded alike, and per-head scores within
  ``--tol`` (bf16 needs one; fp32 on the same weights: 0). Where the reference file has argmax_gap
  (``--record-gaps``), a top-1 disagreement at a gap <= ``--tie-tol`` counts as a tie, not a difference;
* the aggregate scores (mean over the tests both ran, as ``--no-success-filter``);
* timing: seconds per test of the reference (its records) and of mechscope (``--mechscope-log``: the CLI's
  ``timing:`` line, analysis seconds / tests run), the reference's first out-of-memory length.

Prints a report and, with ``--markdown``, summary lines for docs/benchmarks.md. Exit 0 when every test both
ran has identical prompts and generated ids and scores within --tol (ties allowed with --allow-ties), 1 otherwise.

    python3 scripts/device/niah_compare.py MECHSCOPE.tests.jsonl HF.tests.jsonl --tol 0 --mechscope-log niah.log
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import niah_protocol as P  # noqa: E402


def mechscope_timing(log: str):
    """(analysis seconds, peak GiB or None, tests run) from a mechscope-cli retrieval log."""
    text = open(log, encoding="utf-8", errors="replace").read()
    m = re.search(r"^timing: load ([0-9.]+) s.*?analysis ([0-9.]+) s(?:, peak CUDA memory ([0-9.]+) GiB)?", text, re.M)
    run = len(re.findall(r"^retrieval: test \d+/\d+", text, re.M))
    if not m:
        return None, None, run
    return float(m.group(2)), (float(m.group(3)) if m.group(3) else None), run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mechscope", help="mechscope's <out>.tests.jsonl")
    ap.add_argument("reference", help="niah_grid_hf.py's JSONL")
    ap.add_argument("--tol", type=float, default=0.0, help="largest |score difference| per head and test that counts as equal")
    ap.add_argument("--tie-tol", type=float, default=0.0, help="a top-1 disagreement where the reference's top-1 - top-2 <= this is a tie")
    ap.add_argument("--allow-ties", action="store_true", help="score differences caused only by ties do not fail")
    ap.add_argument("--mechscope-log", help="the mechscope-cli retrieval log (its timing: line)")
    ap.add_argument("--markdown", action="store_true", help="print summary lines for docs/benchmarks.md")
    ap.add_argument("--label", default="", help="a name for the markdown lines (model, dtype)")
    ap.add_argument("--require-all", action="store_true",
                    help="fail when a mechscope test is missing from the reference (out-of-memory and skipped tests included)")
    ap.add_argument("--json", help="write the comparison as JSON")
    a = ap.parse_args()

    mh, ms = P.read_records(a.mechscope)
    rh, rf = P.read_records(a.reference)
    mset, rset = mh.get("retrieval_settings", {}), rh.get("niah_hf_settings", {})
    notes = []
    if mset and rset:
        if mset.get("haystack_hash") != rset.get("haystack_hash"):
            notes.append(f"haystack differs ({mset.get('haystack_hash')} vs {rset.get('haystack_hash')})")
        for k in ("buffer", "question_template", "max_new_tokens", "stop_on_newline", "span_threshold"):
            if k in mset and k in rset and mset[k] != rset[k]:
                notes.append(f"setting {k} differs: {mset[k]!r} vs {rset[k]!r}")
        mn = [(n["needle"], n["question"], n["real_needle"]) for n in mset.get("needles", [])]
        rn = [(n["needle"], n["question"], n["real_needle"]) for n in rset.get("needles", [])]
        if mn and rn and mn != rn:
            notes.append("needles differ")

    ooms = sorted((k for k, r in rf.items() if r.get("oom")), key=lambda k: (k[1], k[0], k[2]))
    both = sorted(k for k in ms if k in rf and not rf[k].get("oom"))
    only_m = sorted(k for k in ms if k not in rf)
    only_r = sorted(k for k in rf if k not in ms)
    c = {"tests_mechscope": len(ms), "tests_reference": len(rf), "compared": len(both), "reference_oom": len(ooms),
         "only_mechscope": len(only_m), "only_reference": len(only_r), "prompt_mismatch": [], "generated_mismatch": [],
         "score_differs": [], "score_differs_beyond_ties": [], "max_score_diff": 0.0, "max_score_diff_at": None,
         "argmax_steps_compared": 0, "argmax_disagree": 0, "argmax_disagree_ties": 0, "notes": notes}
    L = H = None
    agg_m = agg_r = None
    for k in both:
        m, r = ms[k], rf[k]
        pm = [f for f in ("n_tokens", "needle_span", "inserted_at") if m.get(f) != r.get(f)]
        if "prompt_hash" in m and "prompt_hash" in r and m["prompt_hash"] != r["prompt_hash"]:
            pm.append("prompt_hash")
        if pm:
            c["prompt_mismatch"].append([list(k), pm])
        if r.get("prompt_only"):  # niah_grid_hf.py --backend prompts: nothing decoded
            c["prompt_only"] = c.get("prompt_only", 0) + 1
            continue
        gm, gr = m["generated_ids"], r["generated_ids"]
        same = 0
        while same < min(len(gm), len(gr)) and gm[same] == gr[same]:
            same += 1
        if gm != gr:
            c["generated_mismatch"].append([list(k), same])
        # Top-1 keys agree step by step while both decoded the same tokens (the step that first emits a
        # different token still shares its context, so it is compared too).
        am, ar, gaps = m.get("argmax") or [], r.get("argmax") or [], r.get("argmax_gap")
        tie_only = True
        for s in range(min(len(am), len(ar), same + 1)):
            for l, (rm, rr) in enumerate(zip(am[s], ar[s])):
                for h, (jm, jr) in enumerate(zip(rm, rr)):
                    c["argmax_steps_compared"] += 1
                    if jm != jr:
                        c["argmax_disagree"] += 1
                        if gaps is not None and gaps[s][l][h] <= a.tie_tol:
                            c["argmax_disagree_ties"] += 1
                        else:
                            tie_only = False
        sm, sr = m["head_scores"], r["head_scores"]
        L, H = len(sm), len(sm[0])
        if agg_m is None:
            agg_m = [[0.0] * H for _ in range(L)]
            agg_r = [[0.0] * H for _ in range(L)]
        d = 0.0
        at = None
        for l in range(L):
            for h in range(H):
                agg_m[l][h] += sm[l][h]
                agg_r[l][h] += sr[l][h]
                if abs(sm[l][h] - sr[l][h]) > d:
                    d, at = abs(sm[l][h] - sr[l][h]), [l, h]
        if d > a.tol:
            c["score_differs"].append([list(k), d, at])
            if not (tie_only and gm == gr):
                c["score_differs_beyond_ties"].append([list(k), d, at])
        if d > c["max_score_diff"]:
            c["max_score_diff"], c["max_score_diff_at"] = d, [list(k), at]
    if both and agg_m is not None:
        n = len(both)
        c["aggregate_max_diff"] = max(abs(agg_m[l][h] - agg_r[l][h]) / n for l in range(L) for h in range(H))
        top = lambda g: sorted(((g[l][h] / n, l, h) for l in range(L) for h in range(H)), reverse=True)[:5]  # noqa: E731
        c["top_heads_mechscope"] = [[l, h, round(v, 6)] for v, l, h in top(agg_m)]
        c["top_heads_reference"] = [[l, h, round(v, 6)] for v, l, h in top(agg_r)]
        c["heads_scoring_mechscope"] = sum(agg_m[l][h] > 0 for l in range(L) for h in range(H))
        c["heads_scoring_reference"] = sum(agg_r[l][h] > 0 for l in range(L) for h in range(H))
    ok_r = [r for r in rf.values() if not r.get("oom")]
    c["reference_seconds_per_test"] = sum(r.get("seconds", 0) for r in ok_r) / len(ok_r) if ok_r and "seconds" in ok_r[0] else None
    c["reference_peak_gib"] = max(((r.get("peak_memory_bytes") or 0) for r in rf.values()), default=0) / 2**30
    c["reference_oom_first"] = list(ooms[0]) + [rf[ooms[0]]["n_tokens"]] if ooms else None
    c["reference_longest_ok"] = max((r["length"] for r in ok_r), default=None)
    c["reference_backend"] = rset.get("backend")
    ms_secs = [r["seconds"] for r in ms.values() if "seconds" in r]  # per-test seconds, once the C++ records them
    if ms_secs:
        c["mechscope_seconds_per_test"] = sum(ms_secs) / len(ms_secs)
    if a.mechscope_log and os.path.exists(a.mechscope_log):
        secs, peak, run = mechscope_timing(a.mechscope_log)
        c["mechscope_analysis_seconds"], c["mechscope_peak_gib"], c["mechscope_tests_run"] = secs, peak, run
        if not ms_secs:
            c["mechscope_seconds_per_test"] = secs / run if secs and run else None

    pr = print
    pr(f"compared {c['compared']} tests (mechscope {c['tests_mechscope']}, reference {c['tests_reference']}, "
       f"reference out of memory {c['reference_oom']}, only in mechscope {c['only_mechscope']}, only in reference {c['only_reference']})")
    for n in notes:
        pr(f"note: {n}")
    pr(f"prompts differ: {len(c['prompt_mismatch'])}" + (f" (first {c['prompt_mismatch'][0]})" if c["prompt_mismatch"] else ""))
    pr(f"generated ids differ: {len(c['generated_mismatch'])}" + (
        f" (first {c['generated_mismatch'][0][0]} from step {c['generated_mismatch'][0][1]})" if c["generated_mismatch"] else ""))
    pr(f"top-1 keys: {c['argmax_disagree']} of {c['argmax_steps_compared']} (step, head) differ, {c['argmax_disagree_ties']} of them ties "
       f"(reference gap <= {a.tie_tol})")
    pr(f"head scores: {len(c['score_differs'])} tests differ by more than {a.tol} ({len(c['score_differs_beyond_ties'])} beyond ties); "
       f"largest difference {c['max_score_diff']:.3g} at {c['max_score_diff_at']}")
    if "aggregate_max_diff" in c:
        pr(f"aggregate (mean over {c['compared']} tests): max |diff| {c['aggregate_max_diff']:.3g}; heads > 0: mechscope "
           f"{c['heads_scoring_mechscope']}, reference {c['heads_scoring_reference']}; top mechscope {c['top_heads_mechscope'][:3]}, "
           f"reference {c['top_heads_reference'][:3]}")
    if c["reference_seconds_per_test"] is not None:
        pr(f"reference: {c['reference_seconds_per_test']:.3f} s per test, peak {c['reference_peak_gib']:.2f} GiB, first out of memory "
           f"{c['reference_oom_first'] or 'none'} (needle, length, depth, tokens), longest length run {c['reference_longest_ok']}")
    if c.get("mechscope_seconds_per_test"):
        pr(f"mechscope: {c['mechscope_seconds_per_test']:.3f} s per test ({c.get('mechscope_analysis_seconds') or 0:.1f} s analysis / "
           f"{c.get('mechscope_tests_run')} tests run), peak {c.get('mechscope_peak_gib')} GiB")
    if a.markdown:
        lab = f"{a.label}: " if a.label else ""
        oom = (f"OOM first at length {c['reference_oom_first'][1]} ({c['reference_oom_first'][3]} tokens)" if c["reference_oom_first"]
               else "no OOM")
        ms_s = f"{c['mechscope_seconds_per_test']:.2f} s" if c.get("mechscope_seconds_per_test") else "n/a"
        rs_s = f"{c['reference_seconds_per_test']:.2f} s" if c["reference_seconds_per_test"] is not None else "n/a"
        pr(f"- {lab}{c['compared']} tests compared; generated ids identical in {c['compared'] - len(c['generated_mismatch'])}; "
           f"per-head scores equal (tol {a.tol}) in {c['compared'] - len(c['score_differs'])}, largest difference {c['max_score_diff']:.3g}; "
           f"top-1 keys differ at {c['argmax_disagree']} of {c['argmax_steps_compared']} (step, head) ({c['argmax_disagree_ties']} ties)")
        pr(f"- {lab}reference ({c['reference_backend']}): {rs_s} per test, peak {c['reference_peak_gib']:.1f} GiB, {oom}; "
           f"mechscope {ms_s} per test" + (f", peak {c['mechscope_peak_gib']} GiB" if c.get("mechscope_peak_gib") else ""))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(c, f, indent=1)
            f.write("\n")
    bad = bool(c["prompt_mismatch"] or c["generated_mismatch"] or (c["score_differs_beyond_ties"] if a.allow_ties else c["score_differs"]))
    if c.get("prompt_only"):
        pr(f"{c['prompt_only']} reference records hold prompts only (--backend prompts): only the prompts were compared")
    if a.require_all and (only_m or ooms):
        pr(f"--require-all: {len(only_m)} mechscope tests have no reference record, {len(ooms)} ran out of memory")
        bad = True
    if not both:
        pr("nothing to compare")
        bad = True
    pr("RESULT: " + ("DIFFER" if bad else "EQUAL"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
