#!/usr/bin/env python3
"""Trains gpt2-both: ONE small GPT-2 (4 layers x 4 heads, d 96, the real GPT-2 tokenizer) that solves BOTH the
IOI task (Wang et al. 2022) and Colored Objects (Merullo et al. 2023), so that the overlap of the two tasks'
circuits (Merullo et al.'s circuit-reuse question) is measured on one model. gpt2-ioi solves IOI only (CO at
chance) and gpt2-co solves CO only, so neither can answer that question.

The recipe is gpt2-co's (scripts/train/train_co_model.py, whose classes this script imports: token-level
batches, loss only at the answers, 0-3 Colored Objects shots per row, the two temporary scaffolding probes of
--aux-weight) with IOI rows mixed in:
  * every step has one Colored Objects batch (k shots, k drawn from --shots, --tokens-per-step tokens, as in
    gpt2-co) and one IOI batch of round(B_co * f / (1 - f)) rows, f = --ioi-frac, so that a fraction f of the
    step's rows are IOI; loss = CO answers' mean CE + --ioi-weight x IOI answer CE (" IO" after the prompt's
    last token " to") + the probes' CE (CO only);
  * IOI rows are built as token ids too: each of the 30 templates (train_tiny_models.IOI_TEMPLATES x
    BABA/ABBA) is tokenized once with a small pure-Python GPT-2 byte-level BPE (tokenizer.json's vocab and
    merges; checked against the 40 clean and corrupted prompts of references/ioi_dataset.jsonl, and against
    the `tokenizers` library where installed), with slots for IO, S (twice), place and object, all single
    GPT-2 tokens; BOS <|endoftext|> first, right-padded with BOS to the batch's longest row;
  * never trained on: the (template, IO, S, place, object) of every prompt of references/ioi_dataset.jsonl
    (all 40 parse to a template) and of the 1,000 generated IOI evaluation prompts, and, as in gpt2-co, the
    (colours, objects, asked) of every example of references/co_dataset.jsonl and of the 1,000 generated
    1-shot CO evaluation prompts. The evaluation sets use --eval-seed (not --seed), so variants with other
    seeds hold out the same prompts (the CO set is gpt2-co's).

Run (GPU box): scripts/train/run_both_on_device.sh; one variant:
  python3 scripts/train/train_both_model.py --out DIR --ioi-frac 0.4 --aux-weight 0.5
CPU check (no transformers / safetensors / tokenizers needed): --smoke (a few steps at d 32, writes the folder
with a hand-written safetensors and checks the forward against scripts/reference/hooked_gpt2.py).
"""
import argparse
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train_co_model import (BOS, DATASET as CO_DATASET, REPO, CoTokens, MiniGPT2, evaluate as co_evaluate,  # noqa: E402
                            last_logits_fn, log, parse_dataset, parse_shots, save_folder, write_reference_any)
from train_tiny_models import (ALL_IOI_TEMPLATES, CO_COLOURS, CO_OBJECTS, IOI_NAMES, IOI_OBJECTS,  # noqa: E402
                               IOI_PLACES, render_ioi)

IOI_DATASET = os.path.join(REPO, "tests", "data", "trained", "references", "ioi_dataset.jsonl")


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
        e = self.examples(rng, n)
        if held is not None:
            for _ in range(100):
                bad = np.isin(self.keys(e), held)
                if not bad.any():
                    break
                e2 = self.examples(rng, int(bad.sum()))
                for kk in e:
                    e[kk][bad] = e2[kk]
        return e

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
# Evaluation
# ----------------------------------------------------------------------------------------------------
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


def evaluate_both(f, ct, co_eval, co_rows, it, ioi_eval, ioi_rows, per_template=False):
    res = co_evaluate(f, ct, co_eval, co_rows)
    acc = {(k if k.startswith("co_") else "co_" + k): v for k, v in res.items()}
    gen_rows = ioi_eval
    acc["ioi_generated_1000"], t1 = ioi_score(f, gen_rows)
    acc["ioi_dataset_40"], _ = ioi_score(f, [(d["clean_ids"], d["answer_id"], d["incorrect_id"]) for d in ioi_rows])
    if per_template:
        tt = np.array([r[3] for r in gen_rows])
        acc["ioi_generated_top1_per_template"] = {int(t): round(float(t1[tt == t].mean()), 3) for t in np.unique(tt)}
    return acc


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------
def train(model, ct, it, args, device, co_held, ioi_held, eval_fn):
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
    rng = np.random.default_rng(args.seed)
    t_start = time.time()
    hist, evals = [], []
    acc_loss, n_acc, step = 0.0, 0, 0
    l_c = l_o = l_ioi = torch.zeros(())
    model.train()
    cap = args.time_cap
    ratio = args.ioi_frac / max(1e-9, 1.0 - args.ioi_frac)
    for step in range(1, args.max_steps + 1):
        el = time.time() - t_start
        if el > cap:
            step -= 1
            break
        frac = min(1.0, max(step / args.max_steps, el / cap))
        lr = args.lr * min(1.0, step / args.warmup) * (args.lr_floor + (1 - args.lr_floor) * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        k = int(rng.choice(ks, p=ps))
        T = 1 + 32 * k + 31
        B = max(8, args.tokens_per_step // T)
        ids, targets, _, _, exs = ct.rows(rng, B, k, co_held)
        x = torch.from_numpy(ids).to(device, non_blocking=True)
        tg = torch.from_numpy(targets).to(device)
        aw = args.aux_weight * (1.0 if frac < args.aux_until else 0.0) if use_aux else 0.0
        taps = {args.aux_colour_after: None, args.aux_object_after: None} if aw > 0 else None
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            h = model.hidden(x, taps)
        lg = model.unembed(h[:, tg - 1].float())
        ce = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), x[:, tg].reshape(-1), reduction="none").view(B, -1)
        loss = ce.mean()
        if aw > 0:
            opos = torch.tensor([1 + 32 * j + p for j in range(k + 1) for p in (10, 14, 19)], device=device)
            ocol = torch.from_numpy(np.stack([e["c"][:, i] for e in exs for i in range(3)], 1)).to(device)
            rc = F.layer_norm(taps[args.aux_colour_after][:, opos].float(), (d,))
            l_c = F.cross_entropy(probe_c(rc).reshape(-1, len(CO_COLOURS)), ocol.reshape(-1))
            asked = torch.from_numpy(np.stack([e["o"][np.arange(B), e["q"]] for e in exs], 1)).to(device)
            ro = F.layer_norm(taps[args.aux_object_after][:, tg - 1].float(), (d,))
            l_o = F.cross_entropy(probe_o(ro).reshape(-1, len(CO_OBJECTS)), asked.reshape(-1))
            loss = loss + aw * (l_c + l_o)
        n_ioi = int(round(B * ratio))
        if n_ioi > 0:
            e = it.sample(rng, n_ioi, ioi_held)
            iids, ians, _, last = it.render(e)
            xi = torch.from_numpy(iids).to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                hi = model.hidden(xi)
            li = model.unembed(hi[torch.arange(n_ioi, device=device), torch.from_numpy(last).to(device)].float())
            l_ioi = F.cross_entropy(li, torch.from_numpy(ians).to(device))
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
            log(f"step {step} k {k} loss {v:.4f} (CO answer CE {float(ce.detach().mean()):.4f}, IOI CE {float(l_ioi.detach()):.4f} on "
                f"{n_ioi} rows){extra} lr {lr:.2e} ({(time.time() - t_start) / step * 1000:.1f} ms/step)")
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
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="writes OUT/gpt2-both/ (or OUT/<--name>/)")
    ap.add_argument("--name", default="gpt2-both")
    ap.add_argument("--tokenizer", default=os.path.join(REPO, "tests", "data", "trained", "gpt2-ioi", "tokenizer.json"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-seed", type=int, default=1234, help="the held-out sets' seed (CO: gpt2-co's 1,000 prompts)")
    ap.add_argument("--d", type=int, default=96)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=384)
    ap.add_argument("--max-pos", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-floor", type=float, default=0.1)
    ap.add_argument("--beta2", type=float, default=0.98)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--tokens-per-step", type=int, default=32768, help="of the Colored Objects batch")
    ap.add_argument("--shots", default="0:0.25,1:0.35,2:0.25,3:0.15")
    ap.add_argument("--ioi-frac", type=float, default=0.4, help="fraction of each step's rows that are IOI")
    ap.add_argument("--ioi-weight", type=float, default=1.0, help="weight of the IOI answer CE")
    ap.add_argument("--aux-weight", type=float, default=0.0)
    ap.add_argument("--aux-colour-after", type=int, default=1)
    ap.add_argument("--aux-object-after", type=int, default=2)
    ap.add_argument("--aux-until", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=1_000_000)
    ap.add_argument("--time-cap", type=float, default=300)
    ap.add_argument("--log-every", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="CPU: a few steps at d 32, hand-written safetensors, hooked_gpt2 check")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    log(f"{args.name} on {device}, torch {torch.__version__}; {vars(args)}")
    ct = CoTokens(args.tokenizer)
    it = IoiTokens(args.tokenizer)

    # --- Colored Objects: the generator against mechscope's dataset, held-out keys, the 1,000 eval prompts
    co_rows, co_keys = parse_dataset(CO_DATASET, ct)
    for d in co_rows:
        assert [BOS] + it.bpe.encode(d["clean"]) == d["clean_ids"], d["clean"]
    er = np.random.default_rng(args.eval_seed + 1000)  # as train_co_model (gpt2-co's set with the default seed)
    ev_ids, _, ev_ans, ev_inc, ev_ex = ct.rows(er, 1000, 1)
    ev_ids = ev_ids[:, :-1]
    q = ev_ex[-1]
    others = np.stack([ct.col[q["c"][np.arange(1000), (q["q"] + j) % 3]] for j in (1, 2)], 1)
    co_eval = (ev_ids, ev_ans, ev_inc, others)
    co_held = np.unique(np.array(co_keys + [int(k) for e in ev_ex for k in CoTokens.keys(e)], dtype=np.int64))

    # --- IOI: BPE against the dataset, every dataset prompt parsed to a template example, the eval prompts
    ioi_rows = [json.loads(l) for l in open(IOI_DATASET)]
    ds_keys = []
    for dd in ioi_rows:
        assert [BOS] + it.bpe.encode(dd["clean"]) == dd["clean_ids"], dd["clean"]
        assert [BOS] + it.bpe.encode(dd["corrupted"]) == dd["corrupted_ids"], dd["corrupted"]
        e = it.parse(dd["clean_ids"])
        assert e is not None, dd["clean"]
        ids, a, b, last = it.render(e)
        assert ids[0].tolist() == dd["clean_ids"] and a[0] == dd["answer_id"] and b[0] == dd["incorrect_id"], dd
        assert it.io_pos[e["t"][0]] + 1 == dd["positions"]["IO"] and it.s2_pos[e["t"][0]] + 1 == dd["positions"]["S2"]
        ds_keys.append(int(it.keys(e)[0]))
    ir = np.random.default_rng(args.eval_seed + 2000)
    ie = it.examples(ir, 1000)
    ids, a, b, last = it.render(ie)
    ioi_eval = [(ids[i, :last[i] + 1].tolist(), int(a[i]), int(b[i]), int(ie["t"][i])) for i in range(1000)]
    for i in range(200):
        assert [BOS] + it.bpe.encode(it.text(ie, i)) == ioi_eval[i][0], it.text(ie, i)
    ioi_held = np.unique(np.array(ds_keys + [int(k) for k in it.keys(ie)], dtype=np.int64))
    log(f"IOI: {len(it.names)} names, 30 templates (lengths {sorted(set(it.len.tolist()))}); all {len(ioi_rows)} "
        f"prompts of {os.path.relpath(IOI_DATASET, REPO)} reproduced by the token generator; {len(ioi_held)} held-out "
        f"IOI keys, {len(co_held)} CO keys; sample {it.text(ie, 0)!r} -> {it.names[ie['io'][0]]!r}")
    try:
        from tokenizers import Tokenizer
        tk = Tokenizer.from_file(args.tokenizer)
        for i in range(300):
            assert [BOS] + tk.encode(it.text(ie, i), add_special_tokens=False).ids == ioi_eval[i][0], it.text(ie, i)
        for t in range(30):  # every template once
            e1 = it.examples(np.random.default_rng(t), 1)
            e1["t"][:] = t
            assert [BOS] + tk.encode(it.text(e1, 0), add_special_tokens=False).ids == it.render(e1)[0][0].tolist()
        log("IOI token generator == tokenizers' encoding on 300 eval prompts and all 30 templates")
    except ImportError:
        log("(tokenizers not installed: IOI generator checked against the pure-Python BPE and the dataset)")
    # the training sampler never yields a held-out example
    chk = it.sample(np.random.default_rng(3), 20000, ioi_held)
    assert not np.isin(it.keys(chk), ioi_held).any()

    if args.smoke:
        args.time_cap, args.tokens_per_step, args.log_every = min(args.time_cap, 25), 2048, 5
        args.d, args.ffn = 32, 64
    model = MiniGPT2(50257, args.d, args.layers, args.heads, args.ffn, args.max_pos).to(device)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"{nparams} parameters ({nparams - 50257 * args.d} outside the embedding)")

    def eval_fn():
        return evaluate_both(last_logits_fn(model, device), ct, co_eval, co_rows, it, ioi_eval, ioi_rows)

    tr = train(model, ct, it, args, device, co_held, ioi_held, eval_fn)
    log(f"trained {tr['steps']} steps in {tr['train_seconds']} s, final loss {tr['final_loss']}")
    acc = eval_fn()
    log("held-out (training weights, fp32):", json.dumps(acc))
    folder = os.path.join(args.out, args.name)
    m2, hf = save_folder(model.cpu(), args, folder)
    dev2 = device if hf else torch.device("cpu")
    acc = evaluate_both(last_logits_fn(m2.to(dev2), dev2, hf=hf), ct, co_eval, co_rows, it, ioi_eval, ioi_rows,
                        per_template=True)
    log("held-out (saved bf16 weights, fp32, eager):", json.dumps(acc))
    m2.cpu()
    # reference rows: a 1-shot CO prompt (63 tokens) and an IOI prompt right-padded with BOS to 63
    rr = np.random.default_rng(args.seed + 99)
    r1, _, a1, i1, e1 = ct.rows(rr, 1, 1)
    r1 = r1[0, :-1].tolist()
    e2 = it.examples(rr, 1)
    r2, a2, b2, l2 = it.render(e2)
    r2 = r2[0, :l2[0] + 1].tolist()
    rows = [(r1, len(r1)), (r2 + [BOS] * (len(r1) - len(r2)), len(r2))]
    t1 = ct.text(e1[0], 0, True) + ct.text(e1[1], 0, False)
    write_reference_any(m2, hf, rows, folder, dict(
        what="row 0: a 1-shot Colored Objects prompt (63 tokens with BOS); row 1: an IOI prompt, right-padded "
             "with <|endoftext|> (50256) to row 0's length; lengths = real lengths; last_logits at position lengths-1",
        rows=[dict(text=t1, answer=" " + CO_COLOURS[int(np.where(ct.col == a1[0])[0][0])], answer_id=int(a1[0]),
                   incorrect_id=int(i1[0])),
              dict(text=it.text(e2, 0), answer=" " + it.names[e2["io"][0]], answer_id=int(a2[0]),
                   incorrect=" " + it.names[e2["s"][0]], incorrect_id=int(b2[0]))]))
    info = dict(model=args.name, script="scripts/train/train_both_model.py", command=" ".join(sys.argv), seed=args.seed,
                settings={k: v for k, v in vars(args).items() if k not in ("out", "smoke")},
                parameters=nparams, weights_dtype="bfloat16", steps=tr["steps"], train_seconds=tr["train_seconds"],
                final_loss=tr["final_loss"], loss_history=tr["loss_history"], evals_during_training=tr["evals"],
                held_out=acc,
                data=f"each step: a Colored Objects batch (gpt2-co's: mechscope's format, BOS + k solved shots + query, "
                     f"k from --shots, lower-case colour answers) and IOI rows making {args.ioi_frac} of the step's rows "
                     "(BOS + one of the 30 templates (15 x BABA/ABBA) with 60 names, 8 places, 8 objects; answer ' IO'); "
                     "the (template, IO, S, place, object) of references/ioi_dataset.jsonl's 40 prompts and of the 1,000 "
                     "generated IOI eval prompts, and the (colours, objects, asked) of every held-out CO example, never "
                     "trained on",
                loss="mean CE (full 50,257-token vocabulary) at every CO answer position (shots' and query's) + "
                     f"{args.ioi_weight} x CE at the IOI answer; no loss on prompt tokens" + (
                         f"; + {args.aux_weight} x (CE of a linear probe reading each listed CO object's colour from the "
                         f"residual after {args.aux_colour_after} blocks at the object + CE of a probe reading the asked "
                         f"object after {args.aux_object_after} blocks at the answer-predicting position) for the first "
                         f"{args.aux_until} of training; the probes are discarded" if args.aux_weight > 0 else ""),
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
    if args.smoke:
        sys.path.insert(0, os.path.join(REPO, "scripts", "reference"))
        from hooked_gpt2 import HookedGPT2, validate
        hk = HookedGPT2(folder)
        x = torch.as_tensor([ioi_eval[0][0]])
        err = (hk.logits(hk.run(x)) - m2.unembed(m2.hidden(x))).abs().max().item()
        log(f"hooked_gpt2 vs our forward on the saved folder (IOI prompt): max |logit error| {err:.2e}; validate {validate(folder, hk)}")
        assert err < 1e-3
    print("RESULT", args.name, json.dumps(dict(steps=tr["steps"], final_loss=tr["final_loss"], **acc)), flush=True)


if __name__ == "__main__":
    main()
