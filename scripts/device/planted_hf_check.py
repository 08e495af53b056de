#!/usr/bin/env python3
"""Load the planted model folder with Hugging Face transformers + tokenizers and record reference
outputs, proving it is an ordinary checkpoint:
  python3 scripts/device/planted_hf_check.py PLANTED_DIR OUT_DIR
Writes OUT_DIR/planted_hf_reference.safetensors (input_ids [B,T] int64, logits [B,T,V] fp32) and
OUT_DIR/planted_hf_reference.json (texts, HF tokenizer ids, greedy continuations)."""
import json, os, sys
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import GPT2LMHeadModel

d, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
model = GPT2LMHeadModel.from_pretrained(d, attn_implementation="eager", torch_dtype=torch.float32).eval()
texts = [
    "When Mary and John were at the store , John gave a ring to",
    "When John and Mary were at the store , John gave a book to",
    "When Alice and Bob were at the park , Bob gave a cup to",
    "When Sarah and David were at the store , Sarah gave a pen to",
]
enc = [tok.encode(t, add_special_tokens=True) for t in texts]
ids = torch.tensor([e.ids for e in enc], dtype=torch.int64)
with torch.no_grad():
    logits = model(input_ids=ids).logits.float()
save_file({"input_ids": ids.contiguous(), "logits": logits.contiguous()}, os.path.join(out, "planted_hf_reference.safetensors"))
co = "On the table I see a red pen , a blue cup and a green ball . The cup is"
needle = "day was long magic number seven hundred twelve quiet in town people walked along river sun magic"
gen = {}
for name, t in [("ioi", texts[0]), ("colored_objects", co), ("needle", needle)]:
    x = torch.tensor([tok.encode(t, add_special_tokens=True).ids])
    with torch.no_grad():
        y = model.generate(x, max_new_tokens=4, do_sample=False, pad_token_id=0, eos_token_id=None)
    gen[name] = {"text": t, "continuation": tok.decode(y[0, x.shape[1]:].tolist())}
json.dump({"texts": texts, "ids": [e.ids for e in enc], "tokens": [e.tokens for e in enc],
           "offsets": [e.offsets for e in enc], "greedy": gen,
           "transformers_argmax": logits[:, -1].argmax(-1).tolist()},
          open(os.path.join(out, "planted_hf_reference.json"), "w"), indent=1)
print(json.dumps(gen, indent=1))
print("argmax at END:", [tok.id_to_token(i) for i in logits[:, -1].argmax(-1).tolist()])
