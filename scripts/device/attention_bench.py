#!/usr/bin/env python3
"""Hugging Face eager side of the attention-analysis benchmark (docs/benchmarks.md, issue 7).

Loads a model folder (the same random qwen3-0.6b-shaped bf16 weights mechscope uses) with
transformers, attn_implementation="eager", runs one forward with output_attentions=True on the same
token ids, and computes sink scores and head distances from the returned patterns (what a Python
tool does). Prints one JSON line: {"n", "ok", "seconds", "peak_bytes", "error"}. An OOM is reported,
not raised, so the driver can record the longest context that completes.

    python3 attention_bench.py MODEL_DIR IDS.json [--device cuda] [--impl sdpa]

--impl sdpa times the plain forward instead (attn_implementation="sdpa", no attentions, last-position
logits only): issue #24's yardstick for the attention analyses at 8K-128K, best of --reps after one warm-up.
"""
import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("ids")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--impl", choices=["eager", "sdpa"], default="eager")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM

    ids = json.load(open(a.ids))
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    n = len(ids)
    out = {"n": n, "ok": False, "seconds": None, "peak_bytes": None, "error": None}
    try:
        model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.bfloat16, attn_implementation=a.impl).to(a.device)
        model.eval()
        x = torch.tensor([ids], device=a.device)
        if a.impl == "sdpa":
            times = []
            with torch.no_grad():
                for rep in range(a.reps + 1):  # the first is the warm-up
                    torch.cuda.synchronize()
                    t0 = time.time()
                    model(x, use_cache=False, logits_to_keep=1)
                    torch.cuda.synchronize()
                    if rep > 0:
                        times.append(time.time() - t0)
            out.update(ok=True, seconds=min(times), peak_bytes=torch.cuda.max_memory_allocated(), impl="sdpa")
            print(json.dumps(out))
            return
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.time()
        with torch.no_grad():
            r = model(x, output_attentions=True, use_cache=False)
            sink = [att[0, :, 1:, 0].float().mean(-1) for att in r.attentions]  # [head] per layer
            pos = torch.arange(n, device=a.device, dtype=torch.float32)
            dist = [(att[0].float() * (pos[:, None] - pos[None, :]).clamp_min(0)).sum(-1).mean(-1) for att in r.attentions]
            _ = torch.stack(sink).cpu(), torch.stack(dist).cpu()
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
            out["peak_bytes"] = torch.cuda.max_memory_allocated()
        out["seconds"] = time.time() - t0
        out["ok"] = True
    except Exception as e:  # noqa: BLE001 (OOM and friends are results here)
        out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
