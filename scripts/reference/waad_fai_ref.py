"""Reference port: WAAD / FAI and the Table 2 statistics (preplan-and-anchor, Li et al. 2025,
arXiv 2510.13554), receiver heads after Bogdan et al. 2025 (interp-reasoning/thought-anchors,
receiver_head_funcs.py, attn_funcs.get_vertical_scores).

Everything is computed from the full eager attention probabilities A[l,h,t,s] of one forward pass per
row (no streaming), in float64 from the fp32 probabilities:

* head distance d(l,h) = mean over response queries t ≥ R of Σ_s A[l,h,t,s]·(t − s) (paper Eq. 7),
  averaged over rows; bottom / top round(q·#heads) heads = local / global (paper: "e.g. 30 %").
* WAAD_t = mean over local heads of Σ_s A[l,h,t,s]·min(t − s, W), W = 10 (Def. 4.1), 0 for t < R.
* FAI_s = mean over global heads of the mean of A[l,h,t,s] over t ∈ T(s) = {t : s + a ≤ t ≤ s + b,
  t ≥ R} (default a = 1, b = ∞: "attention a token receives from future positions"), 0 where empty.
* preplan = top 40 % of Δ_t = |WAAD_t − WAAD_{t+1}| over t ∈ [R, N − 2]; anchor = top 40 % of FAI over
  s ≥ R (⌈0.4·count⌉, ties to the lower position).
* peaks = local maxima (v[t] > v[t−1], v[t] ≥ v[t+1], edges compare one neighbour) above the 60th
  percentile (linear) of positions ≥ R (the paper gives no peak rule; docs/metrics.md §10's choice).
* entropy_t = H(softmax(logits[t−1])) in nats, log_prob_t = log softmax(logits[t−1])[x_t]; None at t = 0.
* receiver heads: per row and head, the column means over the FAI horizon (Bogdan's "vertical score",
  his proximity band playing the horizon) over response columns with a non-empty horizon, their excess
  kurtosis (Fisher, biased: scipy.stats.kurtosis defaults), the mean over rows, the top k heads.
  ``receiver_kurtosis_official`` is the same with Bogdan's own row aggregation (np.mean: one undefined
  row makes the head undefined) and his default band (proximity_ignore = 4: t ≥ s + 4).
* rhythm (Table 2): mean entropy over tokens t ≥ max(R, 1) and at WAAD peaks; share of receiver-FAI
  peaks that are global-FAI peaks, share of WAAD peaks with an FAI peak in [t, t + lag]; shuffled
  baselines as exact expectations under uniformly placed peaks (as documented in docs/cli.md).
"""
import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

INF = None


def kurtosis(v):
    """Fisher excess, biased (scipy.stats.kurtosis(fisher=True, bias=True, nan_policy='omit')); None if undefined."""
    v = [x for x in v if x is not None and math.isfinite(x)]
    if len(v) < 2:
        return None
    m = sum(v) / len(v)
    m2 = sum((x - m) ** 2 for x in v) / len(v)
    m4 = sum((x - m) ** 4 for x in v) / len(v)
    if not m2 > 0:
        return None
    return m4 / (m2 * m2) - 3.0


def top_quantile(values, q, start):
    idx = list(range(max(0, start), len(values)))
    k = math.ceil(q * len(idx) - 1e-9)
    idx.sort(key=lambda i: -values[i])  # stable: ties keep the lower position first
    return sorted(idx[:k])


def percentile_linear(vals, p):
    s = sorted(vals)
    pos = p / 100.0 * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def peaks(values, p, start):
    n = len(values)
    start = max(0, start)
    if n - start < 1:
        return []
    thr = percentile_linear(values[start:], p)
    out = []
    for t in range(start, n):
        left = t == start or values[t] > values[t - 1]
        right = t == n - 1 or values[t] >= values[t + 1]
        if left and right and values[t] > thr:
            out.append(t)
    return out


def column_means(att, R, a, b):
    """[L, H, n] mean of A[l,h,t,s] over t with s+a ≤ t ≤ s+b, t ≥ R; and [n] bool 'non-empty'."""
    L, H, n, _ = att.shape
    t = torch.arange(n).unsqueeze(1)
    s = torch.arange(n).unsqueeze(0)
    d = t - s
    band = (d >= a) & (t >= R) & (t >= s)
    if b is not None:
        band = band & (d <= b)
    cnt = band.sum(0)  # [n] per column
    sums = (att.double() * band.double()).sum(2)  # [L, H, n]
    means = torch.where(cnt > 0, sums / cnt.clamp_min(1), torch.zeros_like(sums))
    return means, (cnt > 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.common_arguments(ap)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--fai-horizon", default="1:", help="a:b (b empty = to the end)")
    ap.add_argument("--response-start", default="", help="R0,R1,... (default: row 0 n//3, row 1 n//2)")
    ap.add_argument("--split-quantile", type=float, default=0.3)
    ap.add_argument("--token-quantile", type=float, default=0.4)
    ap.add_argument("--peak-percentile", type=float, default=60.0)
    ap.add_argument("--receiver-heads", type=int, default=20)
    ap.add_argument("--peak-lag", type=int, default=10)
    ap.add_argument("--official-proximity", type=int, default=4, help="Bogdan et al.'s proximity_ignore for receiver_kurtosis_official")
    a = ap.parse_args()
    common.set_backend(not a.no_transformers)
    fa, fb = a.fai_horizon.split(":")
    fa = int(fa)
    fb = int(fb) if fb else None
    rows = common.reference_rows(a.model)
    if a.response_start:
        Rs = [int(x) for x in a.response_start.split(",")]
    else:
        Rs = [len(r) // (3 if i == 0 else 2) for i, r in enumerate(rows)]
    L, H = common.n_layers_heads(common.load_config(a.model))
    W = a.window

    dist = torch.zeros(L, H, dtype=torch.float64)
    win, cm, nonempty, cm_off, ne_off, ent, lp = [], [], [], [], [], [], []
    for ids, R in zip(rows, Rs):
        out = common.forward(a.model, ids)
        att = out["attentions"].double()  # [L, H, n, n]
        n = len(ids)
        t = torch.arange(n).unsqueeze(1)
        s = torch.arange(n).unsqueeze(0)
        d = (t - s).clamp_min(0).double()
        per_q = (att * d).sum(-1)  # [L, H, n]
        dist += per_q[:, :, R:].mean(-1)
        win.append((att * d.clamp_max(W)).sum(-1))  # [L, H, n]
        m, ne = column_means(att, R, fa, fb)
        cm.append(m)
        nonempty.append(ne)
        m2, ne2 = column_means(att, R, a.official_proximity, None)
        cm_off.append(m2)
        ne_off.append(ne2)
        logp = torch.log_softmax(out["logits"].double(), -1)  # [n, V]
        e = [None] + (-(logp.exp() * logp).sum(-1))[:-1].tolist()
        g = [None] + logp[torch.arange(n - 1), torch.tensor(ids[1:])].tolist()
        ent.append(e)
        lp.append(g)
    dist /= len(rows)

    order = sorted(((dist[l, h].item(), l, h) for l in range(L) for h in range(H)), key=lambda x: x[0])  # stable
    k = max(1, int(math.floor(a.split_quantile * len(order) + 0.5)))
    local = sorted((l, h) for _, l, h in order[:k])
    glob = sorted((l, h) for _, l, h in order[len(order) - k :])
    dist_margin = min(abs(order[k][0] - order[k - 1][0]), abs(order[len(order) - k][0] - order[len(order) - k - 1][0]))

    def kurt_table(means, ne, official):
        K = [[None] * H for _ in range(L)]
        for l in range(L):
            for h in range(H):
                vals = []
                for r, R in enumerate(Rs):
                    col = means[r][l, h].tolist()
                    vals.append(kurtosis([col[s] for s in range(R, len(col)) if bool(ne[r][s])]))
                if official:
                    K[l][h] = None if any(v is None for v in vals) else sum(vals) / len(vals)
                else:
                    f = [v for v in vals if v is not None]
                    K[l][h] = sum(f) / len(f) if f else None
        return K

    def top_heads(K, k):
        c = [(K[l][h], l, h) for l in range(L) for h in range(H) if K[l][h] is not None]
        c.sort(key=lambda x: -x[0])  # stable: ties keep the lower (layer, head)
        return [[l, h] for _, l, h in c[:k]], c

    K = kurt_table(cm, nonempty, False)
    rec, kc = top_heads(K, a.receiver_heads)
    K_off = kurt_table(cm_off, ne_off, True)
    rec_off, _ = top_heads(K_off, a.receiver_heads)
    kurt_margin = None
    if 0 < a.receiver_heads < len(kc):
        kurt_margin = kc[a.receiver_heads - 1][0] - kc[a.receiver_heads][0]

    def head_mean(per_head, heads):
        if not heads:
            return [0.0] * per_head.shape[-1]
        return (sum(per_head[l, h] for l, h in heads) / len(heads)).tolist()

    res_rows = []
    ent_all = ent_pk = 0.0
    n_ent = n_pk = 0
    co = {"hits": 0.0, "expected": 0.0, "events": 0}
    af = {"hits": 0.0, "expected": 0.0, "events": 0}
    for r, (ids, R) in enumerate(zip(rows, Rs)):
        n = len(ids)
        waad = head_mean(win[r], local)
        waad = [0.0 if t < R else waad[t] for t in range(n)]
        fai = head_mean(cm[r], glob)
        rfai = head_mean(cm[r], [tuple(x) for x in rec])
        delta = [0.0] * n
        for t in range(R, n - 1):
            delta[t] = abs(waad[t] - waad[t + 1])
        wp = peaks(waad, a.peak_percentile, R)
        fp = peaks(fai, a.peak_percentile, R)
        rp = peaks(rfai, a.peak_percentile, R) if rec else []
        for t in range(max(R, 1), n):
            ent_all += ent[r][t]
            n_ent += 1
        for t in wp:
            if t >= 1:
                ent_pk += ent[r][t]
                n_pk += 1
        # receiver/global co-occurrence, expectation |P_glob| / (N − R) per event
        fs = set(fp)
        co["hits"] += sum(1 for t in rp if t in fs)
        co["events"] += len(rp)
        co["expected"] += len(rp) * len(fs) / (n - R) if n > R else 0.0
        # FAI peak in [t, min(t + lag, n − 1)] after a WAAD peak t; expectation 1 − C(N' − m, k)/C(N', k)
        Np, kk = n - R, len(fs)
        for t in wp:
            hi = min(t + a.peak_lag, n - 1)
            af["hits"] += 1.0 if any(t <= s <= hi for s in fs) else 0.0
            m = hi - t + 1
            miss = math.comb(Np - m, kk) / math.comb(Np, kk) if Np - m >= kk else 0.0
            af["expected"] += 1.0 - miss
            af["events"] += 1
        res_rows.append({
            "response_start": R, "waad": waad, "fai": fai, "receiver_fai": rfai,
            "preplan_tokens": top_quantile(delta[: n - 1], a.token_quantile, R),
            "anchor_tokens": top_quantile(fai, a.token_quantile, R),
            "waad_peaks": wp, "fai_peaks": fp, "receiver_fai_peaks": rp,
            "entropy": ent[r], "log_prob": lp[r],
        })

    def rate(m):
        return {"rate": m["hits"] / m["events"] if m["events"] else None,
                "shuffled": m["expected"] / m["events"] if m["events"] else None,
                "hits": m["hits"], "events": m["events"]}

    res = {
        "analysis": "waad_fai",
        "provenance": common.provenance(a.model, {"window": W, "fai_horizon": [fa, fb], "response_start": Rs,
                                                   "split_quantile": a.split_quantile, "token_quantile": a.token_quantile,
                                                   "peak_percentile": a.peak_percentile, "receiver_top_k": a.receiver_heads,
                                                   "peak_lag": a.peak_lag, "layers": "all",
                                                   "official_proximity": a.official_proximity}),
        "n_layers": L, "n_heads": H, "rows": rows,
        "window": W, "fai_horizon": [fa, fb], "response_start": Rs, "split_quantile": a.split_quantile,
        "receiver_top_k": a.receiver_heads, "peak_lag": a.peak_lag,
        "head_distance": dist.tolist(),
        "local_heads": [list(x) for x in local], "global_heads": [list(x) for x in glob],
        "receiver_kurtosis": K, "receiver_heads": rec,
        "receiver_kurtosis_official": K_off, "receiver_heads_official": rec_off,
        "margins": {"head_distance_split": dist_margin, "receiver_kurtosis_cut": kurt_margin},
        "rhythm": {"entropy_mean": ent_all / n_ent if n_ent else None,
                   "entropy_at_waad_peaks": ent_pk / n_pk if n_pk else None,
                   "entropy_tokens": n_ent, "waad_peak_tokens": n_pk,
                   "receiver_global_cooccurrence": rate(co), "fai_after_waad": rate(af)},
    }
    for key in ("waad", "fai", "receiver_fai", "preplan_tokens", "anchor_tokens", "waad_peaks", "fai_peaks",
                "receiver_fai_peaks", "entropy", "log_prob"):
        res[key] = [rr[key] for rr in res_rows]
    common.write_json(a.out, res)
    print(f"waad-fai {os.path.basename(a.model.rstrip('/'))}: R={Rs} local={local} global={glob} receivers={rec[:5]}... "
          f"official receivers={rec_off[:5]}... rhythm={res['rhythm']} margins={res['margins']}")


if __name__ == "__main__":
    main()
