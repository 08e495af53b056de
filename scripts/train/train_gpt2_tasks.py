#!/usr/bin/env python3
"""Trains gpt2-co (Colored Objects) or gpt2-both (IOI and Colored Objects), small GPT-2s with the real tokenizer.

Each is a GPT-2 of 4 layers x 4 heads, d 96, written as a Hugging Face folder with a parity reference.

  train_gpt2_tasks.py co   --out DIR [...]   gpt2-co: Colored Objects (Merullo et al. 2023) only
  train_gpt2_tasks.py both --out DIR [...]   gpt2-both: the same recipe with IOI rows (Wang et al. 2022) mixed in
  train_gpt2_tasks.py rank {co,both} WORK OUT NAME...   ranks the variants of run_gpt2_on_device.sh

(These were train_co_model.py and train_both_model.py, the scripts named in the shipped folders'
training.json; their command lines are `co` / `both` followed by the same options.)

gpt2-co. Why not train_tiny_models.py (its gpt2-ioi stays at chance on Colored Objects, 0.33):
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

Colored Objects data (the format of analysis/common/datasets.cpp coloredObjectsDataset and
train_tiny_models.gen_co):
  BOS <|endoftext|> + k solved shots "Q: On the {surface}, {start} a {c} {o}, a {c} {o}, and a {c} {o}.
  What color is the {o}?\\nA: {c}\\n" + the query "Q: ... What color is the {o}?\\nA:" + " {c}", answers
  lower-case (the colour's own token). Examples whose (colours, objects, asked index) equal any example of
  the held-out sets (1,000 generated 1-shot prompts and tests/data/trained/references/co_dataset.jsonl) are
  never trained on.

gpt2-both: ONE model that solves BOTH tasks, so that the overlap of the two tasks' circuits (Merullo et al.'s
circuit-reuse question) is measured on one model (gpt2-ioi solves IOI only, gpt2-co CO only). The recipe is
gpt2-co's with IOI rows mixed in:
  * every step has one Colored Objects batch (k shots, k drawn from --shots, --tokens-per-step tokens, as in
    gpt2-co) and one IOI batch of round(B_co * f / (1 - f)) rows, f = --ioi-frac, so that a fraction f of the
    step's rows are IOI; loss = CO answers' CE + --ioi-weight x IOI answer CE (" IO" after the prompt's
    last token " to") + the probes' CE (CO only);
  * IOI rows are built as token ids too: each of the 30 templates (train_tiny_models.IOI_TEMPLATES x
    BABA/ABBA) is tokenized once with a small pure-Python GPT-2 byte-level BPE (tokenizer.json's vocab and
    merges; checked against the 40 clean and corrupted prompts of references/ioi_dataset.jsonl, and against
    the `tokenizers` library where installed), with slots for IO, S (twice), place and object, all single
    GPT-2 tokens; BOS <|endoftext|> first, right-padded with BOS to the batch's longest row;
  * never trained on: the (template, IO, S, place, object) of every prompt of references/ioi_dataset.jsonl
    (all 40 parse to a template) and of the 1,000 generated IOI evaluation prompts, and, as in gpt2-co, the
    (colours, objects, asked) of every example of references/co_dataset.jsonl and of the 1,000 generated
    1-shot CO evaluation prompts. The evaluation sets use --eval-seed (both: 1234 unless given, so variants
    with other seeds hold out the same prompts, the CO set being gpt2-co's; co: --seed unless given).

Run (GPU box): scripts/train/run_gpt2_on_device.sh co|both; one variant:
  python3 scripts/train/train_gpt2_tasks.py co --out DIR --aux-weight 0.5
  python3 scripts/train/train_gpt2_tasks.py both --out DIR --ioi-frac 0.4 --aux-weight 0.5
CPU check (no transformers / safetensors / tokenizers needed): --smoke (a few steps at d 32, writes the folder
with a hand-written safetensors and checks the forward against scripts/reference/hooked_gpt2.py), or, for co,
--compact-vocab (train on the ~45 used tokens only, for exploring recipes on a CPU; never shipped).
"""
import argparse
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train_tiny_models import (ALL_IOI_TEMPLATES, CO_COLOURS, CO_OBJECTS, CO_STARTS, CO_SURFACES,  # noqa: E402
                               IOI_NAMES, IOI_OBJECTS, IOI_PLACES, REPO, co_example, log, render_ioi,
                               write_reference)

BOS = 50256
CO_DATASET = os.path.join(REPO, "tests", "data", "trained", "references", "co_dataset.jsonl")
IOI_DATASET = os.path.join(REPO, "tests", "data", "trained", "references", "ioi_dataset.jsonl")
CO_PROMPT = re.compile(r"Q: On the (\w+), (there is|you see|I see) an? (\w+) (\w+), an? (\w+) (\w+), and an? (\w+) (\w+)\. "
                       r"What color is the (\w+)\?\nA:")


# ----------------------------------------------------------------------------------------------------
# Token-level Colored Objects generator
# ----------------------------------------------------------------------------------------------------
def redraw_held(task, rng, e, held):
    """Redraws (up to 100 times) the examples of `e` whose keys are in `held` (the held-out set), in place."""
    if held is not None:
        for _ in range(100):
            bad = np.isin(task.keys(e), held)
            if not bad.any():
                break
            e2 = task.examples(rng, int(bad.sum()))
            for k in e:
                e[k][bad] = e2[k]
    return e


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
            e = redraw_held(self, rng, self.examples(rng, n), held)
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
    (colours, objects, asked) keys of every example in it (held out from training). Checks that the token
    generator reproduces every row's clean_ids."""
    rows, keys = [], []
    for line in open(path):
        d = json.loads(line)
        rows.append(d)
        ids = [BOS]
        for j, m in enumerate(CO_PROMPT.finditer(d["clean"])):
            g = m.groups()
            c = [CO_COLOURS.index(g[2]), CO_COLOURS.index(g[4]), CO_COLOURS.index(g[6])]
            o = [CO_OBJECTS.index(g[3]), CO_OBJECTS.index(g[5]), CO_OBJECTS.index(g[7])]
            e = dict(c=np.array([c]), o=np.array([o]), q=np.array([o.index(CO_OBJECTS.index(g[8]))]),
                     s=np.array([CO_SURFACES.index(g[0])]), st=np.array([CO_STARTS.index(g[1])]))
            keys.append(int(CoTokens.keys(e)[0]))
            ids += ct.render(e, answered=j == 0)[0][0].tolist()
        assert ids == d["clean_ids"], (d["clean"], ids, d["clean_ids"])
    log(f"token generator reproduces all {len(rows)} clean_ids of {os.path.relpath(path, REPO)}")
    return rows, keys


# ----------------------------------------------------------------------------------------------------
# A minimal GPT-2 byte-level BPE (ASCII text), for building the IOI templates without `tokenizers`
# ----------------------------------------------------------------------------------------------------
class Bpe:
    PAT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")

    def __init__(self, tokenizer_json):
        tj = json.load(open(tokenizer_json, encoding="utf-8"))
        self.vocab = tj["model"]["vocab"]
        merges = tj["model"]["merges"]
        self.rank = {tuple(m.split(" ") if isinstance(m, str) else m): i for i, m in enumerate(merges)}
        bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
        cs, n = bs[:], 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        self.b2u = {b: chr(c) for b, c in zip(bs, cs)}

    def word(self, w):
        parts = [self.b2u[b] for b in w.encode("utf-8")]
        while len(parts) > 1:
            best = min(((self.rank.get((parts[i], parts[i + 1]), 1 << 30), i) for i in range(len(parts) - 1)))
            if best[0] == 1 << 30:
                break
            i = best[1]
            parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
        return [self.vocab[p] for p in parts]

    def encode(self, text):
        return [t for w in self.PAT.findall(text) for t in self.word(w)]


# ----------------------------------------------------------------------------------------------------
# Token-level IOI generator
# ----------------------------------------------------------------------------------------------------
class IoiTokens:
    """The 30 templates as token layouts: base [30, Lmax] ids, kind [30, Lmax] (0 fixed, 1 IO, 2 S, 3 place,
    4 object, 5 padding), length [30] (without BOS)."""
    SENT = {"Qqio": 1, "Qqs": 2, "Qqplace": 3, "Qqobj": 4}

    def __init__(self, tokenizer_json):
        self.bpe = bpe = Bpe(tokenizer_json)
        v = bpe.vocab

        def single(w):
            k = (" " + w).replace(" ", "\u0120")
            return v.get(k)

        self.names = [n for n in IOI_NAMES if single(n) is not None]
        assert len(self.names) == len(IOI_NAMES), sorted(set(IOI_NAMES) - set(self.names))
        self.name_ids = np.array([single(n) for n in self.names])
        self.place_ids = np.array([single(p) for p in IOI_PLACES])
        self.obj_ids = np.array([single(o) for o in IOI_OBJECTS])
        assert all(x is not None for x in list(self.place_ids) + list(self.obj_ids))
        lays = []
        for t in ALL_IOI_TEMPLATES:
            text = render_ioi(t, "Qqio", "Qqs", "Qqs", "Qqplace", "Qqobj")
            ids, kinds = [], []
            for w in Bpe.PAT.findall(text):
                s = self.SENT.get(w.strip())
                if s is not None:
                    assert w.startswith(" "), (t, w)
                    ids.append(-1)
                    kinds.append(s)
                else:
                    tw = bpe.word(w)
                    ids += tw
                    kinds += [0] * len(tw)
            lays.append((ids, kinds))
        self.len = np.array([len(a) for a, _ in lays])
        L = int(self.len.max())
        self.base = np.full((len(lays), L), BOS)
        self.kind = np.full((len(lays), L), 5)
        for i, (a, k) in enumerate(lays):
            self.base[i, :len(a)] = a
            self.kind[i, :len(a)] = k
        assert ((self.kind == 1).sum(1) == 1).all() and ((self.kind == 2).sum(1) == 2).all()
        self.has_place, self.has_obj = (self.kind == 3).any(1).astype(int), (self.kind == 4).any(1).astype(int)
        self.io_pos = (self.kind == 1).argmax(1)
        self.s1_pos = (self.kind == 2).argmax(1)
        self.s2_pos = self.kind.shape[1] - 1 - (self.kind[:, ::-1] == 2).argmax(1)

    def examples(self, rng, n):
        nn = len(self.names)
        io = rng.integers(0, nn, n)
        s = (io + rng.integers(1, nn, n)) % nn
        t = rng.integers(0, len(self.len), n)
        # templates without a place / object slot get index 0, so that one text has one key
        return dict(t=t, io=io, s=s, p=rng.integers(0, len(IOI_PLACES), n) * self.has_place[t],
                    o=rng.integers(0, len(IOI_OBJECTS), n) * self.has_obj[t])

    def keys(self, e):
        nn = len(self.names)
        return (((e["t"] * nn + e["io"]) * nn + e["s"]) * len(IOI_PLACES) + e["p"]) * len(IOI_OBJECTS) + e["o"]

    def render(self, e):
        """ids [n, 1 + Lmax] (BOS first, right-padded with BOS, trimmed to the longest row), answer (IO) and
        incorrect (S) ids [n], last prompt position [n] (the logit there predicts IO)."""
        t = e["t"]
        x, k = self.base[t].copy(), self.kind[t]
        n = len(t)
        for kind, vals in ((1, self.name_ids[e["io"]]), (2, self.name_ids[e["s"]]), (3, self.place_ids[e["p"]]),
                           (4, self.obj_ids[e["o"]])):
            x = np.where(k == kind, vals[:, None], x)
        L = int(self.len[t].max())
        ids = np.concatenate([np.full((n, 1), BOS), x[:, :L]], 1)
        return ids, self.name_ids[e["io"]], self.name_ids[e["s"]], self.len[t]  # last = 1 + len - 1

    def text(self, e, i):
        return render_ioi(ALL_IOI_TEMPLATES[e["t"][i]], self.names[e["io"][i]], self.names[e["s"][i]],
                          self.names[e["s"][i]], IOI_PLACES[e["p"][i]], IOI_OBJECTS[e["o"][i]])

    def sample(self, rng, n, held=None):
        return redraw_held(self, rng, self.examples(rng, n), held)

    def parse(self, ids):
        """A prompt's ids (BOS first) -> its example dict (one row), or None if no template fits."""
        body = np.array(ids[1:])
        for t in range(len(self.len)):
            if self.len[t] != len(body):
                continue
            k = self.kind[t, :len(body)]
            if not (body[k == 0] == self.base[t, :len(body)][k == 0]).all():
                continue
            s = body[k == 2]
            if s[0] != s[1]:
                continue
            try:
                e = dict(t=np.array([t]), io=np.array([list(self.name_ids).index(body[k == 1][0])]),
                         s=np.array([list(self.name_ids).index(s[0])]),
                         p=np.array([list(self.place_ids).index(body[k == 3][0]) if (k == 3).any() else 0]),
                         o=np.array([list(self.obj_ids).index(body[k == 4][0]) if (k == 4).any() else 0]))
            except ValueError:
                continue
            return e
        return None


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
# The held-out sets and their evaluation
# ----------------------------------------------------------------------------------------------------
class CoTask:
    """Colored Objects: co_dataset.jsonl's rows, the 1,000 generated 1-shot prompts (seed eval_seed + 1000)
    and the keys of every example in them (never trained on)."""

    def __init__(self, ct, tokenizer, eval_seed):
        self.ct = ct
        self.ds_rows, ds_keys = parse_dataset(CO_DATASET, ct)
        er = np.random.default_rng(eval_seed + 1000)
        ev_ids, _, ev_ans, ev_inc, ev_ex = ct.rows(er, 1000, 1)
        self.ev_ids = ev_ids = ev_ids[:, :-1]  # prompt without the answer
        q = ev_ex[-1]
        others = np.stack([ct.col[q["c"][np.arange(1000), (q["q"] + j) % 3]] for j in (1, 2)], 1)
        self.eval_set = (ev_ids, ev_ans, ev_inc, others)
        try:
            from tokenizers import Tokenizer
            tk = Tokenizer.from_file(tokenizer)
            for i in range(50):
                text = ct.text(ev_ex[0], i, True) + ct.text(ev_ex[1], i, False)
                assert [BOS] + tk.encode(text, add_special_tokens=False).ids == ev_ids[i].tolist(), text
            log("token generator == tokenizers' encoding on 50 generated prompts")
        except ImportError:
            log("(tokenizers not installed: generator checked against the dataset only)")
        self.held = np.unique(np.array(ds_keys + [int(k) for e in ev_ex for k in CoTokens.keys(e)], dtype=np.int64))
        log(f"{len(self.held)} held-out example keys; sample prompt: {ct.text(ev_ex[0], 0, True) + ct.text(ev_ex[1], 0, False)!r}")

    def evaluate(self, f, remap=None):
        ids, ans, inc, others = self.eval_set
        acc = {"generated_1shot_1000": score(f, ids, ans, inc, others, remap)}
        clean = [d["clean_ids"] for d in self.ds_rows]
        corr = [d["corrupted_ids"] for d in self.ds_rows]
        a = [d["answer_id"] for d in self.ds_rows]
        b = [d["incorrect_id"] for d in self.ds_rows]
        acc["co_dataset_40_clean"] = score(f, clean, a, b, remap=remap)
        # corrupted prompt asks for the 'incorrect' object's colour: its answer is `incorrect`
        acc["co_dataset_40_corrupted_answer_is_incorrect"] = score(f, corr, b, a, remap=remap)
        return acc

    def reference_row(self, rr, shots):
        """A `shots`-shot prompt (without its answer) and its reference.json entry."""
        r, _, a, i, e = self.ct.rows(rr, 1, shots)
        text = "".join(self.ct.text(e[j], 0, j < shots) for j in range(shots + 1))
        return r[0, :-1].tolist(), dict(text=text, answer=" " + CO_COLOURS[int(np.where(self.ct.col == a[0])[0][0])],
                                        answer_id=int(a[0]), incorrect_id=int(i[0]))


class IoiTask:
    """IOI (gpt2-both): the token generator checked against ioi_dataset.jsonl (and the CO dataset's text against
    the BPE), the 1,000 generated prompts (seed eval_seed + 2000), the held-out keys, and the training rows."""

    def __init__(self, tokenizer, eval_seed, co_rows):
        self.it = it = IoiTokens(tokenizer)
        for d in co_rows:
            assert [BOS] + it.bpe.encode(d["clean"]) == d["clean_ids"], d["clean"]
        self.rows = [json.loads(l) for l in open(IOI_DATASET)]
        ds_keys = []
        for dd in self.rows:
            assert [BOS] + it.bpe.encode(dd["clean"]) == dd["clean_ids"], dd["clean"]
            assert [BOS] + it.bpe.encode(dd["corrupted"]) == dd["corrupted_ids"], dd["corrupted"]
            e = it.parse(dd["clean_ids"])
            assert e is not None, dd["clean"]
            ids, a, b, last = it.render(e)
            assert ids[0].tolist() == dd["clean_ids"] and a[0] == dd["answer_id"] and b[0] == dd["incorrect_id"], dd
            assert it.io_pos[e["t"][0]] + 1 == dd["positions"]["IO"] and it.s2_pos[e["t"][0]] + 1 == dd["positions"]["S2"]
            ds_keys.append(int(it.keys(e)[0]))
        ir = np.random.default_rng(eval_seed + 2000)
        ie = it.examples(ir, 1000)
        ids, a, b, last = it.render(ie)
        self.eval = [(ids[i, :last[i] + 1].tolist(), int(a[i]), int(b[i]), int(ie["t"][i])) for i in range(1000)]
        for i in range(200):
            assert [BOS] + it.bpe.encode(it.text(ie, i)) == self.eval[i][0], it.text(ie, i)
        self.held = np.unique(np.array(ds_keys + [int(k) for k in it.keys(ie)], dtype=np.int64))
        log(f"IOI: {len(it.names)} names, 30 templates (lengths {sorted(set(it.len.tolist()))}); all {len(self.rows)} "
            f"prompts of {os.path.relpath(IOI_DATASET, REPO)} reproduced by the token generator; {len(self.held)} held-out "
            f"IOI keys; sample {it.text(ie, 0)!r} -> {it.names[ie['io'][0]]!r}")
        try:
            from tokenizers import Tokenizer
            tk = Tokenizer.from_file(tokenizer)
            for i in range(300):
                assert [BOS] + tk.encode(it.text(ie, i), add_special_tokens=False).ids == self.eval[i][0], it.text(ie, i)
            for t in range(30):  # every template once
                e1 = it.examples(np.random.default_rng(t), 1)
                e1["t"][:] = t
                assert [BOS] + tk.encode(it.text(e1, 0), add_special_tokens=False).ids == it.render(e1)[0][0].tolist()
            log("IOI token generator == tokenizers' encoding on 300 eval prompts and all 30 templates")
        except ImportError:
            log("(tokenizers not installed: IOI generator checked against the pure-Python BPE and the dataset)")
        # the training sampler never yields a held-out example
        chk = it.sample(np.random.default_rng(3), 20000, self.held)
        assert not np.isin(it.keys(chk), self.held).any()

    def loss(self, model, rng, n, device):
        """CE of " IO" at the last prompt token of n fresh training rows."""
        iids, ians, _, last = self.it.render(self.it.sample(rng, n, self.held))
        xi = torch.from_numpy(iids).to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            hi = model.hidden(xi)
        li = model.unembed(hi[torch.arange(n, device=device), torch.from_numpy(last).to(device)].float())
        return F.cross_entropy(li, torch.from_numpy(ians).to(device))

    def evaluate(self, f, per_template=False):
        acc = {}
        acc["ioi_generated_1000"], t1 = ioi_score(f, self.eval)
        acc["ioi_dataset_40"], _ = ioi_score(f, [(d["clean_ids"], d["answer_id"], d["incorrect_id"]) for d in self.rows])
        if per_template:
            tt = np.array([r[3] for r in self.eval])
            acc["ioi_generated_top1_per_template"] = {int(t): round(float(t1[tt == t].mean()), 3) for t in np.unique(tt)}
        return acc

    def reference_row(self, rr):
        e = self.it.examples(rr, 1)
        r, a, b, n = self.it.render(e)
        return r[0, :n[0] + 1].tolist(), dict(text=self.it.text(e, 0), answer=" " + self.it.names[e["io"][0]],
                                              answer_id=int(a[0]), incorrect=" " + self.it.names[e["s"][0]],
                                              incorrect_id=int(b[0]))


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


@torch.no_grad()
def ioi_score(f_logits, rows):
    """rows: list of (ids, answer, incorrect). Prompts of one length are run together (no padding).
    top1 (full vocabulary), IO > S, mean / min logit[IO] - logit[S]."""
    by_len = {}
    for i, r in enumerate(rows):
        by_len.setdefault(len(r[0]), []).append(i)
    top1, beats, ld = np.zeros(len(rows)), np.zeros(len(rows)), np.zeros(len(rows))
    for L, idx in by_len.items():
        lg = f_logits([rows[i][0] for i in idx])
        a = torch.tensor([rows[i][1] for i in idx])
        b = torch.tensor([rows[i][2] for i in idx])
        r = torch.arange(len(idx))
        top1[idx] = (lg.argmax(-1) == a).float().numpy()
        d = (lg[r, a] - lg[r, b]).numpy()
        beats[idx] = d > 0
        ld[idx] = d
    return dict(top1=round(float(top1.mean()), 4), io_beats_s=round(float(beats.mean()), 4),
                mean_logit_diff=round(float(ld.mean()), 4), min_logit_diff=round(float(ld.min()), 4)), top1


def evaluate(f, co, ioi=None, remap=None, per_template=False):
    """co's results (keys prefixed with co_ when there is an IOI part) and the IOI part's."""
    acc = co.evaluate(f, remap)
    if ioi is None:
        return acc
    acc = {(k if k.startswith("co_") else "co_" + k): v for k, v in acc.items()}
    acc.update(ioi.evaluate(f, per_template))
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


def train(model, ct, args, device, held, remap, eval_fn, ioi=None):
    """Each step: a Colored Objects batch (answers' CE, the query's weighted by --query-weight), the probes'
    CE (--aux-weight) and, with ioi, round(B * f / (1 - f)) IOI rows (f = --ioi-frac) whose CE is weighted
    by --ioi-weight."""
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
    l_c = l_o = l_ioi = torch.zeros(())
    n_ioi = 0
    ratio = args.ioi_frac / max(1e-9, 1.0 - args.ioi_frac) if ioi is not None else 0.0
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
        if ioi is not None:
            n_ioi = int(round(B * ratio))
            if n_ioi > 0:
                l_ioi = ioi.loss(model, rng, n_ioi, device)
                loss = loss + args.ioi_weight * l_ioi
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        acc_loss += loss.detach()
        n_acc += 1
        if step % args.log_every == 0 or step == 1:
            v = float(acc_loss / n_acc)
            hist.append((step, round(time.time() - t_start, 1), round(v, 5)))
            extra = f" aux colour {float(l_c.detach()):.3f} object {float(l_o.detach()):.3f}" if aw > 0 else ""
            io = f", IOI CE {float(l_ioi.detach()):.4f} on {n_ioi} rows" if ioi is not None else ""
            log(f"step {step} k {k} loss {v:.4f} (last answer CE {float(ce.detach().mean()):.4f}{io}){extra} lr {lr:.2e} "
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
    """train_tiny_models.write_reference (eager, fp32, CPU) for the transformers model; for --smoke's own
    model the same tensors from our forward with an explicit softmax (to have attentions), written by
    write_safetensors: input_ids, lengths, last_logits, hidden_states [L+1, 2, T, d] (HF order, the last after
    ln_f), attentions [L, 2, H, T, T]."""
    if hf:
        write_reference(model, rows, folder, False, extra_json)
        return
    T = max(len(r[0]) for r in rows)
    ids = torch.tensor([r[0] for r in rows], dtype=torch.int64)
    lengths = torch.tensor([r[1] for r in rows], dtype=torch.int64)
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
    lg = model.unembed(hsl[-1])
    last = torch.stack([lg[i, lengths[i] - 1] for i in range(len(rows))]).float()
    tt = {"input_ids": ids.contiguous(), "lengths": lengths, "last_logits": last.contiguous(),
          "hidden_states": torch.stack(hsl).float().contiguous(), "attentions": torch.stack(atl).float().contiguous()}
    write_safetensors(tt, os.path.join(folder, "reference.safetensors"))
    json.dump(extra_json, open(os.path.join(folder, "reference.json"), "w"), indent=1, ensure_ascii=False)
    log("reference", {k: tuple(v.shape) for k, v in tt.items()})


# ----------------------------------------------------------------------------------------------------
# What training.json says of each task's data and loss
# ----------------------------------------------------------------------------------------------------
def describe(args):
    probes = (f"; + {args.aux_weight} x (CE of a linear probe reading each listed{' CO' if args.task == 'both' else ''} "
              f"object's colour from the residual after {args.aux_colour_after} blocks at the object + CE of a probe "
              f"reading the asked object after {args.aux_object_after} blocks at the answer-predicting position) for the "
              f"first {args.aux_until} of training; the probes are discarded") if args.aux_weight > 0 else ""
    if args.task == "co":
        data = ("Colored Objects only, mechscope's format (BOS + k solved shots + query, k drawn from --shots), "
                "lower-case colour answers; the (colours, objects, asked) of every held-out example never trained on")
        loss = ("mean CE (full 50,257-token vocabulary) at every answer position (shots' and the query's; the query's "
                "weighted by --query-weight); no loss on prompt tokens")
    else:
        data = (f"each step: a Colored Objects batch (gpt2-co's: mechscope's format, BOS + k solved shots + query, "
                f"k from --shots, lower-case colour answers) and IOI rows making {args.ioi_frac} of the step's rows "
                "(BOS + one of the 30 templates (15 x BABA/ABBA) with 60 names, 8 places, 8 objects; answer ' IO'); "
                "the (template, IO, S, place, object) of references/ioi_dataset.jsonl's 40 prompts and of the 1,000 "
                "generated IOI eval prompts, and the (colours, objects, asked) of every held-out CO example, never "
                "trained on")
        loss = ("mean CE (full 50,257-token vocabulary) at every CO answer position (shots' and query's) + "
                f"{args.ioi_weight} x CE at the IOI answer; no loss on prompt tokens")
    return data, loss + probes


# ----------------------------------------------------------------------------------------------------
def parse_args():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", required=True, help="writes OUT/<--name>/")
    common.add_argument("--name", help="the folder's name (default: gpt2-co / gpt2-both)")
    common.add_argument("--tokenizer", default=os.path.join(REPO, "tests", "data", "trained", "gpt2-ioi", "tokenizer.json"))
    common.add_argument("--seed", type=int, default=1234)
    common.add_argument("--eval-seed", type=int, help="the held-out sets' seed (co: --seed; both: 1234, i.e. gpt2-co's "
                        "1,000 CO prompts)")
    common.add_argument("--d", type=int, default=96)
    common.add_argument("--layers", type=int, default=4)
    common.add_argument("--heads", type=int, default=4)
    common.add_argument("--ffn", type=int, default=384)
    common.add_argument("--max-pos", type=int, default=256)
    common.add_argument("--lr", type=float, default=1e-3)
    common.add_argument("--lr-floor", type=float, default=0.1, help="cosine decays to this fraction of --lr")
    common.add_argument("--beta2", type=float, default=0.98)
    common.add_argument("--wd", type=float, default=0.05)
    common.add_argument("--warmup", type=int, default=300)
    common.add_argument("--tokens-per-step", type=int, default=32768, help="of the Colored Objects batch")
    common.add_argument("--shots", default="0:0.25,1:0.35,2:0.25,3:0.15", help="K:P,... shots per CO row and their probabilities")
    common.add_argument("--early-shots", default="", help="the shot mix for the first --early-frac of training")
    common.add_argument("--early-frac", type=float, default=0.0)
    common.add_argument("--query-weight", type=float, default=1.0, help="loss weight of the CO query's answer (shots' answers: 1)")
    common.add_argument("--aux-weight", type=float, default=0.0, help="weight of the two scaffolding probes (0: none)")
    common.add_argument("--aux-colour-after", type=int, default=1, help="colour probe on the residual after this many blocks")
    common.add_argument("--aux-object-after", type=int, default=2, help="asked-object probe on the residual after this many blocks")
    common.add_argument("--aux-until", type=float, default=1.0, help="probes on for this fraction of training")
    common.add_argument("--max-steps", type=int, default=1_000_000)
    common.add_argument("--time-cap", type=float, default=300)
    common.add_argument("--log-every", type=int, default=200)
    common.add_argument("--eval-every", type=int, default=0)
    common.add_argument("--threads", type=int, default=0)
    common.add_argument("--smoke", action="store_true", help="CPU: a few steps at d 32, hand-written safetensors, hooked_gpt2 check")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="task", required=True)
    co = sub.add_parser("co", parents=[common], help="gpt2-co: Colored Objects only")
    co.add_argument("--compact-vocab", action="store_true", help="CPU exploration: embed only the used tokens")
    both = sub.add_parser("both", parents=[common], help="gpt2-both: IOI and Colored Objects")
    both.add_argument("--ioi-frac", type=float, default=0.4, help="fraction of each step's rows that are IOI")
    both.add_argument("--ioi-weight", type=float, default=1.0, help="weight of the IOI answer CE")
    both.set_defaults(compact_vocab=False)
    rank = sub.add_parser("rank", help="rank run_gpt2_on_device.sh's variants; tar the best two")
    rank.add_argument("what", choices=["co", "both"])
    rank.add_argument("work")
    rank.add_argument("outdir")
    rank.add_argument("names", nargs="+")
    args = ap.parse_args()
    if args.task != "rank":  # the defaults that differ between the tasks (parents' actions are shared objects)
        args.name = args.name or f"gpt2-{args.task}"
        if args.eval_seed is None:
            args.eval_seed = args.seed if args.task == "co" else 1234
    return args


def rank(task, work, out, names):
    """run_gpt2_on_device.sh's summary. co: by min(top-1 of the 1,000 generated prompts, of co_dataset.jsonl's
    40), then mean logit difference. both: first whether every target is met (IOI top-1 and IO > S >= 0.95 on
    the 1,000 generated prompts and ioi_dataset.jsonl's 40, CO top-1 >= 0.9 on the 1,000 and co_dataset.jsonl's
    40), then the smallest of those accuracies, then the sum of the two tasks' mean logit differences.
    The best two are written as OUT/gpt2-<task>_<variant>.tar (the folder without tokenizer.json)."""
    res = []
    for n in names:
        p = os.path.join(work, n, f"gpt2-{task}", "training.json")
        if not os.path.exists(p):
            print(f"{n}: no result")
            continue
        t = json.load(open(p))
        h = t["held_out"]
        if task == "co":
            g, d = h["generated_1shot_1000"], h["co_dataset_40_clean"]
            res.append((min(g["top1"], d["top1"]), g["mean_logit_diff"], n))
            print(f"{n}: steps {t['steps']} gen1000 {json.dumps(g)} ds40 {json.dumps(d)} corrupted "
                  f"{json.dumps(h['co_dataset_40_corrupted_answer_is_incorrect'])}")
            for e in t["evals_during_training"]:
                print(f"    step {e[0]} ({e[1]} s): gen top1 {e[2]['generated_1shot_1000']['top1']} "
                      f"ds top1 {e[2]['co_dataset_40_clean']['top1']}")
        else:
            ig, idd = h["ioi_generated_1000"], h["ioi_dataset_40"]
            cg, cd = h["co_generated_1shot_1000"], h["co_dataset_40_clean"]
            ioi_min = min(ig["top1"], ig["io_beats_s"], idd["top1"], idd["io_beats_s"])
            co_min = min(cg["top1"], cd["top1"])
            ok = ioi_min >= 0.95 and co_min >= 0.9 and ig["mean_logit_diff"] > 0 and idd["mean_logit_diff"] > 0
            res.append((ok, min(ioi_min, co_min), ig["mean_logit_diff"] + cg["mean_logit_diff"], n))
            print(f"{n}: steps {t['steps']} targets met {ok}\n  IOI gen1000 {json.dumps(ig)}\n  IOI ds40 {json.dumps(idd)}"
                  f"\n  CO gen1000 {json.dumps(cg)}\n  CO ds40 {json.dumps(cd)}")
            for e in t["evals_during_training"]:
                r = e[2]
                print(f"    step {e[0]} ({e[1]} s): IOI gen top1 {r['ioi_generated_1000']['top1']} ds {r['ioi_dataset_40']['top1']}"
                      f"; CO gen top1 {r['co_generated_1shot_1000']['top1']} ds {r['co_dataset_40_clean']['top1']}")
    res.sort(reverse=True)
    for r in res[:2]:
        subprocess.run(["tar", "-C", os.path.join(work, r[-1]), "--exclude", "tokenizer.json", "-cf",
                        os.path.join(out, f"gpt2-{task}_{r[-1]}.tar"), f"gpt2-{task}"], check=True)
    print("ranking:", res)


def main():
    args = parse_args()
    if args.task == "rank":
        rank(args.what, args.work, args.outdir, args.names)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and not (args.smoke or args.compact_vocab) else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    log(f"{args.name} on {device}, torch {torch.__version__}; {vars(args)}")
    ct = CoTokens(args.tokenizer)
    co = CoTask(ct, args.tokenizer, args.eval_seed)
    ioi = IoiTask(args.tokenizer, args.eval_seed, co.ds_rows) if args.task == "both" else None
    held = co.held

    remap = None
    vocab = 50257
    if args.compact_vocab:
        remap = torch.full((50257,), 0, dtype=torch.int64)
        for i, t in enumerate(ct.used):
            remap[t] = i
        vocab = len(ct.used)
    if args.smoke:
        args.time_cap, args.tokens_per_step, args.log_every = min(args.time_cap, 20 if ioi is None else 25), 2048, 5
        args.d, args.ffn = 32, 64
    model = MiniGPT2(vocab, args.d, args.layers, args.heads, args.ffn, args.max_pos).to(device)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"{nparams} parameters ({nparams - vocab * args.d} outside the embedding)")

    def eval_fn():
        return evaluate(last_logits_fn(model, device, remap), co, ioi, remap)

    tr = train(model, ct, args, device, held, remap.to(device) if remap is not None else None, eval_fn, ioi)
    log(f"trained {tr['steps']} steps in {tr['train_seconds']} s, final loss {tr['final_loss']}")
    acc = eval_fn()
    log("held-out (training weights, fp32):", json.dumps(acc))
    if args.compact_vocab:
        print("RESULT", args.name, json.dumps(acc), flush=True)
        return
    folder = os.path.join(args.out, args.name)
    m2, hf = save_folder(model.cpu(), args, folder)
    dev2 = device if hf else torch.device("cpu")
    acc = evaluate(last_logits_fn(m2.to(dev2), dev2, hf=hf), co, ioi, per_template=True)
    log("held-out (saved bf16 weights, fp32, eager):", json.dumps(acc))
    m2.cpu()
    # reference rows: a 1-shot CO prompt (63 tokens) and a 0-shot CO prompt (co) or an IOI prompt (both),
    # right-padded with BOS to 63
    rr = np.random.default_rng(args.seed + 99)
    r1, j1 = co.reference_row(rr, 1)
    r2, j2 = co.reference_row(rr, 0) if ioi is None else ioi.reference_row(rr)
    rows = [(r1, len(r1)), (r2 + [BOS] * (len(r1) - len(r2)), len(r2))]
    second = "a 0-shot one (31 tokens), right-padded" if ioi is None else "an IOI prompt, right-padded"
    write_reference_any(m2, hf, rows, folder, dict(
        what=f"row 0: a 1-shot Colored Objects prompt (63 tokens with BOS); row 1: {second} with <|endoftext|> "
             "(50256) to row 0's length; lengths = real lengths; last_logits at position lengths-1",
        rows=[j1, j2]))
    data, loss = describe(args)
    info = dict(model=args.name, script="scripts/train/train_gpt2_tasks.py", command=" ".join(sys.argv), seed=args.seed,
                settings={k: v for k, v in vars(args).items() if k not in ("out", "smoke", "compact_vocab", "task")},
                parameters=nparams, weights_dtype="bfloat16", steps=tr["steps"], train_seconds=tr["train_seconds"],
                final_loss=tr["final_loss"], loss_history=tr["loss_history"], evals_during_training=tr["evals"],
                held_out=acc, data=data, loss=loss,
                optimizer=f"AdamW(0.9, {args.beta2}), wd {args.wd} on matrices and embeddings, warm-up {args.warmup} steps, "
                          f"cosine to {args.lr_floor} x lr by the time cap, grad clip 1.0, bf16 autocast",
                torch=torch.__version__, python=sys.version.split()[0])
    if hf:
        import tokenizers
        import transformers
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
        prompts = [("CO prompts", torch.as_tensor(co.ev_ids[:4]))]
        if ioi is not None:
            prompts.append(("IOI prompt", torch.as_tensor([ioi.eval[0][0]])))
        for what, x in prompts:
            err = (hk.logits(hk.run(x)) - m2.unembed(m2.hidden(x))).abs().max().item()
            log(f"hooked_gpt2 vs our forward on the saved folder ({what}): max |logit error| {err:.2e}; "
                f"validate {validate(folder, hk)}")
            assert err < 1e-3
    print("RESULT", args.name, json.dumps(dict(steps=tr["steps"], final_loss=tr["final_loss"], **acc)), flush=True)


if __name__ == "__main__":
    main()
