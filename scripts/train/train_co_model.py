#!/usr/bin/env python3
"""Trains gpt2-co: a small GPT-2 (4 layers x 4 heads) that solves Colored Objects (Merullo et al. 2023) with
the real GPT-2 tokenizer, and writes it as a Hugging Face folder with a parity reference.

Why a separate script (train_tiny_models.py's gpt2-ioi stays at chance on Colored Objects, 0.33):
  * gpt2-ioi's step was ~50 ms because it computed full-vocabulary (50,257) fp32 logits at every position
    of every row (256 x ~70 x 50k) to put a 0.1 weight on the prompt tokens, and tokenized text on the
    fly; in 200 s it made ~4,000 steps. Here every Colored Objects prompt has a FIXED token layout (all
    17 objects, 8 colours, 3 surfaces and both words of the 3 openers are single GPT-2 tokens; "a"/"an"
    are one token each), so batches are built directly as token ids with numpy (checked against the
    tokenizer and mechscope's dataset), and logits are computed only at the answer positions
    (hidden[answer - 1] @ wte^T over the full vocabulary): ~18 ms a step with four variants sharing one
    H200 (45-75 ms with eight), against gpt2-ioi's ~50 ms alone.
  * The task needs a three-hop circuit (colour -> object position by a previous-token head; the asked
    object -> END; a head at END whose query matches the list object by token identity and copies its
    colour). None of the three pieces lowers the loss alone (IOI, by contrast, has one-hop shortcuts), so
    the model sits on the "one of the three listed colours" plateau (answer CE ln 3 = 1.10) until the pieces
    form together. With the task loss alone the escape is seed- and lr-dependent (d 96, 8 runs of 400 s: two
    reached 1.0 after 10k-14k steps, one 0.98 (a 0-shot-first curriculum), one 0.64, four stayed at
    chance, <= 0.37). --aux-weight adds two linear
    "scaffolding" probes during training (discarded afterwards): the colour of each listed object read
    from the residual after block 0 at that object, and the asked object read after block 1 at the position
    that predicts the answer. Each makes one piece useful on its own; with them every run (4 of 4) solved
    the task within 500-2,000 steps. The shipped gpt2-co is such a run (see tests/data/trained/README.md).
  * Every answer in a row is a target (the shots' answers too, not only the query's), and rows have 0-3
    shots, so the model also learns to use the LAST list (in mechscope's 1-shot prompts the asked object is
    also in the shot's list in ~18 % of prompts, with another colour).

Data (the format of analysis/common/datasets.cpp coloredObjectsDataset and train_tiny_models.gen_co):
  BOS <|endoftext|> + k solved shots "Q: On the {surface}, {start} a {c} {o}, a {c} {o}, and a {c} {o}.
  What color is the {o}?\\nA: {c}\\n" + the query "Q: ... What color is the {o}?\\nA:" + " {c}", answers
  lower-case (the colour's own token). Examples whose (colours, objects, asked index) equal any example of
  the held-out sets (1,000 generated 1-shot prompts and tests/data/trained/references/co_dataset.jsonl) are
  never trained on.

Run (GPU box): scripts/train/run_co_on_device.sh; one variant:
  python3 scripts/train/train_co_model.py --out DIR --tokenizer tests/data/trained/gpt2-ioi/tokenizer.json
CPU check (no transformers / safetensors / tokenizers needed): --smoke (a few steps, writes the folder
with a hand-written safetensors and checks the forward against scripts/reference/hooked_gpt2.py), or
--compact-vocab (train on the ~45 used tokens only, for exploring recipes on a CPU; never shipped).
"""
import argparse
import json
import math
import os
import re
import shutil
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from train_tiny_models import CO_COLOURS, CO_OBJECTS, CO_STARTS, CO_SURFACES, co_example  # noqa: E402

T0 = time.time()
BOS = 50256
DATASET = os.path.join(REPO, "tests", "data", "trained", "references", "co_dataset.jsonl")


def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)


# ----------------------------------------------------------------------------------------------------
# Token-level Colored Objects generator
# ----------------------------------------------------------------------------------------------------
class CoTokens:
    """Every CO example is 30 tokens (+ answer + newline for a shot); ids from tokenizer.json's vocab."""

    def __init__(self, tokenizer_json):
        vocab = json.load(open(tokenizer_json, encoding="utf-8"))["model"]["vocab"]

        def tid(s):
            k = s.replace(" ", "\u0120").replace("\n", "\u010a")
            if k not in vocab:
                raise SystemExit(f"{s!r} is not a single GPT-2 token")
            return vocab[k]

        self.tid = tid
        self.col = np.array([tid(" " + c) for c in CO_COLOURS])
        self.obj = np.array([tid(" " + o) for o in CO_OBJECTS])
        self.surf = np.array([tid(" " + s) for s in CO_SURFACES])
        self.start = np.array([[tid(" " + w) for w in s.split()] for s in CO_STARTS])
        self.art = np.array([tid(" an") if c[0] == "o" else tid(" a") for c in CO_COLOURS])
        words = ["Q", ":", " On", " the", None, ",", None, None, None, None, None, ",", None, None, None, ",", " and",
                 None, None, None, ".", " What", " color", " is", " the", None, "?", "\n", "A", ":"]
        self.tpl = np.array([tid(w) if w else -1 for w in words])
        self.nl = tid("\n")
        self.used = sorted(set(self.col) | set(self.obj) | set(self.surf) | set(self.start.ravel()) | set(self.art)
                           | set(int(x) for x in self.tpl if x >= 0) | {BOS})

    def examples(self, rng, n):
        """n random examples: dict of arrays (colour idx [n,3], object idx [n,3], q [n], surface, start)."""
        return dict(c=np.argsort(rng.random((n, len(CO_COLOURS))), 1)[:, :3],
                    o=np.argsort(rng.random((n, len(CO_OBJECTS))), 1)[:, :3],
                    q=rng.integers(0, 3, n), s=rng.integers(0, 3, n), st=rng.integers(0, 3, n))

    @staticmethod
    def keys(e):
        c, o = e["c"], e["o"]
        return ((((c[:, 0] * 8 + c[:, 1]) * 8 + c[:, 2]) * 17 + o[:, 0]) * 17 + o[:, 1]) * 17 * 17 * 3 + o[:, 2] * 3 + e["q"]

    def render(self, e, answered):
        """[n, 30] (or [n, 32] with ' {answer}\\n') token ids."""
        n = len(e["q"])
        x = np.tile(self.tpl, (n, 1))
        x[:, 4] = self.surf[e["s"]]
        x[:, 6:8] = self.start[e["st"]]
        for i, p in enumerate((8, 12, 17)):
            x[:, p] = self.art[e["c"][:, i]]
            x[:, p + 1] = self.col[e["c"][:, i]]
            x[:, p + 2] = self.obj[e["o"][:, i]]
        ans = self.col[e["c"][np.arange(n), e["q"]]]
        x[:, 25] = self.obj[e["o"][np.arange(n), e["q"]]]
        if answered:
            x = np.concatenate([x, ans[:, None], np.full((n, 1), self.nl)], 1)
        return x, ans

    def text(self, e, i, answered):
        c = [CO_COLOURS[j] for j in e["c"][i]]
        o = [CO_OBJECTS[j] for j in e["o"][i]]
        t = co_example(c, o, CO_SURFACES[e["s"][i]], CO_STARTS[e["st"][i]], int(e["q"][i]))
        return t + (" " + c[e["q"][i]] + "\n" if answered else "")

    def rows(self, rng, n, shots, held=None):
        """n rows of BOS + `shots` solved shots + a query + its answer. Returns ids [n, 1 + 32 k + 31],
        target positions (the answers' indices, shots' and query's), the query's answer and one other listed
        colour (the query's 'incorrect', chosen as mechscope does), and the examples."""
        parts, exs = [np.full((n, 1), BOS)], []
        for j in range(shots + 1):
            e = self.examples(rng, n)
            if held is not None:
                for _ in range(100):
                    bad = np.isin(self.keys(e), held)
                    if not bad.any():
                        break
                    e2 = self.examples(rng, int(bad.sum()))
                    for k in e:
                        e[k][bad] = e2[k]
            exs.append(e)
            x, ans = self.render(e, answered=True)
            parts.append(x if j < shots else x[:, :31])
        ids = np.concatenate(parts, 1)
        targets = np.array([1 + 32 * j + 30 for j in range(shots + 1)])
        e = exs[-1]
        other = (e["q"] + 1 + rng.integers(0, 2, n)) % 3
        inc = self.col[e["c"][np.arange(n), other]]
        return ids, targets, ids[:, targets[-1]], inc, exs


def parse_dataset(path, ct):
    """mechscope's co_dataset.jsonl -> rows (clean ids, answer, incorrect, corrupted ids) and the
    (colours, objects, asked) keys of every example in it (held out from training)."""
    pat = re.compile(r"Q: On the (\w+), (there is|you see|I see) an? (\w+) (\w+), an? (\w+) (\w+), and an? (\w+) (\w+)\. "
                     r"What color is the (\w+)\?\nA:")
    rows, keys = [], []
    for line in open(path):
        d = json.loads(line)
        rows.append(d)
        for m in pat.finditer(d["clean"]):
            g = m.groups()
            c = [CO_COLOURS.index(g[2]), CO_COLOURS.index(g[4]), CO_COLOURS.index(g[6])]
            o = [CO_OBJECTS.index(g[3]), CO_OBJECTS.index(g[5]), CO_OBJECTS.index(g[7])]
            e = dict(c=np.array([c]), o=np.array([o]), q=np.array([o.index(CO_OBJECTS.index(g[8]))]))
            keys.append(int(CoTokens.keys(e)[0]))
    return rows, keys


# ----------------------------------------------------------------------------------------------------
# A GPT-2 with transformers' GPT2LMHeadModel parameter names and layout (Conv1D weights [in, out])
# ----------------------------------------------------------------------------------------------------
class Block(torch.nn.Module):
    def __init__(self, d, ffn):
        super().__init__()
        self.ln_1 = torch.nn.LayerNorm(d, eps=1e-5)
        self.attn = torch.nn.Module()
        self.attn.c_attn = Conv1D(d, 3 * d)
        self.attn.c_proj = Conv1D(d, d)
        self.ln_2 = torch.nn.LayerNorm(d, eps=1e-5)
        self.mlp = torch.nn.Module()
        self.mlp.c_fc = Conv1D(d, ffn)
        self.mlp.c_proj = Conv1D(ffn, d)


class Conv1D(torch.nn.Module):
    def __init__(self, nin, nout):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(nin, nout))
        self.bias = torch.nn.Parameter(torch.zeros(nout))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class MiniGPT2(torch.nn.Module):
    def __init__(self, vocab, d, layers, heads, ffn, max_pos):
        super().__init__()
        self.H, self.d = heads, d
        self.transformer = torch.nn.Module()
        self.transformer.wte = torch.nn.Embedding(vocab, d)
        self.transformer.wpe = torch.nn.Embedding(max_pos, d)
        self.transformer.h = torch.nn.ModuleList([Block(d, ffn) for _ in range(layers)])
        self.transformer.ln_f = torch.nn.LayerNorm(d, eps=1e-5)
        # transformers' GPT-2 initialisation
        for n, p in self.named_parameters():
            if n.endswith("ln_1.weight") or n.endswith("ln_2.weight") or n.endswith("ln_f.weight"):
                torch.nn.init.ones_(p)
            elif n.endswith("bias"):
                torch.nn.init.zeros_(p)
            elif n.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers))
            else:
                torch.nn.init.normal_(p, 0.0, 0.02)

    def hidden(self, ids, taps=None):
        """ln_f output [B, T, d]; with taps (a dict {n: None}), taps[n] = the residual after n blocks."""
        B, T = ids.shape
        t = self.transformer
        x = t.wte(ids) + t.wpe(torch.arange(T, device=ids.device))
        for i, b in enumerate(t.h):
            if taps is not None and i in taps:
                taps[i] = x
            qkv = b.attn.c_attn(b.ln_1(x)).view(B, T, 3, self.H, -1).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            if hasattr(F, "scaled_dot_product_attention"):
                z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
                m = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                z = s.masked_fill(~m, float("-inf")).softmax(-1) @ v
            x = x + b.attn.c_proj(z.transpose(1, 2).reshape(B, T, self.d))
            x = x + b.mlp.c_proj(F.gelu(b.mlp.c_fc(b.ln_2(x)), approximate="tanh"))
        if taps is not None and len(t.h) in taps:
            taps[len(t.h)] = x
        return t.ln_f(x)

    def unembed(self, h):
        return h @ self.transformer.wte.weight.T


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def last_logits_fn(model, device, remap=None, hf=False):
    def f(ids):
        out = []
        for i in range(0, len(ids), 250):
            x = torch.as_tensor(np.asarray(ids[i:i + 250]), dtype=torch.int64)
            if remap is not None:
                x = remap[x]
            x = x.to(device)
            if hf:
                out.append(model(input_ids=x, use_cache=False).logits[:, -1].float().cpu())
            else:
                out.append(model.unembed(model.hidden(x)[:, -1].float()).cpu())
        return torch.cat(out)
    return f


def score(f, ids, ans, inc, others=None, remap=None):
    """top-1 accuracy (full vocabulary), mean logit[answer] - logit[incorrect], and (with others [n, 2])
    the fraction whose answer beats both other listed colours."""
    lg = f(ids)
    ans_t, inc_t = torch.as_tensor(np.asarray(ans)), torch.as_tensor(np.asarray(inc))
    if remap is not None:
        ans_t, inc_t = remap[ans_t], remap[inc_t]
    r = torch.arange(len(lg))
    top1 = (lg.argmax(-1) == ans_t).float().mean().item()
    ld = (lg[r, ans_t] - lg[r, inc_t])
    res = dict(top1=round(top1, 4), mean_logit_diff=round(ld.mean().item(), 4), min_logit_diff=round(ld.min().item(), 4))
    if others is not None:
        o = torch.as_tensor(np.asarray(others))
        if remap is not None:
            o = remap[o]
        res["answer_beats_both_other_colours"] = round((lg[r, ans_t][:, None] > lg[r[:, None], o]).all(1).float().mean().item(), 4)
    return res


def evaluate(f, ct, eval_set, ds_rows, remap=None):
    ids, ans, inc, others = eval_set
    acc = {"generated_1shot_1000": score(f, ids, ans, inc, others, remap)}
    clean = [d["clean_ids"] for d in ds_rows]
    corr = [d["corrupted_ids"] for d in ds_rows]
    a = [d["answer_id"] for d in ds_rows]
    b = [d["incorrect_id"] for d in ds_rows]
    acc["co_dataset_40_clean"] = score(f, clean, a, b, remap=remap)
    # corrupted prompt asks for the 'incorrect' object's colour: its answer is `incorrect`
    acc["co_dataset_40_corrupted_answer_is_incorrect"] = score(f, corr, b, a, remap=remap)
    return acc


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------
def parse_shots(s):
    out = []
    for part in s.split(","):
        k, p = part.split(":")
        out.append((int(k), float(p)))
    tot = sum(p for _, p in out)
    return [k for k, _ in out], np.array([p / tot for _, p in out])


def train(model, ct, args, device, held, remap, eval_fn):
    # optional scaffolding probes (discarded after training): a linear read-out of each listed object's
    # colour from the residual after --aux-colour-after blocks at that object's position, and of the asked
    # object from the residual after --aux-object-after blocks at the position that predicts the answer.
    # Each makes one piece of the three-hop circuit useful on its own.
    d = model.d
    probe_c = torch.nn.Linear(d, len(CO_COLOURS)).to(device)
    probe_o = torch.nn.Linear(d, len(CO_OBJECTS)).to(device)
    use_aux = args.aux_weight > 0
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    if use_aux:
        no_decay += list(probe_c.parameters()) + list(probe_o.parameters())
    kw = dict(fused=True) if device.type == "cuda" else {}
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, args.beta2), eps=1e-8, **kw)
    ks, ps = parse_shots(args.shots)
    k0, p0 = parse_shots(args.early_shots) if args.early_shots else (ks, ps)
    rng = np.random.default_rng(args.seed)
    t_start = time.time()
    hist, evals = [], []
    acc_loss, n_acc, step = 0.0, 0, 0
    model.train()
    cap = args.time_cap
    for step in range(1, args.max_steps + 1):
        el = time.time() - t_start
        if el > cap:
            step -= 1
            break
        frac = min(1.0, max(step / args.max_steps, el / cap))
        lr = args.lr * min(1.0, step / args.warmup) * (args.lr_floor + (1 - args.lr_floor) * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        early = frac < args.early_frac
        kk, pp = (k0, p0) if early else (ks, ps)
        k = int(rng.choice(kk, p=pp))
        T = 1 + 32 * k + 31
        B = max(8, args.tokens_per_step // T)
        ids, targets, _, _, exs = ct.rows(rng, B, k, held)
        x = torch.from_numpy(ids).to(device, non_blocking=True)
        if remap is not None:
            x = remap[x]
        tg = torch.from_numpy(targets).to(device)
        aw = args.aux_weight * (1.0 if frac < args.aux_until else 0.0) if use_aux else 0.0
        taps = {args.aux_colour_after: None, args.aux_object_after: None} if aw > 0 else None
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            h = model.hidden(x, taps)
        hs = h[:, tg - 1].float()  # [B, k+1, d]
        lg = model.unembed(hs)
        ce = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), x[:, tg].reshape(-1), reduction="none").view(B, -1)
        w = torch.ones(ce.shape[1], device=device)
        w[-1] = args.query_weight
        loss = (ce * w).sum() / (B * w.sum())
        if aw > 0:
            opos = torch.tensor([1 + 32 * j + p for j in range(k + 1) for p in (10, 14, 19)], device=device)
            ocol = torch.from_numpy(np.stack([e["c"][:, i] for e in exs for i in range(3)], 1)).to(device)
            rc = F.layer_norm(taps[args.aux_colour_after][:, opos].float(), (d,))
            l_c = F.cross_entropy(probe_c(rc).reshape(-1, len(CO_COLOURS)), ocol.reshape(-1))
            asked = torch.from_numpy(np.stack([e["o"][np.arange(B), e["q"]] for e in exs], 1)).to(device)
            ro = F.layer_norm(taps[args.aux_object_after][:, tg - 1].float(), (d,))
            l_o = F.cross_entropy(probe_o(ro).reshape(-1, len(CO_OBJECTS)), asked.reshape(-1))
            loss = loss + aw * (l_c + l_o)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        acc_loss += loss.detach()
        n_acc += 1
        if step % args.log_every == 0 or step == 1:
            v = float(acc_loss / n_acc)
            hist.append((step, round(time.time() - t_start, 1), round(v, 5)))
            extra = f" aux colour {float(l_c):.3f} object {float(l_o):.3f}" if aw > 0 else ""
            log(f"step {step} k {k} loss {v:.4f} (last answer CE {float(ce.mean()):.4f}){extra} lr {lr:.2e} "
                f"({(time.time() - t_start) / step * 1000:.1f} ms/step)")
            acc_loss, n_acc = 0.0, 0
        if args.eval_every and step % args.eval_every == 0:
            model.eval()
            r = eval_fn()
            model.train()
            evals.append((step, round(time.time() - t_start, 1), r))
            log(f"eval step {step}: {json.dumps(r)}")
    if n_acc:
        hist.append((step, round(time.time() - t_start, 1), round(float(acc_loss / n_acc), 5)))
    model.eval()
    return dict(steps=step, train_seconds=round(time.time() - t_start, 1), loss_history=hist, evals=evals,
                final_loss=hist[-1][2] if hist else None)


# ----------------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------------
def write_safetensors(tensors, path):
    """Minimal safetensors writer (bf16 / f32 / i64), for machines without the safetensors package."""
    names = {torch.bfloat16: "BF16", torch.float32: "F32", torch.int64: "I64"}
    header, blobs, off = {}, [], 0
    for k, v in tensors.items():
        v = v.detach().contiguous().cpu()
        raw = (v.view(torch.int16) if v.dtype == torch.bfloat16 else v).numpy().tobytes()
        header[k] = {"dtype": names[v.dtype], "shape": list(v.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def hf_config(args, vocab):
    return dict(activation_function="gelu_new", architectures=["GPT2LMHeadModel"], attn_pdrop=0.0, bos_token_id=BOS,
                dtype="bfloat16", embd_pdrop=0.0, eos_token_id=BOS, initializer_range=0.02, layer_norm_epsilon=1e-05,
                model_type="gpt2", n_embd=args.d, n_head=args.heads, n_inner=args.ffn, n_layer=args.layers,
                n_positions=args.max_pos, resid_pdrop=0.0, scale_attn_by_inverse_layer_idx=False,
                scale_attn_weights=True, tie_word_embeddings=True, vocab_size=vocab)


def save_folder(model, args, folder):
    """Writes config.json + model.safetensors (bf16, tied: no lm_head.weight) + tokenizer.json; with
    transformers (not --smoke) through GPT2LMHeadModel.save_pretrained after checking its logits equal
    ours. Returns the model to evaluate: the saved folder loaded back (eager attention, fp32)."""
    os.makedirs(folder, exist_ok=True)
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    shutil.copy(args.tokenizer, os.path.join(folder, "tokenizer.json"))
    if args.smoke:
        json.dump(hf_config(args, model.transformer.wte.weight.shape[0]), open(os.path.join(folder, "config.json"), "w"), indent=2)
        write_safetensors({k: v.to(torch.bfloat16) for k, v in sd.items()}, os.path.join(folder, "model.safetensors"))
        m = MiniGPT2(model.transformer.wte.weight.shape[0], args.d, args.layers, args.heads, args.ffn, args.max_pos)
        m.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in sd.items()})
        return m.eval(), False
    import transformers as T
    from safetensors import safe_open
    from safetensors.torch import save_file
    c = hf_config(args, 50257)
    cfg = T.GPT2Config(**{k: v for k, v in c.items() if k not in ("architectures", "dtype", "model_type")})
    hf = T.GPT2LMHeadModel(cfg)
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert all(k == "lm_head.weight" or k.endswith(".attn.bias") or k.endswith(".attn.masked_bias") for k in missing), missing
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr(), "lm_head not tied"
    hf.eval()
    x = torch.from_numpy(CoTokens(args.tokenizer).rows(np.random.default_rng(5), 8, 1)[0])
    with torch.no_grad():
        a = hf(input_ids=x).logits
        mm = MiniGPT2(50257, args.d, args.layers, args.heads, args.ffn, args.max_pos)
        mm.load_state_dict(sd)
        b = mm.eval().unembed(mm.hidden(x))
    err = (a - b).abs().max().item()
    log(f"transformers GPT2LMHeadModel vs our forward (fp32): max |logit error| {err:.2e}")
    assert err < 1e-3, err
    hf = hf.to(torch.bfloat16)
    hf.save_pretrained(folder)
    st = os.path.join(folder, "model.safetensors")
    with safe_open(st, framework="pt") as f:
        keys, meta = list(f.keys()), f.metadata()
        tensors = {k: f.get_tensor(k) for k in keys if k != "lm_head.weight"}
    if "lm_head.weight" in keys:
        save_file(tensors, st, metadata=meta or {"format": "pt"})
        log("removed the tied lm_head.weight copy from model.safetensors")
    m2 = T.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").float().eval()
    assert m2.config._attn_implementation == "eager"
    log(f"saved {folder}: {sorted(os.listdir(folder))}")
    return m2, True


@torch.no_grad()
def write_reference_any(model, hf, rows, folder, extra_json):
    """As train_tiny_models.write_reference (eager, fp32, CPU): input_ids, lengths, last_logits,
    hidden_states [L+1, 2, T, d] (HF order, the last after ln_f), attentions [L, 2, H, T, T]."""
    T = max(len(r[0]) for r in rows)
    ids = torch.tensor([r[0] for r in rows], dtype=torch.int64)
    lengths = torch.tensor([r[1] for r in rows], dtype=torch.int64)
    if hf:
        o = model(input_ids=ids, output_hidden_states=True, output_attentions=True, use_cache=False)
        hs, at, lg = torch.stack(o.hidden_states), torch.stack(o.attentions), o.logits
    else:  # smoke: our forward with an explicit softmax, to have attentions
        t = model.transformer
        x = t.wte(ids) + t.wpe(torch.arange(T))
        hsl, atl = [x], []
        m = torch.ones(T, T, dtype=torch.bool).tril()
        for b in t.h:
            qkv = b.attn.c_attn(b.ln_1(x)).view(len(rows), T, 3, model.H, -1).permute(2, 0, 3, 1, 4)
            s = (qkv[0] @ qkv[1].transpose(-1, -2)) / math.sqrt(qkv.shape[-1])
            a = s.masked_fill(~m, float("-inf")).softmax(-1)
            atl.append(a)
            x = x + b.attn.c_proj((a @ qkv[2]).transpose(1, 2).reshape(len(rows), T, model.d))
            x = x + b.mlp.c_proj(F.gelu(b.mlp.c_fc(b.ln_2(x)), approximate="tanh"))
            hsl.append(x)
        hsl[-1] = t.ln_f(x)
        hs, at = torch.stack(hsl), torch.stack(atl)
        lg = model.unembed(hsl[-1])
    last = torch.stack([lg[i, lengths[i] - 1] for i in range(len(rows))]).float()
    t = {"input_ids": ids.contiguous(), "lengths": lengths, "last_logits": last.contiguous(),
         "hidden_states": hs.float().contiguous(), "attentions": at.float().contiguous()}
    if hf:
        from safetensors.torch import save_file
        save_file(t, os.path.join(folder, "reference.safetensors"))
    else:
        write_safetensors(t, os.path.join(folder, "reference.safetensors"))
    json.dump(extra_json, open(os.path.join(folder, "reference.json"), "w"), indent=1, ensure_ascii=False)
    log("reference", {k: tuple(v.shape) for k, v in t.items()})


# ----------------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="writes OUT/gpt2-co/ (or OUT/<--name>/)")
    ap.add_argument("--name", default="gpt2-co")
    ap.add_argument("--tokenizer", default=os.path.join(REPO, "tests", "data", "trained", "gpt2-ioi", "tokenizer.json"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--d", type=int, default=96)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=384)
    ap.add_argument("--max-pos", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-floor", type=float, default=0.1, help="cosine decays to this fraction of --lr")
    ap.add_argument("--beta2", type=float, default=0.98)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--tokens-per-step", type=int, default=32768)
    ap.add_argument("--shots", default="0:0.25,1:0.35,2:0.25,3:0.15", help="K:P,... shots per row and their probabilities")
    ap.add_argument("--early-shots", default="", help="the shot mix for the first --early-frac of training")
    ap.add_argument("--early-frac", type=float, default=0.0)
    ap.add_argument("--query-weight", type=float, default=1.0, help="loss weight of the query's answer (shots' answers: 1)")
    ap.add_argument("--aux-weight", type=float, default=0.0, help="weight of the two scaffolding probes (0: none)")
    ap.add_argument("--aux-colour-after", type=int, default=1, help="colour probe on the residual after this many blocks")
    ap.add_argument("--aux-object-after", type=int, default=2, help="asked-object probe on the residual after this many blocks")
    ap.add_argument("--aux-until", type=float, default=1.0, help="probes on for this fraction of training")
    ap.add_argument("--max-steps", type=int, default=1_000_000)
    ap.add_argument("--time-cap", type=float, default=300)
    ap.add_argument("--log-every", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="CPU: a few steps, hand-written safetensors, hooked_gpt2 check")
    ap.add_argument("--compact-vocab", action="store_true", help="CPU exploration: embed only the used tokens")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and not (args.smoke or args.compact_vocab) else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    log(f"{args.name} on {device}, torch {torch.__version__}; {vars(args)}")
    ct = CoTokens(args.tokenizer)

    # the generator against mechscope's dataset (same ids for the same text) and, where available, the tokenizer
    ds_rows, ds_keys = parse_dataset(DATASET, ct)
    pat = re.compile(r"Q: On the (\w+), (there is|you see|I see) an? (\w+) (\w+), an? (\w+) (\w+), and an? (\w+) (\w+)\. "
                     r"What color is the (\w+)\?\nA:")
    for d in ds_rows:
        ids = [BOS]
        for j, m in enumerate(pat.finditer(d["clean"])):
            g = m.groups()
            e = dict(c=np.array([[CO_COLOURS.index(g[i]) for i in (2, 4, 6)]]),
                     o=np.array([[CO_OBJECTS.index(g[i]) for i in (3, 5, 7)]]),
                     q=np.array([[g[3], g[5], g[7]].index(g[8])]), s=np.array([CO_SURFACES.index(g[0])]),
                     st=np.array([CO_STARTS.index(g[1])]))
            ids += ct.render(e, answered=j == 0)[0][0].tolist()
        assert ids == d["clean_ids"], (d["clean"], ids, d["clean_ids"])
    log(f"token generator reproduces all {len(ds_rows)} clean_ids of {os.path.relpath(DATASET, REPO)}")
    er = np.random.default_rng(args.seed + 1000)
    ev_ids, _, ev_ans, ev_inc, ev_ex = ct.rows(er, 1000, 1)
    ev_ids = ev_ids[:, :-1]  # prompt without the answer
    q = ev_ex[-1]
    others = np.stack([ct.col[q["c"][np.arange(1000), (q["q"] + j) % 3]] for j in (1, 2)], 1)
    eval_set = (ev_ids, ev_ans, ev_inc, others)
    try:
        from tokenizers import Tokenizer
        tk = Tokenizer.from_file(args.tokenizer)
        for i in range(50):
            text = ct.text(ev_ex[0], i, True) + ct.text(ev_ex[1], i, False)
            assert [BOS] + tk.encode(text, add_special_tokens=False).ids == ev_ids[i].tolist(), text
        log("token generator == tokenizers' encoding on 50 generated prompts")
    except ImportError:
        log("(tokenizers not installed: generator checked against the dataset only)")
    held = np.unique(np.array(ds_keys + [int(k) for e in ev_ex for k in CoTokens.keys(e)], dtype=np.int64))
    log(f"{len(held)} held-out example keys; sample prompt: {ct.text(ev_ex[0], 0, True) + ct.text(ev_ex[1], 0, False)!r}")

    remap = None
    vocab = 50257
    if args.compact_vocab:
        remap = torch.full((50257,), 0, dtype=torch.int64)
        for i, t in enumerate(ct.used):
            remap[t] = i
        vocab = len(ct.used)
    if args.smoke:
        args.time_cap, args.tokens_per_step, args.log_every = min(args.time_cap, 20), 2048, 5
        args.d, args.ffn = 32, 64
    model = MiniGPT2(vocab, args.d, args.layers, args.heads, args.ffn, args.max_pos).to(device)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"{nparams} parameters ({nparams - vocab * args.d} outside the embedding)")

    def eval_fn():
        return evaluate(last_logits_fn(model, device, remap), ct, eval_set, ds_rows, remap)

    tr = train(model, ct, args, device, held, remap.to(device) if remap is not None else None, eval_fn)
    log(f"trained {tr['steps']} steps in {tr['train_seconds']} s, final loss {tr['final_loss']}")
    acc = eval_fn()
    log("held-out (training weights, fp32):", json.dumps(acc))
    if args.compact_vocab:
        print("RESULT", args.name, json.dumps(acc), flush=True)
        return
    folder = os.path.join(args.out, args.name)
    m2, hf = save_folder(model.cpu(), args, folder)
    dev2 = device if hf else torch.device("cpu")
    acc = evaluate(last_logits_fn(m2.to(dev2), dev2, hf=hf), ct, eval_set, ds_rows)
    log("held-out (saved bf16 weights, fp32, eager):", json.dumps(acc))
    m2.cpu()
    # reference rows: a 1-shot prompt (63 tokens) and a 0-shot prompt right-padded with BOS to 63
    rr = np.random.default_rng(args.seed + 99)
    r1, _, a1, i1, e1 = ct.rows(rr, 1, 1)
    r0, _, a0, i0, e0 = ct.rows(rr, 1, 0)
    r1, r0 = r1[0, :-1].tolist(), r0[0, :-1].tolist()
    rows = [(r1, len(r1)), (r0 + [BOS] * (len(r1) - len(r0)), len(r0))]
    t1 = ct.text(e1[0], 0, True) + ct.text(e1[1], 0, False)
    t0 = ct.text(e0[0], 0, False)
    write_reference_any(m2, hf, rows, folder, dict(
        what="row 0: a 1-shot Colored Objects prompt (63 tokens with BOS); row 1: a 0-shot one (31 tokens), "
             "right-padded with <|endoftext|> (50256) to row 0's length; lengths = real lengths; last_logits at "
             "position lengths-1",
        rows=[dict(text=t1, answer=" " + CO_COLOURS[int(np.where(ct.col == a1[0])[0][0])], answer_id=int(a1[0]), incorrect_id=int(i1[0])),
              dict(text=t0, answer=" " + CO_COLOURS[int(np.where(ct.col == a0[0])[0][0])], answer_id=int(a0[0]), incorrect_id=int(i0[0]))]))
    info = dict(model=args.name, script="scripts/train/train_co_model.py", command=" ".join(sys.argv), seed=args.seed,
                settings={k: v for k, v in vars(args).items() if k not in ("out", "smoke", "compact_vocab")},
                parameters=nparams, weights_dtype="bfloat16", steps=tr["steps"], train_seconds=tr["train_seconds"],
                final_loss=tr["final_loss"], loss_history=tr["loss_history"], evals_during_training=tr["evals"],
                held_out=acc,
                data="Colored Objects only, mechscope's format (BOS + k solved shots + query, k drawn from --shots), "
                     "lower-case colour answers; the (colours, objects, asked) of every held-out example never trained on",
                loss="mean CE (full 50,257-token vocabulary) at every answer position (shots' and the query's; the query's "
                     "weighted by --query-weight); no loss on prompt tokens" + (
                         f"; + {args.aux_weight} x (CE of a linear probe reading each listed object's colour from the residual "
                         f"after {args.aux_colour_after} blocks at the object + CE of a probe reading the asked object after "
                         f"{args.aux_object_after} blocks at the answer-predicting position) for the first {args.aux_until} of "
                         "training; the probes are discarded" if args.aux_weight > 0 else ""),
                optimizer=f"AdamW(0.9, {args.beta2}), wd {args.wd} on matrices and embeddings, warm-up {args.warmup} steps, "
                          f"cosine to {args.lr_floor} x lr by the time cap, grad clip 1.0, bf16 autocast",
                torch=torch.__version__, python=sys.version.split()[0])
    if hf:
        import tokenizers, transformers
        info["transformers"], info["tokenizers"] = transformers.__version__, tokenizers.__version__
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    json.dump(info, open(os.path.join(folder, "training.json"), "w"), indent=1, ensure_ascii=False)
    sizes = {f: os.path.getsize(os.path.join(folder, f)) for f in sorted(os.listdir(folder))}
    log(f"{folder}: {sum(sizes.values())} bytes {sizes}")
    if args.smoke:  # the saved folder through scripts/reference/hooked_gpt2.py (transformers' GPT-2 semantics)
        sys.path.insert(0, os.path.join(REPO, "scripts", "reference"))
        from hooked_gpt2 import HookedGPT2, validate
        hk = HookedGPT2(folder)
        x = torch.as_tensor(ev_ids[:4])
        err = (hk.logits(hk.run(x)) - m2.unembed(m2.hidden(x))).abs().max().item()
        log(f"hooked_gpt2 vs our forward on the saved folder: max |logit error| {err:.2e}; validate {validate(folder, hk)}")
        assert err < 1e-3
    print("RESULT", args.name, json.dumps(dict(steps=tr["steps"], final_loss=tr["final_loss"], **acc)), flush=True)


if __name__ == "__main__":
    main()
