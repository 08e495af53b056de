#!/usr/bin/env python3
"""The retrieval-head NIAH grid (Wu et al. 2024) the way a Python user runs it: Hugging Face
transformers, greedy ``model.generate`` with ``output_attentions=True`` (eager attention), and the
official per-step score (``retrieval_calculate``: top-1 key of each head's current row inside the answer
span and holding the emitted token => + 1/|span|), on the SAME prompts as ``mechscope-cli retrieval``.

Protocol logic (grid, mechscope's prompt layout, answer span, scoring, ROUGE, JSONL, OOM handling) lives in
``niah_protocol.py``; this file adds the model back ends:

* ``--backend hf`` (default; GPU box): transformers. ``--mode generate`` (default) is the issue's baseline:
  one ``model.generate(..., output_attentions=True, return_dict_in_generate=True)``, whose prefill step
  returns every layer's full [heads, n, n] pattern, so it runs out of memory at long contexts (caught per
  test: ``torch.cuda.OutOfMemoryError``, recorded, then ``--on-oom``). ``--mode official`` is the official
  script's own loop: a prefill of n-1 tokens without attentions (``--prefill-attn sdpa`` or eager), then one
  forward per step with ``output_attentions=True`` on the KV cache.
* ``--backend ref`` (CPU, no transformers): the repo's pure-PyTorch forward (scripts/reference/common.py,
  Llama/Mistral/GPT-2, fp32), one full forward per step (no KV cache) — for checking this script against
  ``mechscope-cli retrieval`` here (tests/cli/niah_protocol.sh).

Tokenizer: ``--tokenizer hf`` (the ``tokenizers`` library on the folder's tokenizer.json, default when it
imports) or ``--tokenizer cli --cli build/bin/mechscope-cli`` (mechscope's own encoder + a decoder port).

Output: JSONL, a header line {"niah_hf_settings": {...}} then one record per test with mechscope's
tests.jsonl keys (needle, length, depth, n_tokens, needle_span, span_found, generated_ids, rouge1_recall,
success, inserted_at, stop_reason, head_scores [L][H], argmax [step][L][H], condition) plus seconds,
peak_memory_bytes, prompt_hash, logit_gap [step] and, with --record-gaps, argmax_gap [step][L][H]
(top-1 minus top-2 probability: how near a tie each head's choice was). A test that ran out of memory is
{"needle", "length", "depth", "n_tokens", "oom": true, "error", "seconds", "peak_memory_bytes"}.
``<out>.summary.json``: tests run / ok / OOM / skipped, the first OOM length, seconds per test (mean and
per length), peak memory, why the grid ended.

    python3 scripts/device/niah_grid_hf.py --model M --needles N.jsonl --haystack H.txt --lengths 1000:32000 \\
        --n-lengths 20 --depths 10 --no-stop --dtype bf16 --device cuda --out hf.tests.jsonl
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import niah_protocol as P  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def is_oom(e: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(e, oom)) or "out of memory" in str(e).lower()


def _top(row: torch.Tensor, want_gap: bool):
    """row [L, H, keys] -> top-1 index [L][H] (topk(1), as the official code) and optionally top-1 - top-2."""
    top1 = row.topk(1, dim=-1).indices[..., 0].tolist()
    gap = None
    if want_gap:
        if row.shape[-1] >= 2:
            v = row.topk(2, dim=-1).values.float()
            gap = (v[..., 0] - v[..., 1]).tolist()
        else:
            gap = [[float("inf")] * row.shape[1] for _ in range(row.shape[0])]
    return top1, gap


def _logit_gap(logits: torch.Tensor) -> float:
    v = logits.float().topk(2).values
    return float(v[0] - v[1])


# --------------------------------------------------------------------------------------------------
# back ends: run(ids, max_new_tokens, stop) -> [{"token", "top1", "gap"?, "logit_gap"}] per step


class HFBackend:
    def __init__(self, model_dir: str, device: str, dtype: str, mode: str, prefill_attn: str, want_gap: bool):
        import transformers  # noqa: PLC0415
        from transformers import AutoModelForCausalLM, GenerationConfig  # noqa: PLC0415

        self.mode, self.device, self.want_gap, self.prefill_attn = mode, device, want_gap, prefill_attn
        impl = "eager" if mode == "generate" else prefill_attn
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=DTYPES[dtype], attn_implementation=impl).to(device).eval()
        c = self.model.config
        c = getattr(c, "text_config", None) or c
        self.n_layers, self.n_heads = c.num_hidden_layers, c.num_attention_heads
        self.name = f"transformers {transformers.__version__}, torch {torch.__version__}, {mode}, {impl} attention" + (
            ", eager decode" if impl != "eager" else "")
        self._gc_cls = GenerationConfig

    def _set_attn(self, impl: str) -> None:
        if hasattr(self.model, "set_attn_implementation"):
            self.model.set_attn_implementation(impl)
        else:
            self.model.config._attn_implementation = impl

    @torch.no_grad()
    def run(self, ids: list[int], max_new_tokens: int, stop) -> list[dict]:
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        if self.mode == "generate":
            return self._generate(x, max_new_tokens)
        return self._official(x, max_new_tokens, stop)

    def _generate(self, x, n_new):
        # A fresh config: greedy, no EOS stop, no penalties from the model's generation_config.
        gcfg = self._gc_cls(do_sample=False, num_beams=1, max_new_tokens=n_new, eos_token_id=None, pad_token_id=0)
        self.model.generation_config = gcfg
        out = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x), generation_config=gcfg, output_attentions=True,
                                  output_logits=True, return_dict_in_generate=True, use_cache=True)
        n = x.shape[1]
        steps = []
        for s, layers in enumerate(out.attentions):  # per step: per layer [1, H, q, keys]
            if layers[0] is None:
                raise RuntimeError("generate returned no attention weights (not eager attention?)")
            row = torch.stack([a[0, :, -1, :] for a in layers])  # [L, H, keys]
            top1, gap = _top(row, self.want_gap)
            st = {"token": int(out.sequences[0, n + s]), "top1": top1, "logit_gap": _logit_gap(out.logits[s][0])}
            if gap is not None:
                st["gap"] = gap
            steps.append(st)
        del out
        return steps

    def _official(self, x, n_new, stop):
        past = None
        if x.shape[1] > 1:
            if self.prefill_attn != "eager":
                self._set_attn(self.prefill_attn)
            past = self.model(input_ids=x[:, :-1], use_cache=True).past_key_values
        self._set_attn("eager")
        inp = x[:, -1:]
        steps, gen = [], []
        for _ in range(n_new):
            o = self.model(input_ids=inp, past_key_values=past, use_cache=True, output_attentions=True)
            past = o.past_key_values
            if o.attentions is None or o.attentions[0] is None:
                raise RuntimeError("the decode step returned no attention weights")
            y = o.logits[0, -1].argmax()
            row = torch.stack([a[0, :, -1, :] for a in o.attentions])
            top1, gap = _top(row, self.want_gap)
            st = {"token": int(y), "top1": top1, "logit_gap": _logit_gap(o.logits[0, -1])}
            if gap is not None:
                st["gap"] = gap
            steps.append(st)
            gen.append(int(y))
            if stop(gen):
                break
            inp = y.view(1, 1)
        return steps


class PromptsBackend:
    """No model: the records hold the prompts only (n_tokens, needle_span, inserted_at, prompt_hash), to check
    that both sides build the same prompts before a long run, or on a tokenizer whose model is not ported."""

    name = "prompts only"
    n_layers = n_heads = 0

    def run(self, ids, max_new_tokens, stop):
        return None


class RefBackend:
    """scripts/reference/common.py's pure-PyTorch forward (fp32, CPU), a full forward per step."""

    def __init__(self, model_dir: str, want_gap: bool):
        sys.path.insert(0, os.path.join(HERE, "..", "reference"))
        import common  # noqa: PLC0415

        common.set_backend(False)
        self.common, self.model_dir, self.want_gap = common, model_dir, want_gap
        self.n_layers, self.n_heads = common.n_layers_heads(common.load_config(model_dir))
        self.name = f"scripts/reference pure-PyTorch forward (fp32, no KV cache), torch {torch.__version__}"

    @torch.no_grad()
    def run(self, ids: list[int], max_new_tokens: int, stop) -> list[dict]:
        seq, steps, gen = list(ids), [], []
        for _ in range(max_new_tokens):
            out = self.common.forward(self.model_dir, seq)
            logits = out["logits"][-1]
            y = int(logits.argmax())
            top1, gap = _top(out["attentions"][:, :, -1, :], self.want_gap)
            st = {"token": y, "top1": top1, "logit_gap": _logit_gap(logits)}
            if gap is not None:
                st["gap"] = gap
            steps.append(st)
            gen.append(y)
            seq.append(y)
            if stop(gen):
                break
        return steps


# --------------------------------------------------------------------------------------------------


def make_tokenizer(a):
    folder = a.tokenizer_dir or a.model
    if a.tokenizer == "cli" or (a.tokenizer == "auto" and not _has_tokenizers()):
        if not a.cli:
            raise SystemExit("no `tokenizers` library: give --tokenizer cli --cli PATH/TO/mechscope-cli")
        return P.CliTokenizer(folder, a.cli)
    return P.HFTokenizer(folder)


def _has_tokenizers() -> bool:
    try:
        import tokenizers  # noqa: F401, PLC0415

        return True
    except ImportError:
        return False


def settings_json(a, tok, backend, needles, hay_bytes: bytes, lengths, depths) -> dict:
    return {
        "model": os.path.abspath(a.model), "backend": backend.name, "mode": a.mode if a.backend == "hf" else "ref",
        "dtype": a.dtype if a.backend == "hf" else "fp32", "device": a.device if a.backend == "hf" else "cpu",
        "tokenizer": tok.name, "haystack_hash": P.fnv1a64_hex(hay_bytes), "needles": needles, "lengths": lengths, "depths": depths,
        "buffer": a.buffer, "question_template": a.question_template, "span_threshold": a.span_threshold / 100.0,
        "add_special_tokens": True, "max_new_tokens": a.max_new_tokens, "stop_on_newline": not a.no_stop,
        "stop_tokens": [] if a.no_stop else a.stop_token, "success_threshold": a.success_threshold / 100.0,
        "prompts_from": a.prompts_from,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model folder (config.json, model.safetensors, tokenizer.json)")
    ap.add_argument("--needles", default=os.path.join(HERE, "..", "..", "resources", "haystack", "needles.jsonl"))
    ap.add_argument("--haystack", default=os.path.join(HERE, "..", "..", "resources", "haystack", "devils_dictionary.txt"))
    ap.add_argument("--lengths", default="1000:50000", help="a:b for round(linspace(a, b, --n-lengths)) (mechscope's default)")
    ap.add_argument("--n-lengths", type=int, default=20)
    ap.add_argument("--depths", type=int, default=10, help="number of depths round(linspace(0, 100, N))")
    ap.add_argument("--buffer", type=int, default=200)
    ap.add_argument("--question-template", default=P.DEFAULT_TEMPLATE)
    ap.add_argument("--span-threshold", type=float, default=90.0, help="token-set overlap x 100 a window must exceed")
    ap.add_argument("--max-new-tokens", type=int, default=50)
    ap.add_argument("--stop-token", type=int, action="append", default=[])
    ap.add_argument("--no-stop", action="store_true", help="never stop early (as mechscope --no-stop)")
    ap.add_argument("--success-threshold", type=float, default=50.0)
    ap.add_argument("--backend", choices=["hf", "ref", "prompts"], default="hf",
                    help="hf: transformers; ref: the repo's pure-PyTorch port (CPU); prompts: no model, prompt records only")
    ap.add_argument("--mode", choices=["generate", "official"], default="generate",
                    help="hf: one model.generate with output_attentions (default), or the official prefill + per-step loop")
    ap.add_argument("--prefill-attn", choices=["sdpa", "eager"], default="sdpa", help="--mode official: attention of the prefill")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tokenizer", choices=["auto", "hf", "cli"], default="auto")
    ap.add_argument("--tokenizer-dir", help="folder of tokenizer.json (default: --model)")
    ap.add_argument("--cli", help="mechscope-cli, for --tokenizer cli")
    ap.add_argument("--prompts-from", help="take prompt ids from these records' \"prompt_ids\" (a mechscope tests.jsonl that records them)")
    ap.add_argument("--record-gaps", action="store_true", help="write argmax_gap [step][L][H] (top-1 - top-2 probability)")
    ap.add_argument("--on-oom", choices=["skip-longer", "continue", "stop"], default="skip-longer",
                    help="after a test runs out of memory: skip every test at that length or longer (default), try all, or stop")
    ap.add_argument("--deadline-s", type=float, default=0, help="start no test after this many seconds (0: no limit)")
    ap.add_argument("--max-tests", type=int, default=0, help="run at most this many tests (0: all)")
    ap.add_argument("--resume", action="store_true", help="keep the tests already in --out (same settings) and append")
    ap.add_argument("--out", required=True, help="per-test JSONL")
    a = ap.parse_args()
    t_start = time.time()

    tok = make_tokenizer(a)
    needles = P.read_needles(a.needles)
    with open(a.haystack, "rb") as f:
        hay_bytes = f.read()
    lengths, depths = P.grid_axes(P.parse_range(a.lengths), a.n_lengths, a.depths)
    layout = {"buffer": a.buffer, "question_template": a.question_template, "span_threshold": a.span_threshold / 100.0,
              "add_special_tokens": True}
    prompts_from = P.read_records(a.prompts_from)[1] if a.prompts_from else None
    hay = None if prompts_from is not None else P.Haystack(tok, hay_bytes.decode("utf-8"))

    t_load = time.time()
    if a.backend == "hf":
        backend = HFBackend(a.model, a.device, a.dtype, a.mode, a.prefill_attn, a.record_gaps)
    elif a.backend == "prompts":
        backend = PromptsBackend()
    else:
        backend = RefBackend(a.model, a.record_gaps)
    load_seconds = time.time() - t_load
    cuda = a.backend == "hf" and str(a.device).startswith("cuda")

    settings = settings_json(a, tok, backend, needles, hay_bytes, lengths, depths)
    settings["backend"] = backend.name
    done: dict = {}
    if a.resume and os.path.exists(a.out):
        old, done = P.read_records(a.out)
        old = old.get("niah_hf_settings", {})
        differ = sorted(k for k in set(old) | set(settings) if k not in ("backend", "tokenizer") and old.get(k) != settings.get(k))
        if differ:
            raise SystemExit(f"{a.out}: written with other settings ({', '.join(differ)}); drop --resume or delete it")
        fout = open(a.out, "a", encoding="utf-8")
    else:
        fout = open(a.out, "w", encoding="utf-8")
        fout.write(json.dumps({"niah_hf_settings": settings}) + "\n")
        fout.flush()

    success = a.success_threshold / 100.0
    stop_tokens = [] if a.no_stop else list(a.stop_token)
    decode_text = lambda ids: tok.decode(ids, True)  # noqa: E731
    rec_settings = {"stop_on_newline": not a.no_stop, "stop_tokens": stop_tokens, "success_threshold": success}

    def stop(gen):
        return P.stop_index(gen, decode_text, not a.no_stop, stop_tokens)[0] is not None

    total = len(needles) * len(lengths) * len(depths)
    oom_length = None  # the shortest length that ran out of memory
    summary = {"tests_total": total, "tests_run": 0, "tests_ok": 0, "tests_resumed": 0, "oom_tests": [], "skipped_after_oom": 0,
               "ended": "done"}
    for r in done.values():
        if r.get("oom"):
            oom_length = r["length"] if oom_length is None else min(oom_length, r["length"])
    index = 0
    for ni, needle in enumerate(needles):
        for length in lengths:
            for depth in depths:
                index += 1
                key = (ni, length, depth)
                if key in done:
                    summary["tests_resumed"] += 1
                    continue
                if oom_length is not None and length >= oom_length and a.on_oom == "skip-longer":
                    summary["skipped_after_oom"] += 1
                    continue
                if (a.deadline_s and time.time() - t_start > a.deadline_s) or (a.max_tests and summary["tests_run"] >= a.max_tests):
                    summary["ended"] = "deadline" if a.deadline_s and time.time() - t_start > a.deadline_s else "max_tests"
                    break
                if prompts_from is not None:
                    src = prompts_from.get(key)
                    if src is None or "prompt_ids" not in src:
                        raise SystemExit(f"{a.prompts_from}: no prompt_ids for needle {ni} length {length} depth {depth}")
                    prompt = {"ids": src["prompt_ids"], "span": tuple(src["needle_span"]) if src["needle_span"] else None,
                              "inserted_at": src.get("inserted_at", -1)}
                else:
                    prompt = P.build_needle_input(tok, hay, needle, length, depth, layout)
                n = len(prompt["ids"])
                summary["tests_run"] += 1
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.time()
                try:
                    steps = backend.run(prompt["ids"], a.max_new_tokens, stop)
                    if cuda:
                        torch.cuda.synchronize()
                    seconds = time.time() - t0
                    if steps is None:
                        rec = P.prompt_record(ni, length, depth, prompt)
                    else:
                        rec = P.test_record(ni, length, depth, prompt, steps, backend.n_layers, backend.n_heads, decode_text,
                                            needle["real_needle"], rec_settings)
                    rec["seconds"] = seconds
                    rec["peak_memory_bytes"] = torch.cuda.max_memory_allocated() if cuda else None
                    summary["tests_ok"] += 1
                    status = ("prompt only" if steps is None else
                              f"{len(rec['generated_ids'])} steps, rouge1 {rec['rouge1_recall']:.1f}, max score {max(map(max, rec['head_scores'])):.3f}")
                except Exception as e:  # noqa: BLE001 (out of memory is a result here)
                    if not is_oom(e):
                        raise
                    seconds = time.time() - t0
                    rec = {"needle": ni, "length": length, "depth": depth, "n_tokens": n, "oom": True, "condition": "main",
                           "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}", "seconds": seconds,
                           "peak_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None}
                    summary["oom_tests"].append([ni, length, depth, n])
                    oom_length = length if oom_length is None else min(oom_length, length)
                    status = "OUT OF MEMORY"
                if rec.get("oom"):  # outside the except block: its traceback no longer holds the tensors
                    steps = None
                    gc.collect()
                    if cuda:
                        torch.cuda.empty_cache()
                fout.write(json.dumps(rec) + "\n")
                fout.flush()
                mem = f", peak {rec['peak_memory_bytes'] / 2**30:.2f} GiB" if rec.get("peak_memory_bytes") else ""
                print(f"test {index}/{total} needle {ni} length {length} depth {depth}%: {n} tokens, {seconds:.2f} s{mem}, {status}",
                      flush=True)
                if rec.get("oom") and a.on_oom == "stop":
                    summary["ended"] = "oom"
                    break
            else:
                continue
            break
        else:
            continue
        break
    fout.close()

    _, recs = P.read_records(a.out)
    ok = [r for r in recs.values() if not r.get("oom")]
    by_len: dict = {}
    for r in ok:
        by_len.setdefault(r["length"], []).append(r)
    summary.update({
        "backend": backend.name, "load_seconds": load_seconds, "wall_seconds": time.time() - t_start, "oom_first_length": oom_length,
        "oom_first_tokens": min((r["n_tokens"] for r in recs.values() if r.get("oom")), default=None),
        "longest_ok_length": max(by_len, default=None),
        "seconds_per_test": sum(r.get("seconds", 0) for r in ok) / len(ok) if ok else None,
        "seconds_by_length": {str(k): sum(r.get("seconds", 0) for r in v) / len(v) for k, v in sorted(by_len.items())},
        "peak_memory_bytes_by_length": {str(k): max((r.get("peak_memory_bytes") or 0) for r in v) for k, v in sorted(by_len.items())},
        "peak_memory_bytes": max((r.get("peak_memory_bytes") or 0 for r in recs.values()), default=0),
    })
    with open(a.out + ".summary.json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    print(f"niah_grid_hf: {summary['tests_ok']} tests ok, {len(summary['oom_tests'])} out of memory (first at length "
          f"{oom_length}), {summary['skipped_after_oom']} skipped after it, {summary['tests_resumed']} resumed; "
          f"{summary['seconds_per_test'] or 0:.3f} s per test; ended: {summary['ended']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
