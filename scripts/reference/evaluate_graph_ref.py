"""Reference port: circuit evaluation by edge patching and MIB's faithfulness areas (issue #22,
docs/metrics.md §12.7), the protocol of the official code written again here (read, not copied):
hannamw/EAP-IG @795f560 src/eap/evaluate.py evaluate_graph (intervention "patching"), src/eap/graph.py
Graph.apply_topn / Graph.prune, and hannamw/MIB-circuit-track @b759df3 MIB_circuit_track/evaluation.py
evaluate_area_under_curve. No mechscope code is imported; the model is hooked_gpt2.py's forward (its hook
points, run in fp64 here), the graph layout eap_ref.py's.

Protocol, as the official code does it:
* Circuit of n edges (apply_topn(n, absolute=True)): the n edges of largest |score| (non-edges at −inf;
  argsort descending: the official sort is not stable, this one is, and the number of exactly tied |score|
  pairs is written out), then Graph.prune: repeat { node in graph ⇔ it has an outgoing edge and an incoming
  one (the input always counts as having one; a head's incoming edges are those into its q, k or v);
  keep an edge only if its source node is in the graph and its receiver's node is (the logits always
  are) } until neither changes. evaluate_graph prunes again (idempotent).
* evaluate_graph: a matrix diff [batch, pos, n_forward, d_model] starts as the corrupted run's source
  outputs (input = hook_embed, the token embedding; head = hook_result = z_h·W_O[h], no b_O; MLP =
  hook_mlp_out); the patched run of the clean tokens subtracts each source's output as it is computed,
  so diff holds corrupted − current. Each receiver's input gets Σ_u diff[u]·(1 − in_graph[u, v]) over the
  sources before it: q/k/v of a layer's heads (hook_{q,k,v}_input, before ln1) only if some head of the
  layer is a node of the circuit and not every edge into the layer's heads is in it; an MLP's input
  (hook_mlp_in) only if the MLP is a node of the circuit and not all its incoming edges are in it; the
  logits' input (last hook_resid_post) unless every edge into the logits is in it. The metric is the
  logit difference at the last position, per prompt (MIB's logit_diff, mean=False).
* MIB (evaluate_area_under_curve): baseline = clean LD mean; corrupted score = evaluate_graph of the
  empty circuit (apply_topn(0)); for pct in (.001 .002 .005 .01 .02 .05 .1 .2 .5 1): n = int(pct · E),
  faithfulness = (LD(C) − corrupted) / (baseline − corrupted); area_under (CPR) and area_from_1 (CMD) are
  trapezoids over the nominal pct axis between those ten points (no point at 0); average = their mean.
* Single edges: the circuit "every edge but u → v" unpruned (one forward per edge), effect =
  mean(LD − LD_clean), for the top-K edges by |score|; checked here (fp64) to equal the clean run with
  only v's input moved by a_corrupt(u) − a_clean(u), written directly, and evaluate_graph's pruned
  version of that circuit (pruning can drop a node left without outputs, e.g. the last MLP when its one
  edge to the logits is the one patched; the metric does not change).

Also written, as checks of docs/metrics.md §12.7's claims: each circuit run without the official node
gating (every edge outside the circuit patched, as mechscope does) and without pruning.

Scores: scores_eap_ig (or --score-key) of an eap_ref.py JSON, or a mechscope `eap` JSON (its `edges` list;
run it with --top-k ≥ n_edges so every edge has its score). Prompts: the dataset JSONL's first --n pairs,
run in length groups without padding (right padding and reading the last real position, as the official
code does, gives the same numbers for a causal model).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eap_ref import graph_layout, to_device  # noqa: E402
from hooked_gpt2 import HookedGPT2, _gelu_new, validate  # noqa: E402

MIB_PERCENTAGES = (.001, .002, .005, .01, .02, .05, .1, .2, .5, 1)


# ------------------------------------------------------------------------------------------------
# Graph: layout, top-n and prune (graph.py)

class Layout:
    """Index layout of eap_ref.graph_layout: forward [input, a0.h0 …, m0, …], backward per layer
    [q of each head, k, v, m{l}], then logits; prev[b] = sources before receiver b."""

    def __init__(self, L, H):
        self.L, self.H = L, H
        self.fwd, self.bwd, self.prev = graph_layout(L, H)
        self.F, self.R = len(self.fwd), len(self.bwd)
        self.real = torch.arange(self.F).unsqueeze(1) < torch.tensor(self.prev).unsqueeze(0)  # [F, R] bool: is an edge
        self.E = int(self.real.sum())
        self.f2b = torch.zeros(self.F, self.R, dtype=torch.bool)  # [F, R]: a node's own receivers
        for l in range(L):
            for h in range(H):
                for i in range(3):
                    self.f2b[self.head_f(l, h), self.layer_b(l) + i * H + h] = True
            self.f2b[self.mlp_f(l), self.layer_b(l) + 3 * H] = True

    def head_f(self, l, h):
        return 1 + l * (self.H + 1) + h

    def mlp_f(self, l):
        return 1 + l * (self.H + 1) + self.H

    def layer_b(self, l):
        return l * (3 * self.H + 1)


def order_by_score(lay: Layout, scores):
    """Flat edge indices (f·R + b), largest |score| first (stable), non-edges excluded: [E]."""
    key = scores.abs().masked_fill(~lay.real, float("-inf")).flatten()
    order = torch.sort(key, descending=True, stable=True).indices
    return order[: lay.E]


def top_n(lay: Layout, order, n):
    g = torch.zeros(lay.F * lay.R, dtype=torch.bool)
    g[order[:n]] = True
    return g.view(lay.F, lay.R)


def prune(lay: Layout, in_graph):
    """Graph.prune on [F, R] bool: returns (edges, nodes [F] bool)."""
    edges = in_graph.clone()
    nodes = None
    while True:
        outgoing = edges.any(1)
        incoming = (edges.any(0).double() @ lay.f2b.double().T) > 0  # [F]: any edge into the node's receivers
        incoming[0] = True
        new_nodes = outgoing & incoming
        recv = (new_nodes.double() @ lay.f2b.double()) > 0  # [R]
        recv[-1] = True
        new_edges = edges & new_nodes.unsqueeze(1) & recv.unsqueeze(0)
        if nodes is not None and torch.equal(new_nodes, nodes) and torch.equal(new_edges, edges):
            return edges, nodes
        nodes, edges = new_nodes, new_edges


# ------------------------------------------------------------------------------------------------
# The patched forward (evaluate.py), as hooks on hooked_gpt2's run

def source_outputs(m: HookedGPT2, ids):
    """Plain run: (ln_f output [B, n, d], sources [B, n, F, d]: hook_embed, z_h·W_O[h], mlp_out, and the
    largest |scaled attention score| (the C++ test's fp64 bound scales with it))."""
    B, n = ids.shape
    srcs = {}
    hooks = [("hook_embed", lambda t: srcs.__setitem__("input", t))]
    for l, blk in enumerate(m.blocks):
        hooks.append((f"blocks.{l}.attn.hook_attn_scores", lambda t: srcs.__setitem__(
            "max_score", max(srcs.get("max_score", 0.0), t.masked_fill(t < -1e30, 0).abs().max().item()))))
        hooks.append((f"blocks.{l}.attn.hook_z", lambda t, l=l, W=blk["W_O"]: srcs.__setitem__(("a", l), torch.einsum("bnhe,hed->bnhd", t, W))))
        hooks.append((f"blocks.{l}.hook_mlp_out", lambda t, l=l: srcs.__setitem__(("m", l), t)))
    final = m.run(ids, hooks=hooks)
    parts = [srcs["input"].unsqueeze(2)]
    for l in range(m.L):
        parts += [srcs[("a", l)], srcs[("m", l)].unsqueeze(2)]
    return final, torch.cat(parts, 2), srcs["max_score"]


def patched_final(m: HookedGPT2, lay: Layout, ids, corrupt_src, patch, gate, track=None):
    """The clean run `ids` [B, n] with receiver inputs built as evaluate_graph: patch [F, R] (1 = the edge
    carries the corrupted activation); gate = (attn [L] bool, mlp [L] bool, logits bool): which input
    construction hooks exist; track["max_score"] (if given) is raised to the run's largest |scaled score|.
    Returns the ln_f output [B, n, d]."""
    H, d = m.H, m.d
    diff = corrupt_src.clone()  # [B, n, F, d] corrupted − current, current subtracted as the run goes
    resid = {}
    attn_gate, mlp_gate, logit_gate = gate

    def update(upto, cols):  # Σ_u diff[u]·patch[u, cols]: [B, n, len(cols), d]
        return torch.einsum("bnfd,fr->bnrd", diff[:, :, :upto], patch[:upto, cols])

    def subtract(cols, t):  # the current run's source outputs leave diff
        diff[:, :, cols] -= t

    hooks = [("hook_embed", lambda t: subtract(0, t))]
    for l, blk in enumerate(m.blocks):
        b0, f0 = lay.layer_b(l), lay.head_f(l, 0)
        hooks.append((f"blocks.{l}.hook_resid_pre", lambda t, l=l: resid.__setitem__(("pre", l), t)))
        if attn_gate[l]:
            for i, (letter, W, b) in enumerate((("q", blk["W_Q"], blk["b_Q"]), ("k", blk["W_K"], blk["b_K"]), ("v", blk["W_V"], blk["b_V"]))):
                def qkv(t, l=l, i=i, W=W, b=b, blk=blk, b0=b0, f0=f0):
                    x = resid[("pre", l)].unsqueeze(2) + update(f0, slice(b0 + i * H, b0 + (i + 1) * H))  # hook_{q,k,v}_input [B, n, H, d]
                    return torch.einsum("bnhd,hde->bnhe", m.ln(x, blk["ln1_w"], blk["ln1_b"]), W) + b
                hooks.append((f"blocks.{l}.attn.hook_{letter}", qkv))
        hooks.append((f"blocks.{l}.attn.hook_z", lambda t, f0=f0, W=blk["W_O"]: subtract(slice(f0, f0 + H), torch.einsum("bnhe,hed->bnhd", t, W))))
        hooks.append((f"blocks.{l}.hook_resid_mid", lambda t, l=l: resid.__setitem__(("mid", l), t)))

        def mlp(t, l=l, blk=blk, b0=b0, f0=f0):
            if mlp_gate[l]:  # hook_mlp_in = resid_mid + the patched sources' differences
                x = resid[("mid", l)] + update(f0 + H, slice(b0 + 3 * H, b0 + 3 * H + 1)).squeeze(2)
                t = _gelu_new(m.ln(x, blk["ln2_w"], blk["ln2_b"]) @ blk["W_in"] + blk["b_in"]) @ blk["W_out"] + blk["b_out"]
            subtract(f0 + H, t)
            return t
        hooks.append((f"blocks.{l}.hook_mlp_out", mlp))
    if track is not None:
        for l in range(m.L):
            hooks.append((f"blocks.{l}.attn.hook_attn_scores", lambda t: track.__setitem__(
                "max_score", max(track["max_score"], t.masked_fill(t < -1e30, 0).abs().max().item()))))
    if logit_gate:
        hooks.append((f"blocks.{m.L - 1}.hook_resid_post", lambda t: t + update(lay.F, slice(lay.R - 1, lay.R)).squeeze(2)))
    return m.run(ids, hooks=hooks)


def official_gate(lay: Layout, in_graph, nodes):
    """Which input construction hooks evaluate_graph installs (make_input_construction_hooks)."""
    L, H = lay.L, lay.H
    attn, mlp = [], []
    for l in range(L):
        b0 = lay.layer_b(l)
        cols = slice(b0, b0 + 3 * H)
        all_in = bool((in_graph[:, cols] | ~lay.real[:, cols]).all())
        attn.append(bool(nodes[lay.head_f(l, 0):lay.head_f(l, 0) + H].any()) and not all_in)
        bm = b0 + 3 * H
        mlp.append(bool(nodes[lay.mlp_f(l)]) and not bool((in_graph[:, bm] | ~lay.real[:, bm]).all()))
    logits = not bool((in_graph[:, -1] | ~lay.real[:, -1]).all())
    return attn, mlp, logits


class Bench:
    """The prompts in length groups, each with its clean and corrupted runs."""

    def __init__(self, m, lay, rows):
        self.m, self.lay, self.N, self.max_score = m, lay, len(rows), 0.0
        by_len = {}
        for i, r in enumerate(rows):
            assert len(r["clean_ids"]) == len(r["corrupted_ids"]), "clean and corrupted prompts must have the same length"
            by_len.setdefault(len(r["clean_ids"]), []).append(i)
        self.groups = []
        for n in sorted(by_len):
            idx = by_len[n]
            g = {"idx": idx}
            for key, name in (("clean", "clean_ids"), ("corrupt", "corrupted_ids"), ("ans", "answer_id"), ("inc", "incorrect_id")):
                g[key] = torch.tensor([rows[i][name] for i in idx])
            fin_c, g["src_corrupt"], s_c = source_outputs(m, g["corrupt"])
            fin_k, g["src_clean"], s_k = source_outputs(m, g["clean"])
            self.max_score = max(self.max_score, s_c, s_k)
            g["ld_clean"], g["ld_corrupt"] = self.ld(fin_k, g), self.ld(fin_c, g)
            self.groups.append(g)

    def ld(self, final, g):
        return self.m.logit_diff(final[:, -1], g["ans"], g["inc"])

    def gather(self, per_group):
        out = torch.zeros(self.N, dtype=torch.float64)
        for g, v in zip(self.groups, per_group):
            out[g["idx"]] = v.double()
        return out

    def clean(self):
        return self.gather([g["ld_clean"] for g in self.groups])

    def corrupt(self):
        return self.gather([g["ld_corrupt"] for g in self.groups])

    def evaluate(self, in_graph, nodes=None, gated=True):
        """Per-prompt LD [N] of the circuit in_graph [F, R] bool (pruned; nodes from prune), patching."""
        patch = (~in_graph & self.lay.real).double()
        if gated:
            gate = official_gate(self.lay, in_graph, nodes)
        else:  # every patched edge's receiver gets its input built, whatever the nodes
            gate = ([True] * self.lay.L, [True] * self.lay.L, True)
        track = {"max_score": self.max_score}
        out = self.gather([self.ld(patched_final(self.m, self.lay, g["clean"], g["src_corrupt"], patch, gate, track), g) for g in self.groups])
        self.max_score = track["max_score"]
        return out

    def direct_single(self, f, b):
        """Per-prompt LD [N]: the clean run with only receiver b's input moved by a_corrupt(f) − a_clean(f)."""
        m, lay, H = self.m, self.lay, self.m.H
        l = min(b // (3 * H + 1), m.L - 1)
        k = b - lay.layer_b(l)
        out = []
        for g in self.groups:
            delta = g["src_corrupt"][:, :, f] - g["src_clean"][:, :, f]  # [B, n, d]
            blk = m.blocks[l]
            saved = {}
            hooks = [(f"blocks.{l}.hook_resid_pre", lambda t: saved.__setitem__("pre", t)),
                     (f"blocks.{l}.hook_resid_mid", lambda t: saved.__setitem__("mid", t))]
            if b == lay.R - 1:
                hooks.append((f"blocks.{m.L - 1}.hook_resid_post", lambda t: t + delta))
            elif k == 3 * H:
                hooks.append((f"blocks.{l}.hook_mlp_out", lambda t: _gelu_new(
                    m.ln(saved["mid"] + delta, blk["ln2_w"], blk["ln2_b"]) @ blk["W_in"] + blk["b_in"]) @ blk["W_out"] + blk["b_out"]))
            else:
                letter, h = "qkv"[k // H], k % H
                W, bias = blk["W_" + letter.upper()], blk["b_" + letter.upper()]

                def one_head(t):
                    t = t.clone()
                    t[:, :, h] = m.ln(saved["pre"] + delta, blk["ln1_w"], blk["ln1_b"]) @ W[h] + bias[h]
                    return t
                hooks.append((f"blocks.{l}.attn.hook_{letter}", one_head))
            out.append(self.ld(m.run(g["clean"], hooks=hooks), g))
        return self.gather(out)


# ------------------------------------------------------------------------------------------------

def load_scores(path, key, lay: Layout):
    d = json.load(open(path))
    if key in d:
        s = torch.tensor(d[key], dtype=torch.float64)
        src = f"{os.path.basename(path)}:{key}"
    elif "edges" in d and d.get("analysis") == "eap":  # a mechscope eap JSON: the listed top-k edges
        s = torch.zeros(lay.F, lay.R, dtype=torch.float64)
        bidx = {(r[0], r[1]): i for i, r in enumerate(lay.bwd)}
        for e in d["edges"]:
            s[lay.fwd.index(e["upstream"]), bidx[(e["downstream"], e["receiver"])]] = e["score"]
        src = f"{os.path.basename(path)}:edges (mechscope eap, {len(d['edges'])} listed)"
        if len(d["edges"]) < lay.E:
            print(f"warning: {path} lists {len(d['edges'])} of {lay.E} edges; the rest score 0", file=sys.stderr)
    else:
        raise SystemExit(f"{path}: neither {key} nor a mechscope eap 'edges' list")
    if tuple(s.shape) != (lay.F, lay.R):
        raise SystemExit(f"{path}: scores are {tuple(s.shape)}, the graph is {(lay.F, lay.R)}")
    return s * lay.real, src


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--n", type=int, default=40, help="the first N prompt pairs of the dataset")
    ap.add_argument("--scores", required=True, help="eap_ref.py JSON or mechscope eap JSON")
    ap.add_argument("--score-key", default="scores_eap_ig")
    ap.add_argument("--top-k", type=int, default=20, help="single-edge patches of the K largest |score| edges")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    t0 = time.time()
    torch.set_grad_enabled(False)
    m = HookedGPT2(a.model)
    val = validate(a.model, m)  # the fp32 forward against transformers' tensors
    if any(v > 1e-4 for v in val.values()):
        raise SystemExit(f"hooked forward disagrees with reference.safetensors: {val}")
    to_device(m, torch.float64)  # bf16-stored weights: exact in fp64
    lay = Layout(m.L, m.H)
    scores, src = load_scores(a.scores, a.score_key, lay)
    rows = [json.loads(l) for l in open(a.dataset) if l.strip()][: a.n]
    bench = Bench(m, lay, rows)
    order = order_by_score(lay, scores)
    absr = scores.flatten()[order].abs()
    ties = int((absr[1:] == absr[:-1]).sum())

    # checks of the port itself (fp64): the plain run is hooked_gpt2's; all edges patched = corrupted run
    ld_clean, ld_corr = bench.clean(), bench.corrupt()
    everything = lay.real.clone()
    e_full, n_full = prune(lay, everything)
    full = bench.evaluate(e_full, n_full)
    e0, n0 = prune(lay, top_n(lay, order, 0))
    empty = bench.evaluate(e0, n0)
    checks = {"full_circuit_vs_clean": (full - ld_clean).abs().max().item(),
              "empty_circuit_vs_corrupted_run": (empty - ld_corr).abs().max().item()}

    baseline, corrupted = ld_clean.mean().item(), empty.mean().item()
    span = baseline - corrupted
    points = []
    for pct in MIB_PERCENTAGES:
        n = int(pct * lay.E)
        raw = top_n(lay, order, n)
        edges, nodes = prune(lay, raw)
        ld = bench.evaluate(edges, nodes)
        ungated = bench.evaluate(edges, gated=False)
        unpruned = bench.evaluate(raw, gated=False)
        points.append({"pct": pct, "edges_kept": n, "edges_after_pruning": int(edges.sum()), "nodes_after_pruning": int(nodes.sum()),
                       "metric": ld.mean().item(), "metric_per_prompt": ld.tolist(),
                       "faithfulness": (ld.mean().item() - corrupted) / span,
                       "max_abs_ungated_minus_official": (ungated - ld).abs().max().item(),
                       "max_abs_unpruned_minus_pruned": (unpruned - ld).abs().max().item()})
    cpr = cmd = 0.0
    for p1, p2 in zip(points[:-1], points[1:]):
        w = p2["pct"] - p1["pct"]
        cmd += w * (abs(1. - p1["faithfulness"]) + abs(1. - p2["faithfulness"])) / 2
        cpr += w * (p1["faithfulness"] + p2["faithfulness"]) / 2
    average = sum(p["faithfulness"] for p in points) / len(points)

    singles, worst_direct, worst_pruned = [], 0.0, 0.0
    for rank in range(min(a.top_k, lay.E)):
        flat = int(order[rank])
        f, b = flat // lay.R, flat % lay.R
        circuit = lay.real.clone()
        circuit[f, b] = False
        ld = bench.evaluate(circuit, torch.ones(lay.F, dtype=torch.bool))  # that edge alone patched, no pruning
        edges, nodes = prune(lay, circuit)  # evaluate_graph's own pruning (it may drop a node left without outputs)
        worst_pruned = max(worst_pruned, (bench.evaluate(edges, nodes) - ld).abs().max().item())
        worst_direct = max(worst_direct, (bench.direct_single(f, b) - ld).abs().max().item())
        singles.append({"rank": rank, "forward": f, "backward": b, "upstream": lay.fwd[f], "downstream": lay.bwd[b][0],
                        "receiver": lay.bwd[b][1], "score": scores[f, b].item(), "metric": ld.mean().item(),
                        "effect": (ld - ld_clean).mean().item(), "metric_per_prompt": ld.tolist()})
    checks["single_edge_vs_direct"] = worst_direct
    checks["single_edge_vs_pruned"] = worst_pruned
    bad = {k: v for k, v in checks.items() if v > 1e-9 * max(1.0, ld_clean.abs().max().item())}
    if bad:
        raise SystemExit(f"port self-checks failed: {bad}")

    res = {"analysis": "evaluate_graph", "model": os.path.basename(os.path.normpath(a.model)), "dataset": os.path.basename(a.dataset),
           "n_prompts": len(rows), "dtype": "fp64", "metric": "logit_diff (last position, clean tokens)",
           "scores_source": src, "scores": scores.tolist(), "n_edges": lay.E, "exact_abs_score_ties": ties,
           "forward_nodes": lay.fwd, "receivers": [{"node": r[0], "receiver": r[1]} for r in lay.bwd],
           "prompts": [{"clean_ids": r["clean_ids"], "corrupted_ids": r["corrupted_ids"], "answer_id": r["answer_id"],
                        "incorrect_id": r["incorrect_id"]} for r in rows],
           "metric_clean": baseline, "metric_corrupt_run": ld_corr.mean().item(), "metric_corrupt": corrupted,
           "metric_clean_per_prompt": ld_clean.tolist(), "metric_corrupt_per_prompt": empty.tolist(),
           "mib": {"percentages": list(MIB_PERCENTAGES), "points": points, "area_under": cpr, "area_from_1": cmd, "average": average},
           "single_edges": singles, "self_checks": checks, "max_abs_attn_score": bench.max_score,
           "provenance": {"torch": torch.__version__, "reference_check": val, "seconds": round(time.time() - t0, 1),
                          "official": "hannamw/EAP-IG@795f560 evaluate.py, graph.py; hannamw/MIB-circuit-track@b759df3 evaluation.py"}}
    with open(a.out, "w") as fh:
        json.dump(res, fh)
    print(f"{a.out}: {lay.E} edges, {len(rows)} prompts, CPR {cpr:.6f} CMD {cmd:.6f} avg {average:.6f}, "
          f"clean {baseline:.4f} corrupt {corrupted:.4f}, ties {ties}, checks {checks}, {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
