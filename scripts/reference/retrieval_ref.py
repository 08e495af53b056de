"""Reference port: the per-step copy-paste retrieval score (Wu et al. 2024, arXiv 2404.15574) of one
needle prompt under greedy decoding, after the protocol of the official detection script
(nightdessert/Retrieval_Head, retrieval_head_detection.py: find_needle_idx, decode,
retrieval_calculate), re-implemented here from its description:

* prompt = the reference row cut before its answer (it ends with "...\\nAnswer:");
* answer span = find_needle_idx: the first window of |answer| prompt tokens whose token SET covers more
  than 90 % of the answer's token set (|set(window) ∩ set(answer)| / |set(answer)| > 0.9); the answer
  tokens are reference.json's answer_ids without the final newline (what real_needle encodes to);
* greedy decoding, at most 50 steps; at each step the token y = argmax of the logits of the current
  query, and for every layer and head the argmax key j* of that query's attention row (over prompt and
  generated tokens); if span_start ≤ j* < span_end and ids[j*] == y, the head gains 1/|span|;
  decoding stops after the step that emits the newline token (<0x0A>, id 13) — that step is scored;
* the score of this single test (no ROUGE filter: one test, the C++ with --no-success-filter).

gpt2-ioi (byte-level BPE, no needle task): its IOI row is the test — the prompt contains the answer (the
indirect object's name, one token), run with --max-new-tokens 1 --stop-token 198 (GPT-2's "\n").

Each step is a full forward over prompt + generated tokens (no KV cache), so the rows are the eager
attention probabilities of the same computation.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def find_span(prompt, answer, thr=0.9):
    m = len(answer)
    aset = set(answer)
    for i in range(len(prompt) - m + 1):
        if len(set(prompt[i : i + m]) & aset) / len(aset) > thr:
            return i, i + m
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.common_arguments(ap)
    ap.add_argument("--max-new-tokens", type=int, default=50)
    ap.add_argument("--stop-token", type=int, default=13, help="the newline token (<0x0A> in Llama-2's vocabulary)")
    a = ap.parse_args()
    common.set_backend(not a.no_transformers)
    L, H = common.n_layers_heads(common.load_config(a.model))
    rows = common.reference_rows(a.model)
    meta = common.reference_meta(a.model)["rows"]
    tests = []
    if "needle_start" not in meta[0]:
        # A byte-level BPE model without a needle task (gpt2-ioi): the IOI row is a one-token retrieval
        # test: the prompt holds the answer (the indirect object's name) and the model must copy it.
        rows, meta = [rows[1]], [dict(meta[1], answer_start=len(rows[1]), answer_ids=[meta[1]["answer_id"]])]
    for ids, m in zip(rows, meta):
        prompt = ids[: m["answer_start"]]
        answer = m["answer_ids"][:-1] if m["answer_ids"][-1] == a.stop_token else m["answer_ids"]
        span = find_span(prompt, answer)
        assert span is not None, "no answer span in the prompt"
        s0, s1 = span
        seq = list(prompt)
        score = torch.zeros(L, H, dtype=torch.float64)
        argmax, gen, att_gap, logit_gap = [], [], float("inf"), float("inf")
        stop = "max_new_tokens"
        for _ in range(a.max_new_tokens):
            out = common.forward(a.model, seq)
            logits = out["logits"][-1].double()
            top2 = logits.topk(2).values
            logit_gap = min(logit_gap, (top2[0] - top2[1]).item())
            y = int(logits.argmax().item())
            row = out["attentions"][:, :, -1, :].double()  # [L, H, keys]
            t2 = row.topk(2, dim=-1)
            att_gap = min(att_gap, (t2.values[..., 0] - t2.values[..., 1]).min().item())
            j = t2.indices[..., 0]  # [L, H]
            argmax.append(j.tolist())
            for l in range(L):
                for h in range(H):
                    jj = int(j[l, h])
                    if s0 <= jj < s1 and seq[jj] == y:
                        score[l, h] += 1.0 / (s1 - s0)
            gen.append(y)
            seq.append(y)
            if y == a.stop_token:
                stop = "stop_token"
                break
        tests.append({"ids": prompt, "needle_span": [s0, s1], "answer_ids": answer, "generated_ids": gen,
                      "stop_reason": stop, "retrieval_score": score.tolist(), "argmax": argmax,
                      "margins": {"attention_top2_gap": att_gap, "logit_top2_gap": logit_gap}})
        top = sorted(((score[l, h].item(), l, h) for l in range(L) for h in range(H)), reverse=True)[:4]
        print(f"retrieval {os.path.basename(a.model.rstrip('/'))}: span={span} gen={gen} expected={m['answer_ids']} stop={stop} "
              f"top={[(l, h, round(s, 3)) for s, l, h in top]} gaps att={att_gap:.3g} logit={logit_gap:.3g}")
    common.write_json(a.out, {
        "analysis": "retrieval",
        "provenance": common.provenance(a.model, {"max_new_tokens": a.max_new_tokens, "stop_tokens": [a.stop_token],
                                                   "span_threshold": 0.9, "success_filter": False}),
        "n_layers": L, "n_heads": H, "tests": tests,
    })


if __name__ == "__main__":
    main()
