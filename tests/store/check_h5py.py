#!/usr/bin/python3
"""Reads mechscope caches with h5py: TransformerLens names, shapes, dtypes and values.

usage: check_h5py.py SYNTH.h5 LAYERS BATCH POS HEADS D_MODEL FP16.h5 BF16.h5
SYNTH.h5 comes from streamSyntheticCache; FP16.h5 / BF16.h5 hold /activations/blocks.0.hook_resid_pre
= arange(24).reshape(2, 3, 4) / 8 stored as float16 and as bfloat16 bits (uint16 + mechscope_dtype).
Exit 0 and "h5py OK" on success; an AssertionError otherwise.
"""
import json
import sys

import h5py
import numpy as np


def layer_hooks(layer):
    names = ["hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
             "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out", "hook_resid_mid",
             "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post"]
    return [f"blocks.{layer}.{n}" for n in names]


def expected_shape(name, batch, pos, heads, d_model):
    if name.endswith("hook_pattern") or name.endswith("hook_attn_scores"):
        return (batch, heads, pos, pos)
    if name.split(".")[-1] in ("hook_q", "hook_k", "hook_v", "hook_z"):
        return (batch, pos, heads, d_model // heads)
    if name.endswith("mlp.hook_pre") or name.endswith("mlp.hook_post"):
        return (batch, pos, 4 * d_model)
    return (batch, pos, d_model)


def main():
    synth, layers, batch, pos, heads, d_model, fp16, bf16 = sys.argv[1:9]
    layers, batch, pos, heads, d_model = map(int, (layers, batch, pos, heads, d_model))
    with h5py.File(synth, "r") as f:
        assert int(f.attrs["schema_version"]) == 1, f.attrs["schema_version"]
        assert int(f.attrs["mechscope_complete"]) == 1
        assert f.attrs["family"] == "synthetic", f.attrs["family"]
        assert json.loads(f.attrs["config_json"])["n_layers"] == layers
        for key in ("model_folder", "weights_hash", "dtype", "device", "attention_path", "bos_handling", "padding",
                    "mechscope_version", "created_utc", "command_line"):
            assert isinstance(f.attrs[key], str), key
        expected = ["hook_embed", "hook_pos_embed", "ln_final.hook_normalized"]
        for layer in range(layers):
            expected += layer_hooks(layer)
        names = set(f["activations"].keys())
        assert names == set(expected), sorted(names ^ set(expected))
        for name in expected:
            ds = f["activations"][name]  # the TransformerLens name verbatim, dots and all
            assert ds.shape == expected_shape(name, batch, pos, heads, d_model), (name, ds.shape)
            assert ds.dtype == np.float32, (name, ds.dtype)
            assert f["/activations/" + name].shape == ds.shape
        pattern = f["activations"]["blocks.0.attn.hook_pattern"]
        assert pattern.attrs["axes"] == "batch,head,query,key"
        assert pattern.chunks == (1, 1, pos, pos), pattern.chunks
        head = pattern[batch - 1, heads - 1]  # one head read alone
        assert np.allclose(head.sum(-1), 1.0, atol=1e-6)
        assert np.all(np.triu(head, 1) == 0)
        tokens = f["tokens"][()]
        assert tokens.dtype == np.int64 and tokens.shape == (batch, pos)
        assert np.array_equal(tokens.ravel(), np.arange(batch * pos) % 1000)
        strings = f["token_strings"].asstr()[()]
        assert strings.shape == (batch, pos)
        assert strings[0, 1] == f"t{tokens[0, 1]}", strings[0, 1]
    want = (np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 8)
    with h5py.File(fp16, "r") as f:
        ds = f["activations/blocks.0.hook_resid_pre"]
        assert ds.dtype == np.float16, ds.dtype
        assert np.array_equal(ds[()], want.astype(np.float16))
    with h5py.File(bf16, "r") as f:
        ds = f["activations/blocks.0.hook_resid_pre"]
        assert ds.dtype == np.uint16 and ds.attrs["mechscope_dtype"] == "bfloat16"
        widened = (ds[()].astype(np.uint32) << 16).view(np.float32)
        assert np.array_equal(widened, want)
    print("h5py OK")


if __name__ == "__main__":
    main()
