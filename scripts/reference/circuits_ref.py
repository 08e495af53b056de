"""Reference port: IOI (Wang et al. 2022, arXiv 2211.00593) and Colored Objects (Merullo et al. 2023,
arXiv 2310.08744) causal protocols (issue #19).

Written from the papers and the algorithms of the official code (read, not copied):
redwoodresearch/Easy-Transformer @ea15315 (easy_transformer/ioi_utils.py path_patching,
easy_transformer/ioi_circuit_extraction.py + experiments.py EasyAblation for mean ablation,
experiments.py check_copy_circuit) and jmerullo/circuit_reuse @e7cc30e (patching_utils.py path_patching,
patching_cobjs.py). No mechscope code is imported. Runs on hooked_gpt2.py (fp32, CPU), checked here
against reference.safetensors.

Inputs: mechscope `dataset` JSONL files (clean_ids, corrupted_ids of one length, answer_id,
incorrect_id, template, positions {ROLE: index}); IOI corruption ABC, CO corruption mindiff. The CO
roles OBJ1, OBJ1+1, OBJ2 are computed here from the ids (see co_roles). Metric: LD = logit[END, answer]
- logit[END, incorrect], END the last position; every mean is over ALL prompts. Prompts are run in
groups of equal length (no padding).

Sections of each JSON: metric, accuracy, activation_patching, path_patching, circuit, knockout, dla,
copy_score (IOI), intervention (CO), overlap, sanity, provenance. README.md (section "Circuits") lists
every choice and where the official code differs or is silent.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from hooked_gpt2 import HookedGPT2, validate  # noqa: E402

ROLES = {"ioi": ["IO", "S1", "S1+1", "S2", "END"],
         "co": ["ANSWER", "INCORRECT1", "INCORRECT2", "OBJ1", "OBJ1+1", "OBJ2", "END"]}
DEFAULT_PP = {"ioi": "logits@END;q:3.0,3.1@END;v:2.0,2.2@S2;k:1.1,2.3@S1+1",
              "co": "logits@END;q:3.0,3.1@END;v:2.0,2.2@OBJ2;k:1.1,2.3@OBJ1+1"}
DEFAULT_STAGES = {"ioi": "logits@END,q@END,v@S2,k@S1+1", "co": "logits@END,q@END,v@OBJ2,k@OBJ1+1"}
CIRCUIT_VARIANT = {"ioi": "wang", "co": "merullo"}


def hname(l, h):
    return f"{l}.{h}"


# ==================================================================================================
# data
class Group:
    """Prompts of one token length: clean/corrupted ids [B, n], answer/incorrect ids [B], role positions
    {ROLE: [B]}, idx = their row numbers in the dataset."""

    def __init__(self, rows, idx):
        self.idx = idx
        self.clean = torch.tensor([rows[i]["clean_ids"] for i in idx], dtype=torch.long)
        self.corr = torch.tensor([rows[i]["corrupted_ids"] for i in idx], dtype=torch.long)
        self.ans = torch.tensor([rows[i]["answer_id"] for i in idx], dtype=torch.long)
        self.inc = torch.tensor([rows[i]["incorrect_id"] for i in idx], dtype=torch.long)
        self.pos = {r: torch.tensor([rows[i]["positions"][r] for i in idx], dtype=torch.long) for r in rows[idx[0]]["positions"]}
        self.B, self.n = self.clean.shape

    def posmask(self, role):
        """[B, n] bool: True at each prompt's role position (END: the last position)."""
        m = torch.zeros(self.B, self.n, dtype=torch.bool)
        m[torch.arange(self.B), self.pos[role]] = True
        return m


def vocab_ids(model_dir, words):
    """GPT-2 byte-level BPE ids of single-token words, from the model folder's tokenizer.json."""
    with open(os.path.join(model_dir, "tokenizer.json")) as f:
        vocab = json.load(f)["model"]["vocab"]
    return [vocab[w.replace(" ", "\u0120")] for w in words]


def find_all(seq, sub, lo=0, hi=None):
    hi = len(seq) if hi is None else hi
    return [i for i in range(lo, hi - len(sub) + 1) if seq[i:i + len(sub)] == sub]


def co_roles(ids, tok):
    """OBJ1: last token of the queried object's mention in the QUERY example's item list (the query is
    the last "Q:" example; the queried object = the tokens between "What color is the" and "?" of the
    query); OBJ1+1 = OBJ1 + 1; OBJ2: last token of the object in the query's "What color is the {o}?"."""
    what = find_all(ids, tok["what_color_is_the"])
    if not what:
        raise SystemExit("co_roles: no ' What color is the' in a prompt")
    w = what[-1]
    o0 = w + len(tok["what_color_is_the"])
    qm = ids.index(tok["?"], o0)
    obj = ids[o0:qm]
    qs = find_all(ids, tok["Q:"], 0, w)
    if not qs or not obj:
        raise SystemExit("co_roles: no query 'Q:' / empty object")
    hits = find_all(ids, obj, qs[-1], w)
    if len(hits) != 1:
        raise SystemExit(f"co_roles: the queried object occurs {len(hits)} times in the query's item list")
    return {"OBJ1": hits[0] + len(obj) - 1, "OBJ1+1": hits[0] + len(obj), "OBJ2": qm - 1}


def load_task(path, task, model_dir):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    tok = None
    if task == "co":
        t = vocab_ids(model_dir, [" What", " color", " is", " the", "?", "Q", ":"])
        tok = {"what_color_is_the": t[0:4], "?": t[4], "Q:": t[5:7]}
    for r in rows:
        n = len(r["clean_ids"])
        if len(r["corrupted_ids"]) != n or r["positions"]["END"] != n - 1:
            raise SystemExit(f"{path}: clean/corrupted lengths differ or END is not the last position")
        if task == "co":
            mine = co_roles(r["clean_ids"], tok)
            given = {k: r["positions"][k] for k in mine if k in r["positions"]}
            if any(given[k] != mine[k] for k in given):
                raise SystemExit(f"{path}: the dataset's {given} disagree with the roles computed here {mine}")
            r["positions"].update(mine)
        missing = [x for x in ROLES[task] if x not in r["positions"]]
        if missing:
            raise SystemExit(f"{path}: roles {missing} missing")
    by_len = {}
    for i, r in enumerate(rows):
        by_len.setdefault(len(r["clean_ids"]), []).append(i)
    groups = [Group(rows, by_len[n]) for n in sorted(by_len)]
    return rows, groups


def scatter(groups, per_group, N):
    """per-group lists/tensors [B] -> a list in dataset order."""
    out = [None] * N
    for g, v in zip(groups, per_group):
        v = v.tolist() if torch.is_tensor(v) else v
        for i, x in zip(g.idx, v):
            out[i] = x
    return out


def mean(xs):
    return float(sum(float(x) for x in xs) / len(xs))


# ==================================================================================================
# runs and metrics
def ld_rows(model, final, g, reps=1):
    """LD per row of a run of `reps` copies of the group (rows copy-major) -> [reps, B]."""
    fe = final[:, -1]
    return model.logit_diff(fe, g.ans.repeat(reps), g.inc.repeat(reps)).view(reps, g.B)


def accuracy_block(model, groups, finals, N):
    """io_above_s (LD > 0), mean_io_prob (softmax prob of the answer at END), top1 (argmax == answer),
    with per-prompt values and the top-1 margins logit[answer] - max_{v != answer} logit[v]."""
    ld, prob, top1, margin = [], [], [], []
    for g, fin in zip(groups, finals):
        lg = model.logits(fin[:, -1])  # [B, V]
        la = lg[torch.arange(g.B), g.ans]
        other = lg.clone()
        other[torch.arange(g.B), g.ans] = -float("inf")
        ld.append(model.logit_diff(fin[:, -1], g.ans, g.inc))
        prob.append(torch.softmax(lg.double(), -1)[torch.arange(g.B), g.ans].float())
        top1.append(lg.argmax(-1) == g.ans)
        margin.append(la - other.max(-1).values)
    ld, prob, top1, margin = (scatter(groups, x, N) for x in (ld, prob, top1, margin))
    return {"mean_ld": mean(ld), "io_above_s": mean([x > 0 for x in ld]), "mean_io_prob": mean(prob),
            "top1": mean(top1),
            "per_prompt": {"ld": ld, "io_prob": prob, "top1": top1, "top1_margin": margin}}


def baseline(model, groups, N):
    """Clean and corrupted runs with everything cached."""
    base = {"clean_cache": [], "corr_cache": [], "clean_final": [], "corr_final": []}
    for g in groups:
        for kind, ids in (("clean", g.clean), ("corr", g.corr)):
            c = {}
            base[kind + "_final"].append(model.run(ids, cache=c))
            base[kind + "_cache"].append(c)
    base["clean_ld"] = scatter(groups, [ld_rows(model, f, g)[0] for g, f in zip(groups, base["clean_final"])], N)
    base["corr_ld"] = scatter(groups, [ld_rows(model, f, g)[0] for g, f in zip(groups, base["corr_final"])], N)
    base["clean"], base["corrupt"] = mean(base["clean_ld"]), mean(base["corr_ld"])
    return base


# ==================================================================================================
# 2. activation patching (denoising z)
def activation_patching(model, groups, base, roles, N):
    L, H = model.L, model.H
    sites = ["ALL"] + roles
    sums = {s: torch.zeros(L, H, dtype=torch.float64) for s in sites}
    for gi, g in enumerate(groups):
        for s in sites:
            pm = torch.ones(g.B, g.n, dtype=torch.bool) if s == "ALL" else g.posmask(s)
            # rows head-major: copy h patches head h
            mask = torch.zeros(H, g.B, g.n, H, 1, dtype=torch.bool)
            for h in range(H):
                mask[h, :, :, h, 0] = pm
            for l in range(L):
                cz = base["clean_cache"][gi][f"blocks.{l}.attn.hook_z"]

                def fn(z, cz=cz, mask=mask):
                    return torch.where(mask, cz.unsqueeze(0), z.view(H, g.B, g.n, H, -1)).reshape(H * g.B, g.n, H, -1)

                fin = model.run(g.corr.repeat(H, 1), hooks=[(f"blocks.{l}.attn.hook_z", fn)])
                sums[s][l] += ld_rows(model, fin, g, H).double().sum(-1)
    clean, corr = base["clean"], base["corrupt"]
    grid = {s: (sums[s] / N) for s in sites}
    score = {s: ((grid[s] - corr) / (clean - corr)) for s in sites}
    return {
        "method": "denoising: corrupted run, head (l,h)'s hook_z replaced by the clean run's z; score = (mean patched LD - corrupt)/(clean - corrupt)",
        "clean": clean, "corrupt": corr,
        "head_out_all": score["ALL"].tolist(),
        "head_out_by_role": {r: score[r].tolist() for r in roles},
        "patched_ld_all": grid["ALL"].tolist(),
        "patched_ld_by_role": {r: grid[r].tolist() for r in roles},
    }


# ==================================================================================================
# 3. path patching
def parse_receivers(spec):
    """'logits' -> [('logits',)]; 'q:3.0,3.1' -> [(3,0,'q'), (3,1,'q')]."""
    if spec == "logits":
        return [("logits",)]
    site, heads = spec.split(":")
    assert site in ("q", "k", "v"), site
    return [(int(x.split(".")[0]), int(x.split(".")[1]), site) for x in heads.split(",")]


def receivers_json(recv):
    return [{"site": "logits"} if r[0] == "logits" else {"site": r[2], "layer": r[0], "head": r[1]} for r in recv]


def receiver_layer(r, L):
    return L if r[0] == "logits" else r[0]


def wang_senders(recv, L, H):
    """Every head in a layer below the highest receiver layer (the logits count as layer L)."""
    top = max(receiver_layer(r, L) for r in recv)
    return [(l, h) for l in range(top) for h in range(H)]


def merullo_senders(recv, L, H):
    """patching_utils truncate_to_max_layer: layers 0..(lowest head-receiver layer) inclusive, all layers
    when the receivers are the residual stream; receiver heads skipped."""
    lays = [r[0] for r in recv if r[0] != "logits"]
    top = min(lays) + 1 if lays and min(lays) < L else L
    rh = {(r[0], r[1]) for r in recv if r[0] != "logits"}
    return [(l, h) for l in range(top) for h in range(H) if (l, h) not in rh]


def path_patch_group(model, g, cc, rc, variant, recv, role, sender_sets, freeze_mlps, want_recorded=False):
    """One group, S = len(sender_sets) copies (rows copy-major). Returns LD [S, B] (and pass C's recorded
    receiver values). sender_sets: list of lists of (layer, head) patched together.
    Pass A/B caches: rc (corrupted), cc (clean). Pass C: clean ids; every other head's z frozen to the
    clean value (wang: every position; merullo: at the role position only), the sender heads' z at the
    role position set to the corrupted value, MLPs recomputed or frozen (wang: every position; merullo:
    the role position); receivers' q/k/v (never hooked in pass C) and, for the logits receiver, the last
    block's resid_post are recorded. Pass D: clean ids, receivers replaced at the role position (logits
    receiver: resid_post at END) by the recorded values."""
    L, H = model.L, model.H
    S, B, n = len(sender_sets), g.B, g.n
    pm = g.posmask(role)  # [B, n]
    hooks = []
    for l in range(L):
        send = torch.zeros(S, B, n, H, 1, dtype=torch.bool)
        for s, heads in enumerate(sender_sets):
            for (ls, hs) in heads:
                if ls == l:
                    send[s, :, :, hs, 0] = pm
        cz, rz = cc[f"blocks.{l}.attn.hook_z"].unsqueeze(0), rc[f"blocks.{l}.attn.hook_z"].unsqueeze(0)
        if variant == "wang":
            def fz(z, cz=cz, rz=rz, send=send):
                return torch.where(send, rz, cz.expand(S, -1, -1, -1, -1)).reshape(S * B, n, H, -1)
        else:
            def fz(z, cz=cz, rz=rz, send=send):
                z = torch.where(pm.view(1, B, n, 1, 1), cz, z.view(S, B, n, H, -1))
                return torch.where(send, rz, z).reshape(S * B, n, H, -1)
        hooks.append((f"blocks.{l}.attn.hook_z", fz))
        if freeze_mlps:
            cm = cc[f"blocks.{l}.hook_mlp_out"].unsqueeze(0)
            if variant == "wang":
                def fm(m, cm=cm):
                    return cm.expand(S, -1, -1, -1).reshape(S * B, n, -1)
            else:
                def fm(m, cm=cm):
                    return torch.where(pm.view(1, B, n, 1), cm, m.view(S, B, n, -1)).reshape(S * B, n, -1)
            hooks.append((f"blocks.{l}.hook_mlp_out", fm))
    names = {}
    for r in recv:
        if r[0] == "logits":
            names.setdefault(f"blocks.{L - 1}.hook_resid_post", None)
        else:
            names.setdefault(f"blocks.{r[0]}.attn.hook_{r[2]}", []).append(r[1])
    rec = {}
    model.run(g.clean.repeat(S, 1), hooks=hooks, cache=rec, cache_names=set(names))
    # pass D
    hooks_d = []
    endm = torch.zeros(B, n, dtype=torch.bool)
    endm[:, n - 1] = True
    for name, heads in names.items():
        if heads is None:
            def fd(t, v=rec[name]):
                return torch.where(endm.view(1, B, n, 1), v.view(S, B, n, -1), t.view(S, B, n, -1)).reshape(S * B, n, -1)
        else:
            hm = torch.zeros(H, dtype=torch.bool)
            hm[heads] = True
            mask = (pm.view(B, n, 1) & hm.view(1, 1, H)).view(1, B, n, H, 1)

            def fd(t, v=rec[name], mask=mask):
                return torch.where(mask, v.view(S, B, n, H, -1), t.view(S, B, n, H, -1)).reshape(S * B, n, H, -1)
        hooks_d.append((name, fd))
    fin = model.run(g.clean.repeat(S, 1), hooks=hooks_d)
    ld = ld_rows(model, fin, g, S)
    return (ld, rec) if want_recorded else ld


def path_patching(model, groups, base, N, variant, recv, role, senders, freeze_mlps):
    """Mean patched LD per sender (over all prompts); effect = (clean - patched)/(clean - corrupt);
    scores: wang 100 (patched - clean)/clean, merullo -100 (patched - clean)/(corrupt - clean);
    non-senders: patched_ld null, effect 0, score 0."""
    L, H = model.L, model.H
    clean, corr = base["clean"], base["corrupt"]
    tot = torch.zeros(len(senders), dtype=torch.float64)
    if senders:
        for gi, g in enumerate(groups):
            ld = path_patch_group(model, g, base["clean_cache"][gi], base["corr_cache"][gi], variant, recv, role,
                                  [[s] for s in senders], freeze_mlps)
            tot += ld.double().sum(-1)
    patched = [[None] * H for _ in range(L)]
    effect = [[0.0] * H for _ in range(L)]
    scores = [[0.0] * H for _ in range(L)]
    for i, (l, h) in enumerate(senders):
        p = float(tot[i] / N)
        patched[l][h] = p
        effect[l][h] = (clean - p) / (clean - corr)
        scores[l][h] = 100.0 * (p - clean) / clean if variant == "wang" else -100.0 * (p - clean) / (corr - clean)
    return {"variant": variant, "freeze_mlps": freeze_mlps, "receivers": receivers_json(recv), "position": role,
            "senders": [hname(*s) for s in senders], "clean": clean, "corrupt": corr,
            "patched_ld": patched, "effect": effect, "scores": scores,
            "score_convention": "100*(patched-clean)/clean" if variant == "wang" else "-100*(patched-clean)/(corrupt-clean)"}


def parse_pp(spec):
    """'logits@END;q:3.0,3.1@END;...' -> [(receivers, role)]."""
    out = []
    for item in spec.split(";"):
        item = item.strip()
        if item:
            r, role = item.rsplit("@", 1)
            out.append((parse_receivers(r), role))
    return out


# ==================================================================================================
# 4. circuit
def select_heads(effect, L, H, top_percent, rel, min_eff):
    """mechscope's rule: k = ceil(top_percent/100 * L*H - 1e-9); heads by |effect| descending (stable,
    ties by (layer, head)); take while fewer than k are taken and |e| >= rel * max|e| and |e| >= min_eff
    and |e| > 0; stop at the first failing head. Returns (selected, margins)."""
    k = math.ceil(top_percent / 100.0 * L * H - 1e-9)
    items = sorted(((abs(effect[l][h]), l, h) for l in range(L) for h in range(H)), key=lambda t: (-t[0], t[1], t[2]))
    mx = items[0][0]
    cut = rel * mx
    kept, decisions, stop, dropped = [], [], "exhausted", None
    for rank, (a, l, h) in enumerate(items):
        fails = []
        if len(kept) >= k:
            fails.append("top_k")
        if not a >= cut:
            fails.append("rel_threshold")
        if not a >= min_eff:
            fails.append("min_effect")
        if not a > 0:
            fails.append("zero")
        decisions.append({"rank": rank, "head": hname(l, h), "abs_effect": a, "kept": not fails, "fails": fails,
                          "margin_rel": a - cut, "margin_min": a - min_eff})
        if fails:
            stop, dropped = fails[0], (a, l, h)
            break
        kept.append((l, h))
    gap = (abs(effect[kept[-1][0]][kept[-1][1]]) - dropped[0]) if kept and dropped else None
    near = [abs(d["margin_rel"]) for d in decisions] + [abs(d["margin_min"]) for d in decisions]
    if gap is not None:
        near.append(abs(gap))
    margins = {"k": k, "max_abs_effect": mx, "rel_cut": cut, "min_effect": min_eff, "stop_reason": stop,
               "gap_last_kept_first_dropped": gap, "closest_to_a_cut": min(near) if near else None,
               "decisions": decisions}
    return kept, margins


def discover(model, groups, base, N, task, variant, stage_plan, sel):
    L, H = model.L, model.H
    stages, prev = [], None
    for si, (site, role) in enumerate(stage_plan[: sel["max_stages"]]):
        if si == 0:
            if site != "logits":
                raise SystemExit("circuit: stage 1 must be logits")
            recv = [("logits",)]
        else:
            recv = [(l, h, site) for (l, h) in prev]
        # Each paper's sender set: Wang every head below the highest receiver; Merullo (truncate_to_max_layer)
        # layers up to the lowest receiver layer, receivers excluded.
        senders = (merullo_senders if variant == "merullo" else wang_senders)(recv, L, H)
        r = path_patching(model, groups, base, N, variant, recv, role, senders, False)
        chosen, margins = select_heads(r["effect"], L, H, sel["top_percent"], sel["rel_threshold"], sel["min_effect"])
        stages.append({"stage": si + 1, "receivers": r["receivers"], "site": site, "position": role, "variant": variant,
                       "freeze_mlps": False, "senders": r["senders"], "patched_ld": r["patched_ld"], "effect": r["effect"],
                       "scores": r["scores"], "selected": [hname(*x) for x in chosen], "margins": margins})
        if not chosen:
            break
        prev = chosen
    heads = {}
    for st in stages:
        for hn in st["selected"]:
            e = heads.setdefault(hn, {"head": hn, "layer": int(hn.split(".")[0]), "index": int(hn.split(".")[1]),
                                      "first_stage": st["stage"], "stages": [], "positions": []})
            e["stages"].append(st["stage"])
            if st["position"] not in e["positions"]:
                e["positions"].append(st["position"])
    hl = sorted(heads.values(), key=lambda e: (e["layer"], e["index"]))
    return {"variant": variant, "settings": {**sel, "k": math.ceil(sel["top_percent"] / 100.0 * L * H - 1e-9),
                                              "freeze_mlps": False,
                                              "senders": ("layers up to the lowest receiver layer, receivers excluded" if variant == "merullo"
                                                          else "every head below the highest receiver layer"),
                                              "stage_plan": [f"{s}@{p}" for s, p in stage_plan]},
            "stages": stages, "heads": hl}


# ==================================================================================================
# 5. knockout (mean ablation)
def knockout(model, groups, base, rows, N, task, circuit):
    """Wang's faithfulness: means of z per template (IOI) / per token length (CO) over the corrupted
    prompts; every (head, position) not kept takes its group's mean, all heads at once; MLPs untouched."""
    L, H = model.L, model.H
    key = (lambda i: ("template", rows[i]["template"], len(rows[i]["clean_ids"]))) if task == "ioi" else (lambda i: ("length", len(rows[i]["clean_ids"])))
    where = {}
    for gi, g in enumerate(groups):
        for b, i in enumerate(g.idx):
            where[i] = (gi, b)
    members = {}
    for i in range(N):
        members.setdefault(key(i), []).append(i)
    means = {}  # key -> [L] of [n, H, hd]
    for kk, ids in members.items():
        means[kk] = [torch.stack([base["corr_cache"][where[i][0]][f"blocks.{l}.attn.hook_z"][where[i][1]] for i in ids]).mean(0) for l in range(L)]
    lens = {}
    for kk in members:
        if task == "ioi":
            lens.setdefault(kk[1], set()).add(kk[2])
    templates_with_two_lengths = sorted(t for t, s in lens.items() if len(s) > 1)

    def run(keep_fn):
        finals = []
        for gi, g in enumerate(groups):
            hooks = []
            for l in range(L):
                m = torch.stack([means[key(i)][l] for i in g.idx])  # [B, n, H, hd]
                keep = torch.zeros(g.B, g.n, H, 1, dtype=torch.bool)
                for h in range(H):
                    keep[:, :, h, 0] = keep_fn(g, l, h)

                def fz(z, m=m, keep=keep):
                    return torch.where(keep, z, m)
                hooks.append((f"blocks.{l}.attn.hook_z", fz))
            finals.append(model.run(g.clean, hooks=hooks))
        return accuracy_block(model, groups, finals, N)

    cheads = {(e["layer"], e["index"]): e["positions"] for e in circuit["heads"]}

    def keep_circuit(g, l, h):
        m = torch.zeros(g.B, g.n, dtype=torch.bool)
        for role in cheads.get((l, h), []):
            m |= g.posmask(role)
        return m

    full = accuracy_block(model, groups, base["clean_final"], N)
    out = {
        "method": "mean ablation of hook_z; means per " + ("template" if task == "ioi" else "token length") + " over the corrupted prompts; MLPs not ablated",
        "kept": [{"head": hname(l, h), "positions": p} for (l, h), p in sorted(cheads.items())],
        "mean_groups": {("t%d_n%d" % (k[1], k[2]) if task == "ioi" else "n%d" % k[1]): len(v) for k, v in sorted(members.items())},
        "full_model": full,
        "circuit": run(keep_circuit),
        "empty": run(lambda g, l, h: torch.zeros(g.B, g.n, dtype=torch.bool)),
        "circuit_all_positions": run(lambda g, l, h: torch.full((g.B, g.n), (l, h) in cheads, dtype=torch.bool)),
        "keep_all": run(lambda g, l, h: torch.ones(g.B, g.n, dtype=torch.bool)),
    }
    if templates_with_two_lengths:
        out["templates_split_by_length"] = templates_with_two_lengths
    fm, fc = out["full_model"]["mean_ld"], out["circuit"]["mean_ld"]
    out["F_M"], out["F_C"], out["F_empty"] = fm, fc, out["empty"]["mean_ld"]
    out["F_C_all_positions"] = out["circuit_all_positions"]["mean_ld"]
    out["faithfulness_abs_diff"] = abs(fm - fc)
    out["faithfulness_ratio"] = fc / fm
    return out


# ==================================================================================================
# 6. direct logit attribution
def dla(model, groups, base, N):
    """Head (l,h) at END: o = z[END,h] W_O[h] (no bias), centred over d_model, / the clean run's final-LN
    scale at END, * ln_f.weight, . (W_U[:,answer] - W_U[:,incorrect]). MLP l: mlp_out[END] the same way.
    Also the rest of the decomposition (embeddings, b_O, ln_f.bias) to check that the parts sum to LD."""
    L, H = model.L, model.H
    heads, mlps, rest = [], [], []
    for gi, g in enumerate(groups):
        c = base["clean_cache"][gi]
        scale = c["ln_final.hook_scale"][:, -1]  # [B, 1]
        du = (model.W_U[:, g.ans] - model.W_U[:, g.inc]).T * model.lnf_w  # [B, d]

        def proj(x):  # x [B, ..., d]
            x = x - x.mean(-1, keepdim=True)
            sh = [g.B] + [1] * (x.dim() - 2) + [model.d]
            return (x / scale.view([g.B] + [1] * (x.dim() - 1)) * du.view(sh)).sum(-1)

        hh = torch.stack([proj(torch.einsum("bhe,hed->bhd", c[f"blocks.{l}.attn.hook_z"][:, -1], model.blocks[l]["W_O"])) for l in range(L)], 1)  # [B, L, H]
        mm = torch.stack([proj(c[f"blocks.{l}.hook_mlp_out"][:, -1]) for l in range(L)], 1)  # [B, L]
        other = proj(c["hook_embed"][:, -1] + c["hook_pos_embed"][:, -1] + sum(model.blocks[l]["b_O"] for l in range(L)).expand(g.B, -1))
        other = other + (model.lnf_b * (model.W_U[:, g.ans] - model.W_U[:, g.inc]).T).sum(-1)
        heads.append(hh)
        mlps.append(mm)
        rest.append(other)
    hp = scatter(groups, heads, N)
    mp = scatter(groups, mlps, N)
    rp = scatter(groups, rest, N)
    total = [sum(sum(r) for r in hp[i]) + sum(mp[i]) + rp[i] for i in range(N)]
    return {"direction": "W_U[:,answer] - W_U[:,incorrect] at END, final LN by the clean run's cached scale (TransformerLens apply_ln_to_stack)",
            "heads": [[mean([hp[i][l][h] for i in range(N)]) for h in range(H)] for l in range(L)],
            "mlp": [mean([mp[i][l] for i in range(N)]) for l in range(L)],
            "rest": mean(rp),
            "per_prompt_heads": hp, "per_prompt_mlp": mp}, max(abs(total[i] - base["clean_ld"][i]) for i in range(N))


# ==================================================================================================
# 7. copy score (IOI)
def copy_score(model, groups, base, N, k=5):
    """check_copy_circuit: x = resid_post of block 0 at IO/S1/S2 (clean); o = (ln_1^{(l)}(x) W_V[h] + b_V[h]) W_O[h];
    logits = unembed(ln_f(sign * o)); hit when the token at that position is in the top k."""
    L, H = model.L, model.H
    res = {}
    for sign, nm in ((1.0, "positive"), (-1.0, "negative")):
        hits = torch.zeros(L, H, dtype=torch.float64)
        minmarg = torch.full((L, H), float("inf"), dtype=torch.float64)
        for gi, g in enumerate(groups):
            x0 = base["clean_cache"][gi]["blocks.0.hook_resid_post"]
            ps = torch.stack([g.pos[r] for r in ("IO", "S1", "S2")], 1)  # [B, 3]
            x = x0[torch.arange(g.B).unsqueeze(1), ps]  # [B, 3, d]
            tgt = g.clean[torch.arange(g.B).unsqueeze(1), ps]  # [B, 3]
            for l in range(L):
                blk = model.blocks[l]
                y = model.ln(x, blk["ln1_w"], blk["ln1_b"])
                for h in range(H):
                    o = (y @ blk["W_V"][h] + blk["b_V"][h]) @ blk["W_O"][h]
                    lg = model.logits(model.ln_final(sign * o))  # [B, 3, V]
                    top = lg.topk(k, -1).indices
                    hit = (top == tgt.unsqueeze(-1)).any(-1)
                    hits[l, h] += hit.sum()
                    t = lg.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
                    oth = lg.scatter(-1, tgt.unsqueeze(-1), -float("inf")).topk(k, -1).values[..., k - 1]
                    minmarg[l, h] = min(minmarg[l, h], (t - oth).abs().min().double())
        res[nm] = (100.0 * hits / (3 * N)).tolist()
        res[nm + "_min_abs_margin"] = minmarg.tolist()
    res["k"] = k
    res["positions"] = ["IO", "S1", "S2"]
    res["note"] = "margin = logit[token] - k-th largest logit among the other tokens (hit iff > 0)"
    return res


# ==================================================================================================
# 8. intervention (CO)
def intervention(model, groups, base, N, heads, source):
    """Merullo's repair: the chosen heads' attention row at END set to 0.5 on INCORRECT1 and 0.5 on
    INCORRECT2 (0 elsewhere) between softmax and the value product; and, as a check, 1.0 on ANSWER."""
    L = model.L

    def run(targets):
        finals = []
        for g in groups:
            hooks = []
            for l in range(L):
                hs = [h for (ll, h) in heads if ll == l]
                if not hs:
                    continue
                row = torch.zeros(g.B, g.n)
                for r in targets:
                    row[torch.arange(g.B), g.pos[r]] += 1.0 / len(targets)

                def fp(a, hs=hs, row=row):
                    a = a.clone()
                    for h in hs:
                        a[:, h, -1, :] = row
                    return a
                hooks.append((f"blocks.{l}.attn.hook_pattern", fp))
            finals.append(model.run(g.clean, hooks=hooks))
        return accuracy_block(model, groups, finals, N)

    before = accuracy_block(model, groups, base["clean_final"], N)
    return {"heads": [hname(*h) for h in heads], "heads_source": source, "position": "END",
            "before": before, "after_incorrect": run(["INCORRECT1", "INCORRECT2"]), "after_answer": run(["ANSWER"])}


def top_abs(effect, L, H, n):
    items = sorted(((abs(effect[l][h]), l, h) for l in range(L) for h in range(H)), key=lambda t: (-t[0], t[1], t[2]))
    return [(l, h) for _, l, h in items[:n]], (items[n - 1][0] - items[n][0]) if len(items) > n else None


# ==================================================================================================
# 9. overlap
def overlap(ci, cc):
    a = {e["head"] for e in ci["heads"]}
    b = {e["head"] for e in cc["heads"]}
    sa = {(s["stage"], x) for s in ci["stages"] for x in s["selected"]}
    sb = {(s["stage"], x) for s in cc["stages"] for x in s["selected"]}
    key = lambda x: tuple(int(t) for t in x.split("."))
    u = a | b
    return {"ioi_heads": sorted(a, key=key), "co_heads": sorted(b, key=key),
            "shared": sorted(a & b, key=key), "ioi_only": sorted(a - b, key=key), "co_only": sorted(b - a, key=key),
            "jaccard": len(a & b) / len(u) if u else None,
            "overlap_min": len(a & b) / min(len(a), len(b)) if a and b else None,
            "stage_pairs": {"ioi": [[s, x] for s, x in sorted(sa, key=lambda t: (t[0], key(t[1])))],
                            "co": [[s, x] for s, x in sorted(sb, key=lambda t: (t[0], key(t[1])))],
                            "intersection": len(sa & sb), "union": len(sa | sb)}}


# ==================================================================================================
def sanity_checks(model, groups, base, N, task):
    L, H = model.L, model.H
    out = {}
    # (a) every head's z (all positions) into the corrupted run reproduces the clean LD at END
    d = []
    for gi, g in enumerate(groups):
        hooks = [(f"blocks.{l}.attn.hook_z", (lambda z, cz=base["clean_cache"][gi][f"blocks.{l}.attn.hook_z"]: cz)) for l in range(L)]
        fin = model.run(g.corr, hooks=hooks)
        d.append((ld_rows(model, fin, g)[0] - torch.tensor([base["clean_ld"][i] for i in g.idx])).abs().max().item())
    out["all_heads_denoised_vs_clean_ld_max_abs"] = max(d)
    # (b) path patching to the logits with frozen MLPs is additive in the residual: sum over single senders of
    #     (recorded final resid - clean) equals the joint run's, every head a sender
    allh = [(l, h) for l in range(L) for h in range(H)]
    for variant in ("wang", "merullo"):
        dr, sum_ld, joint_ld = [], 0.0, 0.0
        for gi, g in enumerate(groups):
            cc, rc = base["clean_cache"][gi], base["corr_cache"][gi]
            sets = [[s] for s in allh] + [allh]
            ld, rec = path_patch_group(model, g, cc, rc, variant, [("logits",)], "END", sets, True, want_recorded=True)
            r = rec[f"blocks.{L - 1}.hook_resid_post"].view(len(sets), g.B, g.n, -1)[:, :, -1]
            clean_r = cc[f"blocks.{L - 1}.hook_resid_post"][:, -1]
            dr.append(((r[:-1] - clean_r).sum(0) - (r[-1] - clean_r)).abs().max().item())
            sum_ld += (ld[:-1].double() - torch.tensor([base["clean_ld"][i] for i in g.idx], dtype=torch.float64)).sum().item()
            joint_ld += ld[-1].double().sum().item()
        clean, corr = base["clean"], base["corrupt"]
        out[f"pp_logits_freeze_additivity_{variant}"] = {
            "resid_sum_vs_joint_max_abs": max(dr),
            "sum_of_effects": -(sum_ld / N) / (clean - corr),
            "joint_effect": (clean - joint_ld / N) / (clean - corr),
            "joint_patched_ld": joint_ld / N,
            "note": "equal up to the final LayerNorm's nonlinearity (the residual deltas add exactly)"}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--ioi-dataset", required=True)
    ap.add_argument("--co-dataset", required=True)
    ap.add_argument("--out-dir", required=True, help="writes circuits_{ioi,co}_<model folder name>.json")
    ap.add_argument("--ioi-pp", default=DEFAULT_PP["ioi"], help="path-patching runs: RECEIVERS@ROLE;... RECEIVERS = logits | q|k|v:L.H,L.H")
    ap.add_argument("--co-pp", default=DEFAULT_PP["co"])
    ap.add_argument("--ioi-stages", default=DEFAULT_STAGES["ioi"], help="circuit stage plan SITE@ROLE,...")
    ap.add_argument("--co-stages", default=DEFAULT_STAGES["co"])
    ap.add_argument("--top-percent", type=float, default=20.0)
    ap.add_argument("--rel-threshold", type=float, default=0.1)
    ap.add_argument("--min-effect", type=float, default=0.02)
    ap.add_argument("--max-stages", type=int, default=4)
    ap.add_argument("--co-intervention-heads", default="", help="L.H,L.H (default: the two highest-|effect| heads of CO stage 2)")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.time()
    model = HookedGPT2(a.model)
    L, H = model.L, model.H
    val = validate(a.model, model)
    if any(v > 1e-4 for v in val.values()):
        raise SystemExit(f"hooked forward disagrees with reference.safetensors: {val}")
    print(f"hooked forward vs reference.safetensors: {val}", flush=True)
    sel = {"top_percent": a.top_percent, "rel_threshold": a.rel_threshold, "min_effect": a.min_effect, "max_stages": a.max_stages}
    root = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    results, circuits = {}, {}
    for task, path, pp, stages_spec in (("ioi", a.ioi_dataset, a.ioi_pp, a.ioi_stages), ("co", a.co_dataset, a.co_pp, a.co_stages)):
        tt = time.time()
        rows, groups = load_task(path, task, a.model)
        N = len(rows)
        base = baseline(model, groups, N)
        roles = ROLES[task]
        res = {"analysis": "circuits", "task": task, "n_layers": L, "n_heads": H, "n_prompts": N,
               "roles": roles,
               "prompts": [{"clean_ids": r["clean_ids"], "corrupted_ids": r["corrupted_ids"], "answer_id": r["answer_id"],
                            "incorrect_id": r["incorrect_id"], "template": r["template"], "positions": r["positions"]} for r in rows]}
        res["metric"] = {"clean": base["clean"], "corrupt": base["corrupt"], "clean_minus_corrupt": base["clean"] - base["corrupt"],
                         "per_prompt": {"clean": base["clean_ld"], "corrupt": base["corr_ld"]}}
        res["warnings"] = []
        if abs(base["clean"] - base["corrupt"]) < 0.1:
            res["warnings"].append(f"clean - corrupt = {base['clean'] - base['corrupt']:.3g}: the model barely separates clean from corrupted "
                                   "prompts; every (x - corrupt)/(clean - corrupt) normalisation amplifies fp32 rounding of LD by "
                                   f"{1 / abs(base['clean'] - base['corrupt']):.3g}")
        res["accuracy"] = {"clean": accuracy_block(model, groups, base["clean_final"], N),
                           "corrupt": accuracy_block(model, groups, base["corr_final"], N)}
        res["activation_patching"] = activation_patching(model, groups, base, roles, N)
        print(f"[{task}] clean {base['clean']:.4f} corrupt {base['corrupt']:.4f}; activation patching done ({time.time() - tt:.1f}s)", flush=True)
        runs = []
        for recv, role in parse_pp(pp):
            for freeze in (False, True):
                for variant in ("wang", "merullo"):
                    snd = wang_senders(recv, L, H) if variant == "wang" else merullo_senders(recv, L, H)
                    runs.append(path_patching(model, groups, base, N, variant, recv, role, snd, freeze))
        res["path_patching"] = runs
        print(f"[{task}] path patching: {len(runs)} runs ({time.time() - tt:.1f}s)", flush=True)
        plan = [tuple(s.split("@")) for s in stages_spec.split(",")]
        circ = discover(model, groups, base, N, task, CIRCUIT_VARIANT[task], plan, sel)
        res["circuit"] = circuits[task] = circ
        print(f"[{task}] circuit: " + "; ".join(f"stage {s['stage']} {s['site']}@{s['position']} -> {s['selected']}" for s in circ["stages"]), flush=True)
        res["knockout"] = knockout(model, groups, base, rows, N, task, circ)
        res["dla"], dla_err = dla(model, groups, base, N)
        if task == "ioi":
            res["copy_score"] = copy_score(model, groups, base, N)
        else:
            if a.co_intervention_heads:
                iheads, src, gap = [tuple(int(x) for x in s.split(".")) for s in a.co_intervention_heads.split(",")], "command line", None
            else:
                st = next((s for s in circ["stages"] if s["stage"] == 2), circ["stages"][0])
                iheads, gap = top_abs(st["effect"], L, H, 2)
                src = f"the two highest-|effect| heads of circuit stage {st['stage']}"
            res["intervention"] = intervention(model, groups, base, N, iheads, src)
            res["intervention"]["margins"] = {"second_vs_third_abs_effect": gap}
        san = sanity_checks(model, groups, base, N, task)
        san["dla_sum_vs_ld_max_abs"] = dla_err
        san["knockout_keep_all_vs_clean_max_abs"] = max(abs(x - y) for x, y in zip(res["knockout"]["keep_all"]["per_prompt"]["ld"], base["clean_ld"]))
        eq = 0.0
        for i in range(0, len(runs), 2):
            w, m = runs[i], runs[i + 1]
            for l in range(L):
                for h in range(H):
                    if w["patched_ld"][l][h] is not None and m["patched_ld"][l][h] is not None:
                        eq = max(eq, abs(w["patched_ld"][l][h] - m["patched_ld"][l][h]))
        san["wang_vs_merullo_patched_ld_common_senders_max_abs"] = eq
        san["hooked_forward_vs_reference_safetensors"] = val
        res["sanity"] = san
        results[task] = res
        print(f"[{task}] done ({time.time() - tt:.1f}s); sanity {json.dumps(san)}", flush=True)
    ov = overlap(circuits["ioi"], circuits["co"])
    name = os.path.basename(os.path.abspath(a.model).rstrip("/"))
    common.set_backend(False)
    cmd = " ".join([os.path.relpath(os.path.abspath(sys.argv[0]), root)] + [os.path.relpath(x, root) if os.path.exists(x) else x for x in sys.argv[1:]])
    for task, path in (("ioi", a.ioi_dataset), ("co", a.co_dataset)):
        res = results[task]
        res["overlap"] = ov
        prov = common.provenance(a.model, {**sel, "path_patching_runs": a.ioi_pp if task == "ioi" else a.co_pp,
                                           "stage_plan": a.ioi_stages if task == "ioi" else a.co_stages,
                                           "co_intervention_heads": a.co_intervention_heads or "default"})
        prov["backend"] = f"hooked_gpt2.py (pure PyTorch, TransformerLens-style hook points), torch {torch.__version__}"
        prov["command"] = cmd
        prov["dataset"] = {"file": os.path.relpath(os.path.abspath(path), root), "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest()}
        prov["seconds"] = round(time.time() - t0, 1)
        res["provenance"] = prov
        common.write_json(os.path.join(a.out_dir, f"circuits_{task}_{name}.json"), res)
    print(f"overlap: jaccard {ov['jaccard']} shared {ov['shared']}; total {time.time() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main()
