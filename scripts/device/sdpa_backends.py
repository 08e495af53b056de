"""Times PyTorch's fused attention back ends on the attention shapes of the GPU-forward benchmark (issue #24:
GPU forward >= 60 % of the GEMM rate at 8K for a 1B bf16 model). Which back end is fastest decides whether
mechscope's fused path should ask for one explicitly.

    python3 scripts/device/sdpa_backends.py [--tokens 8192] [--reps 20]

Prints, per shape: each back end's time for a causal prefill, its TFLOP/s (causal QK^T + AV), its max |error|
against the flash back end, and an 8192^3 bf16 matmul rate for scale; then the probe's log-sum-exp calls
(FlashAttention-2 with v = k against cuDNN with value head dims d, 64, 16, 8).
"""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = {  # name: (heads, kv_heads, d_head)
    "llama-1b": (32, 8, 64),
    "qwen3-0.6b": (16, 8, 128),
    "llama-7b": (32, 32, 128),
}


def timed(fn, reps):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    n = a.tokens
    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    t = timed(lambda: x @ x, a.reps)
    print(f"matmul 8192^3 bf16: {2 * 8192**3 / t / 1e12:.0f} TFLOP/s")
    backends = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                "cudnn": SDPBackend.CUDNN_ATTENTION}
    for name, (h, hkv, d) in SHAPES.items():
        g = torch.Generator(device="cuda").manual_seed(0)
        q = torch.randn(1, h, n, d, device="cuda", dtype=torch.bfloat16, generator=g)
        k = torch.randn(1, hkv, n, d, device="cuda", dtype=torch.bfloat16, generator=g).repeat_interleave(h // hkv, 1)
        v = torch.randn(1, hkv, n, d, device="cuda", dtype=torch.bfloat16, generator=g).repeat_interleave(h // hkv, 1)
        flops = 2 * 2 * h * d * n * (n + 1) / 2  # causal QK^T and AV
        ref = None
        for bname, backend in backends.items():
            try:
                with sdpa_kernel([backend]):
                    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                    secs = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), a.reps)
            except Exception as e:  # noqa: BLE001 - a back end that does not apply is reported, not fatal
                print(f"{name} n={n} {bname}: not available ({str(e).splitlines()[0][:120]})")
                continue
            if ref is None:
                ref = out.float()
            err = (out.float() - ref).abs().max().item()
            print(f"{name} n={n} {bname}: {secs * 1e3:.3f} ms, {flops / secs / 1e12:.0f} TFLOP/s, max|diff vs first| {err:.3g}")
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
            secs = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), a.reps)
        print(f"{name} n={n} default choice: {secs * 1e3:.3f} ms")
    probe_lse(n, a.reps)


def probe_lse(tokens, reps):
    """The probe's normaliser calls (docs/attention-probe.md): the log-sum-exp of a causal attention whose output
    is thrown away. cuDNN takes a value head dim other than q/k's, so a narrow v may skip most of the P·V work;
    each variant's lse is compared with FlashAttention-2's (v = k, as the probe calls it today)."""
    n = tokens
    for name, (h, hkv, d) in SHAPES.items():
        dq = d + 8  # Moments' biased keys carry 8 extra dims
        g = torch.Generator(device="cuda").manual_seed(1)
        q = torch.randn(1, h, n, dq, device="cuda", dtype=torch.bfloat16, generator=g)
        k = torch.randn(1, h, n, dq, device="cuda", dtype=torch.bfloat16, generator=g)
        scale = dq ** -0.5
        flash = lambda: torch.ops.aten._scaled_dot_product_flash_attention(q, k, k, 0.0, True, False, scale=scale)[1]
        ref = flash()[0, :, :n].float()
        print(f"{name} n={n} d={dq} lse flash-2 (v = k): {timed(flash, reps) * 1e3:.3f} ms")
        for dv in (dq, 64, 16, 8):
            v = k if dv == dq else torch.zeros(1, h, n, dv, device="cuda", dtype=torch.bfloat16)
            call = lambda v=v: torch.ops.aten._scaled_dot_product_cudnn_attention(
                q, k, v, None, True, 0.0, True, False, scale=scale)[1]
            try:
                lse = call().reshape(h, n).float()
                secs = timed(call, reps)
            except Exception as e:  # noqa: BLE001 - an unsupported shape is reported, not fatal
                print(f"{name} n={n} d={dq} lse cudnn d_v={dv}: not available ({str(e).splitlines()[0][:120]})")
                continue
            err = (lse - ref).abs().max().item()
            print(f"{name} n={n} d={dq} lse cudnn d_v={dv}: {secs * 1e3:.3f} ms, max|lse - flash| {err:.3g}")


if __name__ == "__main__":
    main()
