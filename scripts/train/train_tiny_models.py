#!/usr/bin/env python3
"""Trains mechscope's small *trained* test models (issues #18 and #19) and writes them as Hugging Face
folders with a parity reference.

Why: the planted model proves the analyses agree with their own definitions; these models learned their
circuits by gradient descent on the papers' tasks, with the real tokenizers, so reference ports in Python
can be compared with mechscope on something that was not built from the same code.

Models (``--model``):
  llama2-niah  LlamaForCausalLM, Llama-2 SentencePiece tokenizer, 4 layers, d 96, GQA 4 q / 2 kv heads,
               tied embeddings, trained on needle-in-a-haystack retrieval (haystack: King James Bible prose
               from scripts/train/data/, a needle sentence at a random sentence boundary, sometimes a
               distractor needle, then mechscope's question template and the answer copied from the needle
               and a newline) mixed with copy/induction text (a random token span repeated later).
  mistral-sw   MistralForCausalLM, same tokenizer, 2 layers, sliding_window 64, trained on the same kind of
               text but with the needle inside the window of the answer (sequences 128..512 tokens, so the
               window matters), plus copy text whose repeat lies inside the window.
  gpt2-ioi     GPT2LMHeadModel, GPT-2 byte-level BPE tokenizer, 4 layers, d 48, tied, trained on IOI
               (Wang et al. 2022) and Colored Objects (Merullo et al. 2023) prompts.

Sizes: every folder (weights in bf16, tokenizer.json, reference) is kept at or under 10 MB, which is why
d_model is 96 (Llama-2 vocab 32000) and 48 (GPT-2 vocab 50257, whose tokenizer.json alone is 3.6 MB)
rather than 128.

Text formats, compared with mechscope's own generators:
  * IOI (analysis/common/datasets.cpp ioiDataset): the same 15 templates, the same 60 names (all single
    GPT-2 tokens with a leading space), places and objects, BABA and ABBA orders (ABBA swaps the first
    two name slots, as mechscope's abba()). Differences: Python's RNG (different draws for a seed); all
    15 templates in both orders are used for training; BOS <|endoftext|> is prepended (mechscope's
    recipe prepends it, as TransformerLens); the answer is the single token " " + IO.
  * Colored Objects (coloredObjectsDataset): the same question format
    "Q: On the {surface}, {start} a {c} {o}, a {c} {o}, and a {c} {o}. What color is the {o}?\nA:",
    the same surfaces, openers, objects, colours and "an" before "orange", one solved shot before the
    query. Difference (deliberate, issue #19): the answers -- the shot's and the query's -- are the
    LOWER-CASE colour, " " + colour, i.e. exactly the token of that colour word in the prompt; mechscope
    currently title-cases them, which is the bug #19 describes. Training also shows 0-shot prompts
    (25 %); held-out accuracy is measured on 1-shot prompts as mechscope builds them.
  * Needle in a haystack (analysis/common/needle.*): prompt = BOS + context + the needle's tokens at a
    sentence boundary + encode("Based on the content of the book, Question: {q}\\nAnswer:"), as
    mechscope builds it; the model continues with " " + answer and a newline (the answer is a span of the
    needle, copied). Needles come from eight generated families, three of which are the official
    retrieval-heads needles' sentence frames with random slot values; the official three needles
    themselves (resources/haystack/needles.jsonl) are never trained on and are evaluated as held-out.

Outputs (``--out DIR``): DIR/<model>/{config.json, model.safetensors, tokenizer.json,
[tokenizer_config.json, special_tokens_map.json], training.json, reference.safetensors, reference.json}.
reference.safetensors follows /work/shared/tools/make_fixtures.py (eager attention, fp32 compute on CPU,
computed after loading the saved bf16 folder back and upcasting it): input_ids, hidden_states,
attentions; full logits [2, T, vocab] would be 16-40 MB, so it stores `last_logits` [2, vocab] (at each
row's last real token) instead -- with tied embeddings the logits are the last hidden state (after the
final norm) times the embedding matrix. It also stores `lengths` [2].

Run: ``python3 train_tiny_models.py --model NAME --out DIR --tokenizers TOKDIR`` on the GPU box
(scripts/train/run_on_device.sh runs all three); ``--smoke`` runs the data generators, training loop,
evaluation and reference writer on CPU with a stand-in tokenizer and a plain-PyTorch stand-in model (no
transformers needed).
"""
import argparse
import json
import gzip
import math
import os
import random
import re
import shutil
import sys
import time
import traceback
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

STATE = {}  # the trained model and its training record, saved as a checkpoint if a later stage fails
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
T0 = time.time()


def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)


# ----------------------------------------------------------------------------------------------------
# Tokenizers
# ----------------------------------------------------------------------------------------------------
class HFTok:
    """The real tokenizer.json through the `tokenizers` library, never adding special tokens."""

    def __init__(self, path):
        from tokenizers import Tokenizer
        self.t = Tokenizer.from_file(path)
        self.vocab_size = self.t.get_vocab_size(with_added_tokens=True)

    def encode(self, text):
        return self.t.encode(text, add_special_tokens=False).ids

    def encode_offsets(self, text):
        e = self.t.encode(text, add_special_tokens=False)
        return e.ids, e.offsets

    def encode_batch(self, texts):
        return [e.ids for e in self.t.encode_batch(texts, add_special_tokens=False)]

    def encode_offsets_batch(self, texts):
        return [(e.ids, e.offsets) for e in self.t.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids):
        return self.t.decode(list(ids), skip_special_tokens=False)

    def token_to_id(self, s):
        return self.t.token_to_id(s)


class SmokeTok:
    """CPU stand-in: words / digits / punctuation with their leading space, '\\n' as '<0x0A>'."""

    PAT = re.compile(r" ?[A-Za-z']+| ?[0-9]| ?[^\sA-Za-z0-9]|\n| ")

    def __init__(self, vocab_size=12000):
        self.vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3}
        self.inv = {v: k for k, v in self.vocab.items()}
        self.vocab_size = vocab_size

    def _id(self, piece):
        if piece not in self.vocab:
            if len(self.vocab) >= self.vocab_size:
                return 0
            self.vocab[piece] = len(self.vocab)
            self.inv[self.vocab[piece]] = piece
        return self.vocab[piece]

    def encode_offsets(self, text):
        ids, offs = [], []
        for m in self.PAT.finditer(text):
            p = m.group(0)
            ids.append(self._id("<0x0A>" if p == "\n" else p))
            offs.append((m.start(), m.end()))
        return ids, offs

    def encode(self, text):
        return self.encode_offsets(text)[0]

    def encode_batch(self, texts):
        return [self.encode(t) for t in texts]

    def encode_offsets_batch(self, texts):
        return [self.encode_offsets(t) for t in texts]

    def decode(self, ids):
        return "".join("\n" if self.inv.get(i) == "<0x0A>" else self.inv.get(i, "?") for i in ids)

    def token_to_id(self, s):
        return self.vocab.get(s)


# ----------------------------------------------------------------------------------------------------
# Needle families (llama2-niah, mistral-sw)
# ----------------------------------------------------------------------------------------------------
CITIES = """Beijing Paris London Rome Madrid Berlin Vienna Prague Lisbon Dublin Oslo Stockholm Helsinki Warsaw
Athens Cairo Lagos Nairobi Delhi Mumbai Tokyo Osaka Seoul Bangkok Hanoi Manila Jakarta Sydney Melbourne Auckland
Toronto Montreal Chicago Boston Denver Seattle Houston Miami Lima Bogota Santiago Havana Istanbul Tehran Dubai
Moscow Kiev Budapest Zurich Geneva Brussels Amsterdam Copenhagen Edinburgh Glasgow Naples Venice Florence Milan
Barcelona Seville Porto Marseille Lyon Munich Hamburg Krakow Riga Tallinn Vilnius Sofia Belgrade Zagreb Tunis
Casablanca Accra Dakar Lusaka Harare Kampala Quito Caracas Montevideo Kyoto Taipei Singapore Perth Adelaide""".split()
PARKS = """Chaoyang Park|Hyde Park|Central Park|the Botanic Garden|the old harbour|the river bank|the city walls|the
flower market|the royal gardens|the Rose Garden|the north beach|the Olympic Park|the castle hill|the canal path|the
Summer Palace|the stone bridge|the night market|the lake shore|the old quarter|the pine forest""".replace("\n", " ").split("|")
ACTS1 = ["take a walk in {p}", "ride a bike through {p}", "have a picnic in {p}", "go jogging around {p}",
         "watch the sunset from {p}", "read a novel in {p}", "fly a kite over {p}", "take photographs of {p}",
         "sketch the trees in {p}", "feed the ducks at {p}", "listen to the street music near {p}",
         "explore the alleys behind {p}"]
DRINKS = """Espresso|green tea|hot chocolate|lemonade|jasmine tea|mint tea|cold coffee|apple cider|fresh orange
juice|ginger beer|black tea|iced latte|warm milk|mango juice|Cappuccino|cherry soda""".replace("\n", " ").split("|")
FOODS = """noodles|dumplings|rice|soup|pancakes|olives|oysters|fried fish|roast duck|apple pie|cheese|ice cream|
grilled corn|fresh bread|spicy tofu|sweet buns""".replace("\n", "").split("|")
ACTS2 = ["have a cup of {d}", "drink a glass of {d}", "eat a bowl of {f}", "share a plate of {f}",
         "buy some {f} from a stall", "order a pot of {d}"]
TIMES = ["morning", "evening", "afternoon", "night", "early morning", "late evening", "spring", "summer", "autumn",
         "winter"]
ORGS = """WMO UN WHO IMF NASA UNESCO OECD FAO IEA IPCC NOAA ESA UNICEF WTO ILO IAEA""".split()
SUBJECTS = ["records", "prices", "emissions", "temperatures", "harvests", "exports", "rainfall totals", "sea levels",
            "wages", "forest losses", "fish stocks", "river floods"]
VERBS1 = ["broken", "raised", "lowered", "doubled", "halved", "exceeded", "revised", "reported"]
VERBS2 = ["smashed", "tripled", "erased", "overturned", "questioned", "ignored", "restored", "forgotten"]
ITEMS = """greenhouse gas levels|surface temperatures|ocean heat|acidification|sea ice|glacier mass|coral reefs|
crop yields|air quality|soil moisture|river levels|heat waves|storm damage|desert dust|snow cover|wildfire smoke|
food prices|fresh water|bird numbers|city noise""".replace("\n", "").split("|")
SURNAMES = """Green Brown White Black Smith Jones Taylor Clarke Walker Wright Hughes Edwards Turner Baker Carter
Cooper Morris Parker Bennett Fisher Mason Hunt Palmer Lloyd Webb Knight Stone Wood Reed Fox""".split()
ADJS = ["mean", "rude", "lazy", "greedy", "boring", "selfish", "noisy", "careless", "bitter", "jealous", "stubborn",
        "arrogant", "dishonest", "grumpy", "vain", "cruel"]
ABILITIES = ["ride a horse", "dive a car", "swim a mile", "cook an egg", "tie a knot", "read a map", "sing a song",
             "climb a tree", "fix a bike", "row a boat", "bake a cake", "catch a fish", "play the piano",
             "paint a fence", "whistle a tune", "throw a ball", "skate on ice", "plant a garden"]
THINGS = ["code", "word", "number", "recipe", "password", "motto", "name", "wish", "song", "plan"]
THINGS2 = ["food", "colour", "animal", "book", "song", "city", "tool", "flower", "game", "river"]
PLACES = ["garden", "library", "tower", "cellar", "museum", "chapel", "lighthouse", "workshop", "barn", "palace",
          "station", "harbour", "school", "bakery"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "last", "golden", "silver", "small", "old"]
LOCATIONS = ["under the blue {n}", "behind the old {n}", "inside the broken {n}", "beneath the third {n}",
             "on top of the tall {n}", "next to the red {n}", "in a box under the {n}", "between two {n}s"]
NOUNS = """clock lamp stone bench fountain door chair table window statue barrel ladder cabinet mirror shelf chest
basket drum bell wheel kettle anchor lantern rope candle blanket carpet piano bucket fence gate tree bridge tower
boat wagon saddle helmet compass map feather ribbon coin jar bottle cup spoon plate bowl brush pencil notebook
violin flute trumpet apple pear plum lemon melon onion carrot pepper garlic hammer nail saw chisel needle thread
button pocket scarf glove boot hat coat shirt belt wallet ticket letter stamp parcel""".split()
ADJ2 = """red blue green yellow purple orange silver golden old new tiny huge quiet loud bright dark warm cold soft
hard sweet bitter heavy light broken shiny dusty wooden iron glass paper woolen clever brave gentle wild""".split()
NUMS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
         "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
FIRSTNAMES = """Mary John Anna Peter Laura Mark Emma Chris Alex Ben Jack Rose Adam Jane George Helen Frank Grace
Henry Alice Robert Susan Steve Karen Linda Eric Nancy Kevin Julia Brian Emily Ryan Sam Claire Luke Rachel Andrew
Diana Tony Maria Lucy Carl Oliver Sophie Hugo Nora Felix Ivy Leo Ada Omar Zara Ravi Mei Yuki Ines""".split()


def num_words(rng):
    n = rng.randint(1, 9999)
    parts = []
    if n >= 1000:
        parts += [NUMS[n // 1000], "thousand"]
        n %= 1000
    if n >= 100:
        parts += [NUMS[n // 100], "hundred"]
        n %= 100
    if n:
        if parts:
            parts.append("and")
        if n < 10:
            parts.append(NUMS[n])
        elif n < 20:
            parts.append(TEENS[n - 10])
        else:
            parts.append(TENS[n // 10] + ("-" + NUMS[n % 10] if n % 10 else ""))
    return " ".join(parts) if parts else "zero"


def value_phrase(rng, short=False):
    k = rng.random()
    if k < 0.35:
        s = f"a {rng.choice(ADJ2)} {rng.choice(NOUNS)}"
        if not short and rng.random() < 0.6:
            s += f" and {rng.choice(NUMS[2:])} {rng.choice(ADJ2)} {rng.choice(NOUNS)}s"
        return s
    if k < 0.7:
        n = rng.randint(2, 3 if short else 6)
        return " ".join(rng.choice(NOUNS + ADJ2) for _ in range(n))
    return num_words(rng)


def gen_needle(rng, family, short=False):
    """Returns (needle sentence with a leading space, question, answer span, key). The answer is a
    contiguous span at the end of the needle (with or without its final period)."""
    f = family
    if f == 0:  # official frame 1 (Beijing)
        city = rng.choice(CITIES)
        a1 = rng.choice(ACTS1).format(p=rng.choice(PARKS))
        a2 = rng.choice(ACTS2).format(d=rng.choice(DRINKS), f=rng.choice(FOODS))
        ans = f"{a1} and {a2} in the {rng.choice(TIMES)}"
        return f" The best thing to do in {city} is to {ans}.", f"What is the best thing to do in {city}", ans, city
    if f == 1:  # official frame 2 (WMO)
        org = rng.choice(ORGS)
        it = rng.sample(ITEMS, 4)
        ans = (f"{rng.choice(SUBJECTS)} were once again {rng.choice(VERBS1)}, and in some cases "
               f"{rng.choice(VERBS2)}, for {it[0]}, {it[1]}, {it[2]} and {it[3]}.")
        return f" A new report from the {org} shows that {ans}", f"What does a new report from {org} shows", ans, org
    if f == 2:  # official frame 3 (Mr Green)
        nm = rng.choice(SURNAMES)
        ab = rng.sample(ABILITIES, 2)
        ans = f"because he is a {rng.choice(ADJS)} person and also he can't {ab[0]} or {ab[1]}."
        return f" Mr {nm} is disliked by everyone {ans}", f"Why does everyone dislikes Mr {nm}", ans, nm
    if f == 3:
        nm, th = rng.choice(FIRSTNAMES + SURNAMES), rng.choice(THINGS)
        ans = value_phrase(rng, short)
        return f" The secret {th} of {nm} is {ans}.", f"What is the secret {th} of {nm}", ans, nm + th
    if f == 4:
        nm, th = rng.choice(FIRSTNAMES), rng.choice(THINGS2)
        ans = value_phrase(rng, short)
        return f" {nm}'s favourite {th} is {ans}.", f"What is {nm}'s favourite {th}", ans, nm + th
    if f == 5:
        o, p = rng.choice(ORDINALS), rng.choice(PLACES)
        ans = rng.choice(LOCATIONS).format(n=rng.choice(NOUNS))
        return f" The {o} key to the {p} is hidden {ans}.", f"Where is the {o} key to the {p} hidden", ans, o + p
    if f == 6:
        city, yr = rng.choice(CITIES), rng.randint(1100, 2024)
        ans = value_phrase(rng, short)
        return (f" In {yr}, the people of {city} built {ans}.", f"What did the people of {city} build in {yr}", ans,
                city + str(yr))
    city = rng.choice(CITIES)
    ans = num_words(rng)
    return f" The magic number of {city} is {ans}.", f"What is the magic number of {city}", ans, city


QUESTION_TEMPLATE = "Based on the content of the book, Question: {question}\nAnswer:"  # mechscope's default


def read_official_needles():
    p = os.path.join(REPO, "resources", "haystack", "needles.jsonl")
    out = []
    for line in open(p, encoding="utf-8"):
        if line.strip():
            out.append(json.loads(line))
    return out


class NeedlePool:
    """Pre-encoded needles: needle ids, question-prefix ids (ending in 'Answer:'), answer ids (+ newline)."""

    def __init__(self, tok, n, seed, families, short, exclude=()):
        rng = random.Random(seed)
        raw = []
        exclude = set(exclude)
        while len(raw) < n:
            f = rng.choice(families)
            needle, q, ans, key = gen_needle(rng, f, short)
            if needle in exclude:
                continue
            if rng.random() < 0.3:
                needle = needle[1:]  # sometimes without the leading space
            qq = q + (" ?" if rng.random() < 0.7 else "?")
            prefix = QUESTION_TEMPLATE.format(question=qq)
            raw.append((f, key, needle, prefix, prefix + " " + ans + "\n"))
        needles = tok.encode_batch([r[2] for r in raw])
        prefixes = tok.encode_batch([r[3] for r in raw])
        fulls = tok.encode_batch([r[4] for r in raw])
        self.items = []
        bad = 0
        for r, nd, pf, fu in zip(raw, needles, prefixes, fulls):
            if fu[:len(pf)] != pf or len(fu) <= len(pf) + 1:
                bad += 1
                continue
            self.items.append(SimpleNamespace(family=r[0], key=r[1], needle=np.array(nd, np.int64),
                                              prefix=np.array(pf, np.int64),
                                              answer=np.array(fu[len(pf):], np.int64), text=r[2], qa=r[4]))
        if bad:
            log(f"needle pool: {bad} items whose question prefix did not tokenize as a prefix were dropped")
        if len(self.items) < n // 2:
            raise RuntimeError(f"needle pool: only {len(self.items)} of {n} items are usable")


class Haystack:
    """The haystack text tokenized once; sentence boundaries from the decoded text's offsets."""

    def __init__(self, tok, path, eval_frac=0.08):
        text = gzip.open(path, "rt", encoding="utf-8").read() if path.endswith(".gz") else open(path, encoding="utf-8").read()
        paras = [p for p in text.split("\n\n") if p.strip()]
        sep = tok.encode("a\n\n")[-2:]  # the ids of the paragraph separator as it occurs mid-text
        ids, ends = [], []
        for p, (pi, po) in zip(paras, tok.encode_offsets_batch(paras)):
            base = len(ids)
            ends += [base + i + 1 for i, (s, e) in enumerate(po) if e > 0 and p[e - 1] in ".?!"]
            ids += pi + sep
        self.ids = np.array(ids, np.int64)
        self.bounds = np.array(ends, np.int64)  # positions just after a sentence-final token
        log(f"haystack paragraph separator ids {sep}")
        self.split = int(len(self.ids) * (1 - eval_frac))
        self.vocab_used = np.unique(self.ids)
        log(f"haystack: {len(text)} chars, {len(self.ids)} tokens, {len(self.bounds)} sentence ends, "
            f"{len(self.vocab_used)} distinct ids")

    def window(self, rng, n, held_out):
        lo, hi = (self.split, len(self.ids)) if held_out else (0, self.split)
        # start at a sentence start
        i0 = np.searchsorted(self.bounds, lo)
        i1 = np.searchsorted(self.bounds, hi - n - 1)
        if i1 <= i0:
            s = lo
        else:
            s = int(self.bounds[rng.randint(i0, i1 - 1)])
        return self.ids[s:s + n], s

    def boundary_before(self, start, rel):
        """Largest sentence boundary <= start + rel, relative to start (0 when none)."""
        j = np.searchsorted(self.bounds, start + rel, side="right") - 1
        if j < 0 or self.bounds[j] < start:
            return 0
        return int(self.bounds[j] - start)


def assemble_niah(rng, hay, pool, L, bos, held_out, distractor_p, depth=None, max_dist=None):
    """One row of exactly L tokens: BOS + context (needle at a sentence boundary [+ distractor]) +
    question prefix + answer + newline. Returns ids, kind array (0 prose/question, 2 answer), info."""
    for _ in range(100):
        it = pool.items[rng.randrange(len(pool.items))]
        extra = []
        if distractor_p and rng.random() < distractor_p:
            d = pool.items[rng.randrange(len(pool.items))]
            if d.key != it.key:
                extra.append(d.needle)
        fixed = 1 + len(it.needle) + sum(len(e) for e in extra) + len(it.prefix) + len(it.answer)
        n_ctx = L - fixed
        if n_ctx < 4:
            continue
        ctx, start = hay.window(rng, n_ctx, held_out)
        if len(ctx) < n_ctx:
            continue
        if max_dist is not None:  # needle close to the question (sliding window): gap of 0..8 prose tokens
            # answer token j is copied from ~ gap + |prefix| + |answer| + 1 tokens back
            gap_max = max_dist - len(it.prefix) - (len(it.answer) - 1) - 2
            if gap_max < 0:
                continue
            gap = rng.randint(0, min(8, gap_max))
            pos = hay.boundary_before(start, n_ctx - gap)
            if n_ctx - pos > min(8, gap_max):
                pos = n_ctx - gap  # no sentence boundary close enough: insert mid-sentence
        else:
            dep = rng.random() if depth is None else depth
            pos = n_ctx if dep >= 1.0 else hay.boundary_before(start, int(n_ctx * dep))
        parts = [np.array([bos], np.int64)]
        kinds = [np.zeros(1, np.int8)]
        ins = [(pos, it.needle, 1)]
        for e in extra:
            p2 = hay.boundary_before(start, rng.randint(0, n_ctx))
            if max_dist is not None:
                p2 = min(p2, pos)  # never between the needle and the question
            ins.append((p2, e, 0))
        ins.sort(key=lambda x: (x[0], x[2]))
        prev, needle_at = 0, None
        for p, arr, is_main in ins:
            parts.append(ctx[prev:p])
            kinds.append(np.zeros(p - prev, np.int8))
            if is_main:
                needle_at = sum(len(x) for x in parts)
            parts.append(arr)
            kinds.append(np.zeros(len(arr), np.int8))
            prev = p
        parts.append(ctx[prev:])
        kinds.append(np.zeros(n_ctx - prev, np.int8))
        parts += [it.prefix, it.answer]
        kinds += [np.zeros(len(it.prefix), np.int8), np.full(len(it.answer), 2, np.int8)]
        ids = np.concatenate(parts)
        kind = np.concatenate(kinds)
        assert len(ids) == L, (len(ids), L)
        return ids, kind, SimpleNamespace(item=it, needle_at=needle_at, answer_at=L - len(it.answer))
    raise RuntimeError(f"could not build a needle row of length {L}")


def assemble_copy(rng, hay, L, bos, vocab_ids, max_dist=None):
    """Prose with a random token span repeated later (kind 3 on the repeat)."""
    span = min(rng.randint(6, 20 if max_dist else 48), (L - 2) // 3)
    gap_hi = (max_dist - span - 1) if max_dist else min(300, L - 2 * span - 2)
    gap = rng.randint(0, max(0, gap_hi))
    pre = rng.randint(0, max(0, L - 1 - 2 * span - gap))
    post = L - 1 - 2 * span - gap - pre
    ctx, _ = hay.window(rng, pre + gap + post, False)
    sp = vocab_ids[np.array([rng.randrange(len(vocab_ids)) for _ in range(span)])]
    ids = np.concatenate([[bos], ctx[:pre], sp, ctx[pre:pre + gap], sp, ctx[pre + gap:]]).astype(np.int64)
    kind = np.zeros(L, np.int8)
    r0 = 1 + pre + span + gap
    kind[r0 + 1:r0 + span] = 3  # the first token of the repeat is not predictable
    assert len(ids) == L
    return ids, kind


def weights_from_kinds(kinds, wts):
    """Per-target loss weights [B, L-1] for predicting token t from position t-1: each kind's tokens are
    averaged within the batch and scaled by wts[kind]."""
    k = kinds[:, 1:]
    w = np.zeros(k.shape, np.float32)
    for kk, scale in wts.items():
        m = k == kk
        c = m.sum()
        if c and scale:
            w[m] = scale / c
    return w


# ----------------------------------------------------------------------------------------------------
# IOI and Colored Objects (gpt2-ioi)
# ----------------------------------------------------------------------------------------------------
IOI_TEMPLATES = [
    "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to",
    "Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to",
    "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to",
    "Then, [B] and [A] had a long argument, and afterwards [B] said to",
    "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to",
    "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to",
    "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to",
    "After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "Then, [B] and [A] had a long argument. Afterwards [B] said to",
    "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to",
]
IOI_NAMES = """Mary John Tom James Dan Sid Martin Amy Paul Kate Lisa Michael Sarah David Anna Peter Laura Mark Emma
Chris Alex Ben Jack Rose Adam Jane George Helen Frank Grace Henry Alice Robert Susan Steve Karen Joe Linda Eric
Nancy Kevin Julia Brian Emily Ryan Jessica Sam Claire Luke Victoria Matt Rachel Andrew Diana Tony Maria Jeff Lucy
Bill Carl""".split()
IOI_PLACES = ["store", "garden", "restaurant", "school", "hospital", "office", "house", "station"]
IOI_OBJECTS = ["ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack"]
CO_SURFACES = ["table", "desk", "floor"]
CO_STARTS = ["there is", "you see", "I see"]
CO_OBJECTS = ["pencil", "notebook", "pen", "cup", "plate", "jug", "mug", "puzzle", "textbook", "leash", "necklace",
              "bracelet", "bottle", "ball", "envelope", "lighter", "bowl"]
CO_COLOURS = ["red", "orange", "yellow", "green", "blue", "purple", "brown", "black"]


def abba(t):
    b, a = t.find("[B]"), t.find("[A]")
    t = list(t)
    t[a:a + 3] = "[B]"
    t[b:b + 3] = "[A]"
    return "".join(t)


def render_ioi(t, io, s1, s2, place, obj):
    t = t.replace("[A]", io)
    t = t.replace("[B]", s1, 1).replace("[B]", s2, 1)
    return t.replace("[PLACE]", place).replace("[OBJECT]", obj)


ALL_IOI_TEMPLATES = IOI_TEMPLATES + [abba(t) for t in IOI_TEMPLATES]


def gen_ioi(rng, names):
    ti = rng.randrange(len(ALL_IOI_TEMPLATES))
    io, s = rng.sample(names, 2)
    text = render_ioi(ALL_IOI_TEMPLATES[ti], io, s, s, rng.choice(IOI_PLACES), rng.choice(IOI_OBJECTS))
    return text, " " + io, " " + s, ti


def co_example(cs, os_, surface, start, q):
    items = [f"{'an' if c[0] == 'o' else 'a'} {c} {o}" for c, o in zip(cs, os_)]
    return (f"Q: On the {surface}, {start} {items[0]}, {items[1]}, and {items[2]}. "
            f"What color is the {os_[q]}?\nA:")


def gen_co(rng, shots=1):
    text = ""
    for _ in range(shots):
        c, o = rng.sample(CO_COLOURS, 3), rng.sample(CO_OBJECTS, 3)
        q = rng.randrange(3)
        text += co_example(c, o, rng.choice(CO_SURFACES), rng.choice(CO_STARTS), q) + " " + c[q] + "\n"
    c, o = rng.sample(CO_COLOURS, 3), rng.sample(CO_OBJECTS, 3)
    q = rng.randrange(3)
    other = (q + 1 + rng.randrange(2)) % 3
    return text + co_example(c, o, rng.choice(CO_SURFACES), rng.choice(CO_STARTS), q), " " + c[q], " " + c[other], q


# ----------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------
SPECS = {
    "llama2-niah": dict(tok="llama2", family="llama", d=96, layers=4, heads=4, kv=2, head_dim=24, ffn=256,
                        max_pos=2048, window=None, lr=1.5e-3, tokens_per_step=65536, time_cap=300),
    "mistral-sw": dict(tok="llama2", family="mistral", d=80, layers=2, heads=4, kv=2, head_dim=20, ffn=256,
                       max_pos=2048, window=64, lr=1.5e-3, tokens_per_step=49152, time_cap=180),
    "gpt2-ioi": dict(tok="gpt2", family="gpt2", d=48, layers=4, heads=4, kv=4, head_dim=12, ffn=192,
                     max_pos=256, window=None, lr=2e-3, batch=256, co_fraction=0.7, time_cap=200),
}


def make_hf_model(spec, vocab):
    import transformers as T
    if spec["family"] == "llama":
        cfg = T.LlamaConfig(vocab_size=vocab, hidden_size=spec["d"], intermediate_size=spec["ffn"],
                            num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"],
                            num_key_value_heads=spec["kv"], head_dim=spec["head_dim"],
                            max_position_embeddings=spec["max_pos"], rope_theta=10000.0, rms_norm_eps=1e-5,
                            tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, attention_dropout=0.0)
        cls = T.LlamaForCausalLM
    elif spec["family"] == "mistral":
        cfg = T.MistralConfig(vocab_size=vocab, hidden_size=spec["d"], intermediate_size=spec["ffn"],
                              num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"],
                              num_key_value_heads=spec["kv"], head_dim=spec["head_dim"],
                              max_position_embeddings=spec["max_pos"], rope_theta=10000.0, rms_norm_eps=1e-5,
                              sliding_window=spec["window"], tie_word_embeddings=True, bos_token_id=1,
                              eos_token_id=2, attention_dropout=0.0)
        cls = T.MistralForCausalLM
    else:
        cfg = T.GPT2Config(vocab_size=vocab, n_positions=spec["max_pos"], n_embd=spec["d"], n_layer=spec["layers"],
                           n_head=spec["heads"], n_inner=spec["ffn"], resid_pdrop=0.0, embd_pdrop=0.0,
                           attn_pdrop=0.0, bos_token_id=50256, eos_token_id=50256, tie_word_embeddings=True)
        cls = T.GPT2LMHeadModel
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return cls(cfg), cls


class StandIn(torch.nn.Module):
    """CPU smoke stand-in with the HF call signature (pre-norm transformer, learned positions, tied)."""

    def __init__(self, spec, vocab):
        super().__init__()
        d, self.h, self.window = spec["d"], spec["heads"], spec["window"]
        self.emb = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Embedding(spec["max_pos"], d)
        self.blocks = torch.nn.ModuleList()
        for _ in range(spec["layers"]):
            self.blocks.append(torch.nn.ModuleDict(dict(n1=torch.nn.LayerNorm(d), qkv=torch.nn.Linear(d, 3 * d),
                                                        o=torch.nn.Linear(d, d), n2=torch.nn.LayerNorm(d),
                                                        f1=torch.nn.Linear(d, spec["ffn"]),
                                                        f2=torch.nn.Linear(spec["ffn"], d))))
        self.nf = torch.nn.LayerNorm(d)
        self.config = SimpleNamespace(_attn_implementation="eager", vocab_size=vocab)

    def forward(self, input_ids, output_hidden_states=False, output_attentions=False, use_cache=False):
        B, T = input_ids.shape
        x = self.emb(input_ids) + self.pos(torch.arange(T, device=input_ids.device))
        i = torch.arange(T, device=x.device)
        mask = i[None, :] <= i[:, None]
        if self.window:
            mask = mask & (i[:, None] - i[None, :] < self.window)
        hs, ats = [x], []
        for b in self.blocks:
            q, k, v = b["qkv"](b["n1"](x)).view(B, T, 3, self.h, -1).permute(2, 0, 3, 1, 4)
            s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            a = s.masked_fill(~mask, float("-inf")).softmax(-1)
            ats.append(a)
            x = x + b["o"]((a @ v).transpose(1, 2).reshape(B, T, -1))
            x = x + b["f2"](F.gelu(b["f1"](b["n2"](x))))
            hs.append(x)
        x = self.nf(x)
        hs[-1] = x
        return SimpleNamespace(logits=x @ self.emb.weight.T, hidden_states=tuple(hs), attentions=tuple(ats))


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------
def train_or_load(model, make_batch, spec, device, args, log_every):
    if args.init_from:
        ck = torch.load(args.init_from, map_location="cpu")
        model.load_state_dict({k: v.float() for k, v in ck["state_dict"].items()}, strict=False)
        tr = ck["train"]
        log(f"loaded {args.init_from}: {tr['steps']} steps, final loss {tr['final_loss']}")
    else:
        tr = train(model, make_batch, spec, device, args.max_steps, args.time_cap or spec["time_cap"], log_every)
    STATE.update(model=model, train=tr)
    return tr


def train(model, make_batch, spec, device, max_steps, time_cap, log_every=100):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=spec["lr"], betas=(0.9, 0.95), eps=1e-8)
    warm = 150
    t_start = time.time()
    model.train()
    hist = []
    acc_loss = torch.zeros((), device=device)
    n_acc = 0
    step = 0
    for step in range(1, max_steps + 1):
        el = time.time() - t_start
        if el > time_cap:
            step -= 1
            break
        frac = min(1.0, max(step / max_steps, el / time_cap))
        lr = spec["lr"] * min(1.0, step / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        ids, w = make_batch(step)
        ids = torch.from_numpy(ids).to(device, non_blocking=True)
        w = torch.from_numpy(w).to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(input_ids=ids, use_cache=False)
        logits = out.logits[:, :-1].float()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
        loss = (ce.view_as(w) * w).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        acc_loss += loss.detach()
        n_acc += 1
        if step % log_every == 0 or step == 1:
            v = (acc_loss / n_acc).item()
            hist.append((step, round(time.time() - t_start, 1), v))
            log(f"step {step} loss {v:.4f} lr {lr:.2e} ({(time.time() - t_start) / step * 1000:.0f} ms/step)")
            acc_loss.zero_()
            n_acc = 0
    if n_acc:
        hist.append((step, round(time.time() - t_start, 1), (acc_loss / n_acc).item()))
    model.eval()
    return dict(steps=step, train_seconds=round(time.time() - t_start, 1), loss_history=hist,
                final_loss=hist[-1][2] if hist else None)


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def forward_logits(model, ids, device, chunk=32):
    outs = []
    for i in range(0, len(ids), chunk):
        x = torch.from_numpy(np.ascontiguousarray(ids[i:i + chunk])).to(device)
        outs.append(model(input_ids=x, use_cache=False).logits.float())
    return torch.cat(outs)


@torch.no_grad()
def niah_exact(model, rows, device):
    """Teacher-forced exact match of every answer token (+ newline) == greedy decoding reproduces it."""
    ids = np.stack([r[0] for r in rows])
    kinds = np.stack([r[1] for r in rows])
    ok, tok_ok, tok_n = 0, 0, 0
    for i in range(0, len(ids), 16):
        lg = forward_logits(model, ids[i:i + 16], device)
        pred = lg[:, :-1].argmax(-1).cpu().numpy()
        tgt = ids[i:i + 16, 1:]
        m = kinds[i:i + 16, 1:] == 2
        hit = (pred == tgt) | ~m
        ok += int(hit.all(1).sum())
        tok_ok += int(((pred == tgt) & m).sum())
        tok_n += int(m.sum())
    return ok / len(ids), tok_ok / max(1, tok_n)


def rouge1_recall(pred, ref):
    tk = lambda s: re.findall(r"[a-z0-9]+", s.lower())
    p, r = tk(pred), tk(ref)
    if not r:
        return 0.0
    from collections import Counter
    cp, cr = Counter(p), Counter(r)
    return 100.0 * sum(min(c, cp[w]) for w, c in cr.items()) / len(r)


@torch.no_grad()
def greedy(model, ids, device, stop_id, max_new=50):
    x = torch.tensor([list(ids)], device=device)
    out = []
    for _ in range(max_new):
        nxt = int(model(input_ids=x, use_cache=False).logits[0, -1].argmax())
        out.append(nxt)
        if nxt == stop_id:
            break
        x = torch.cat([x, torch.tensor([[nxt]], device=device)], 1)
    return out


def official_needles_eval(model, tok, hay, device, bos, nl, lengths, depths, window=None):
    res = []
    for nd in read_official_needles():
        needle = tok.encode(nd["needle"])
        qids = tok.encode(QUESTION_TEMPLATE.format(question=nd["question"]))
        for L in lengths:
            n_ctx = L - 1 - len(needle) - len(qids)
            ctx, start = hay.window(random.Random(L), n_ctx, True)
            for dep in depths:
                pos = n_ctx if dep >= 100 else hay.boundary_before(start, int(n_ctx * dep / 100))
                ids = [bos] + list(ctx[:pos]) + needle + list(ctx[pos:]) + qids
                gen = greedy(model, ids, device, nl, 60)
                text = tok.decode([g for g in gen if g != nl])
                r = rouge1_recall(text, nd["real_needle"])
                res.append(dict(needle=nd["question"], length=len(ids), depth=dep, rouge1_recall=round(r, 1),
                                stopped_on_newline=bool(gen and gen[-1] == nl), output=text))
    succ = sum(r["rouge1_recall"] > 50 for r in res) / max(1, len(res))
    return succ, res


# ----------------------------------------------------------------------------------------------------
# Saving and the parity reference
# ----------------------------------------------------------------------------------------------------
def save_file_any(tensors, path, smoke):
    if smoke:
        torch.save(tensors, path)
    else:
        from safetensors.torch import save_file
        save_file(tensors, path)


@torch.no_grad()
def write_reference(model, rows, folder, smoke, extra_json):
    """rows: list of (ids list, real length). Eager attention, fp32, CPU, as make_fixtures.py."""
    T = max(len(r[0]) for r in rows)
    ids = torch.tensor([r[0] for r in rows], dtype=torch.int64)
    assert ids.shape[1] == T
    o = model(input_ids=ids, output_hidden_states=True, output_attentions=True, use_cache=False)
    lengths = torch.tensor([r[1] for r in rows], dtype=torch.int64)
    last = torch.stack([o.logits[i, lengths[i] - 1] for i in range(len(rows))]).float()
    t = {"input_ids": ids.contiguous(), "lengths": lengths, "last_logits": last.contiguous(),
         "hidden_states": torch.stack(o.hidden_states).float().contiguous(),
         "attentions": torch.stack(o.attentions).float().contiguous()}
    save_file_any(t, os.path.join(folder, "reference.safetensors"), smoke)
    json.dump(extra_json, open(os.path.join(folder, "reference.json"), "w"), indent=1, ensure_ascii=False)
    log("reference", {k: tuple(v.shape) for k, v in t.items()})
    return o


def folder_size(folder):
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))


# ----------------------------------------------------------------------------------------------------
# Per-model drivers
# ----------------------------------------------------------------------------------------------------
def run_niah(name, spec, args, tok, device):
    smoke = args.smoke
    bos = 1
    nl = tok.token_to_id("<0x0A>")
    hay = Haystack(tok, os.path.join(HERE, "data", "kjv_haystack.txt.gz"))
    official = [n["needle"] for n in read_official_needles()]
    window = spec["window"]
    if window:
        fams, short, max_dist = [3, 4, 5, 6, 7], True, window - 4
    else:
        fams, short, max_dist = list(range(8)), False, None
    pool = NeedlePool(tok, 400 if smoke else 40000, args.seed, fams, short, official)
    eval_pool = NeedlePool(tok, 200 if smoke else 2000, args.seed + 1000, fams, short, official)
    log(f"needle pools: {len(pool.items)} train, {len(eval_pool.items)} eval; answer tokens "
        f"mean {np.mean([len(i.answer) for i in pool.items]):.1f}")
    vocab_ids = hay.vocab_used
    rng = random.Random(args.seed)
    lengths = [64, 96, 128] if smoke else ([128, 192, 256, 384, 512] if window else [128, 256, 384, 512, 768, 1024])
    niah_frac = 0.7

    def make_rows(L, B, r, held_out, pool_, dist_p):
        rows = []
        for _ in range(B):
            if r.random() < niah_frac or held_out:
                ids, kind, _ = assemble_niah(r, hay, pool_, L, bos, held_out, dist_p, max_dist=max_dist)
            else:
                ids, kind = assemble_copy(r, hay, L, bos, vocab_ids, max_dist)
            rows.append((ids, kind))
        return rows

    def make_batch(step):
        L = rng.choice(lengths)
        B = max(2, (spec["tokens_per_step"] if not smoke else 512) // L)
        rows = make_rows(L, B, rng, False, pool, 0.3)
        ids = np.stack([r[0] for r in rows])
        kinds = np.stack([r[1] for r in rows])
        return ids, weights_from_kinds(kinds, {0: 1.0, 2: 2.0, 3: 1.0})

    r0 = random.Random(5)
    ids, kind, inf = assemble_niah(r0, hay, pool, 160, bos, False, 0.3, max_dist=max_dist)
    log("sample needle row:", repr(tok.decode(ids.tolist())))
    log("  its answer ids", ids[kind == 2].tolist(), "=", repr(tok.decode(ids[kind == 2].tolist())))
    ids, kind = assemble_copy(r0, hay, 128, bos, vocab_ids, max_dist)
    log("sample copy row:", repr(tok.decode(ids.tolist())))
    if smoke:
        model = StandIn(spec, tok.vocab_size if not smoke else 12000)
        cls = None
    else:
        model, cls = make_hf_model(spec, tok.vocab_size)
        if hasattr(model, "lm_head"):
            log("tied:", model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr())
    model.to(device)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"{name}: {nparams} parameters")
    tr = train_or_load(model, make_batch, spec, device, args, 20 if smoke else 100)
    log(f"trained {tr['steps']} steps in {tr['train_seconds']} s, final loss {tr['final_loss']}")
    folder = os.path.join(args.out, name)
    model = save_and_reload(model, cls, folder, spec, args, tr, name)
    model.to(device)
    # held-out evaluation on the shipped weights
    er = random.Random(args.seed + 7)
    acc = {}
    eval_lengths = [96, 128] if smoke else ([160, 256, 512] if window else [256, 512, 1024])
    for L in eval_lengths:
        rows = make_rows(L, 16 if smoke else 128, er, True, eval_pool, 0.3)
        ex, tk = niah_exact(model, rows, device)
        acc[f"niah_exact_L{L}"] = round(ex, 4)
        acc[f"niah_token_acc_L{L}"] = round(tk, 4)
        log(f"held-out needle retrieval at {L} tokens: exact {ex:.3f}, answer-token accuracy {tk:.3f}")
    if window:
        # needle farther back than the window: the model cannot see it (expected to fail)
        rows = []
        for _ in range(16 if smoke else 128):
            ids, kind, _ = assemble_niah(er, hay, eval_pool, 256, bos, True, 0.0, depth=er.uniform(0.0, 0.4))
            rows.append((ids, kind))
        ex, tk = niah_exact(model, rows, device)
        acc["niah_exact_beyond_window_L256"] = round(ex, 4)
        acc["niah_token_acc_beyond_window_L256"] = round(tk, 4)
        log(f"needle 150+ tokens before the answer (beyond window {window}): exact {ex:.3f}, token acc {tk:.3f}")
        # copy inside the window
        rows = [assemble_copy(er, hay, 256, bos, vocab_ids, max_dist) for _ in range(64)]
        rows = [(i, np.where(k == 3, 2, 0).astype(np.int8)) for i, k in rows]
        ex, tk = niah_exact(model, rows, device)
        acc["copy_in_window_token_acc"] = round(tk, 4)
        log(f"copy inside the window: token acc {tk:.3f}")
    else:
        rows = [assemble_copy(er, hay, 512, bos, vocab_ids) for _ in range(64)]
        rows = [(i, np.where(k == 3, 2, 0).astype(np.int8)) for i, k in rows]
        ex, tk = niah_exact(model, rows, device)
        acc["copy_token_acc_L512"] = round(tk, 4)
        log(f"copy (induction) at 512 tokens: token acc {tk:.3f}")
        succ, det = official_needles_eval(model, tok, hay, device, bos, nl, [128] if smoke else [256, 512, 1024],
                                          [0, 50, 100] if smoke else [0, 25, 50, 75, 100])
        acc["official_needles_rouge_success"] = round(succ, 4)
        acc["official_needles_detail"] = det
        log(f"official needles (mechscope prompt format, held out): ROUGE-1 recall > 50 in {succ:.3f}")
        for d in det[:: max(1, len(det) // 6)]:
            log("   ", d["needle"], d["length"], d["depth"], d["rouge1_recall"], repr(d["output"][:80]))
    # reference prompts
    model.cpu()
    rr = random.Random(args.seed + 99)
    T = 160 if window else 64
    rows, info = [], []
    short_pool = [it for it in eval_pool.items if len(it.answer) <= (12 if window else 10)]
    sp = SimpleNamespace(items=short_pool)
    for i in range(2):
        ids, kind, inf = assemble_niah(rr, hay, sp, T, bos, True, 0.0, max_dist=max_dist)
        rows.append((ids.tolist(), T))
        info.append(dict(text=tok.decode(ids.tolist()), needle=inf.item.text, needle_start=int(inf.needle_at),
                         needle_end=int(inf.needle_at + len(inf.item.needle)), answer_start=int(inf.answer_at),
                         answer_ids=inf.item.answer.tolist()))
    ref_model = load_reference_model(cls, folder, model, smoke)
    o = write_reference(ref_model, rows, folder, smoke, dict(
        what="two needle-retrieval sequences, each ending with the answer and its newline; needle_start/end "
             "index the needle's tokens, answer_start the first answer token",
        rows=info))
    if window:
        a = torch.stack(o.attentions)  # [L, B, H, T, T]
        i = torch.arange(T)
        dist = i[:, None] - i[None, :]
        outside = a[..., dist >= window].abs().max().item()
        inside_max_d = int(dist[(a > 0).any(0).any(0).any(0)].max())
        acc["reference_attention_outside_window_max"] = outside
        acc["reference_max_attended_distance"] = inside_max_d
        log(f"reference: max attention at distance >= {window}: {outside}; farthest attended distance {inside_max_d}")
    finish(folder, tr, acc, spec, args, name, nparams, extra=dict(
        haystack="scripts/train/data/kjv_haystack.txt.gz (King James Bible, 19 books; last 8 % of tokens held out)",
        needle_families=fams, train_lengths=lengths, niah_fraction=niah_frac, distractor_p=0.3,
        max_needle_answer_distance=max_dist, loss_weights="mean CE over prose/question tokens + 2 x mean CE "
        "over answer tokens + mean CE over repeated-span tokens"))


def run_ioi(name, spec, args, tok, device):
    smoke = args.smoke
    bos = 50256 if not smoke else 1
    names = [n for n in IOI_NAMES if len(tok.encode(" " + n)) == 1]
    cols = [c for c in CO_COLOURS if len(tok.encode(" " + c)) == 1]
    if not smoke:
        dropped = sorted(set(IOI_NAMES) - set(names)) + sorted(set(CO_COLOURS) - set(cols))
        log(f"single-token names {len(names)}/{len(IOI_NAMES)}, colours {len(cols)}/8; dropped {dropped}")
    rng = random.Random(args.seed)
    er = random.Random(args.seed + 1000)
    held = set()
    eval_ioi = []
    for _ in range(1000):
        t, a, b, ti = gen_ioi(er, names)
        eval_ioi.append((t, a, b, ti))
        held.add(t)
    eval_co = []
    for _ in range(1000):
        t, a, b, q = gen_co(er, 1)
        eval_co.append((t, a, b, q))
        held.add(t)

    answer_id = {" " + w: tok.encode(" " + w)[0] for w in names + cols}

    def encode_row(text, answer):
        ids = [bos] + tok.encode(text)
        a = tok.encode(answer)
        assert len(a) == 1, answer
        return ids, a[0]

    def make_batch(step):
        B = spec["batch"] if not smoke else 32
        texts, answers = [], []
        while len(texts) < B:
            if rng.random() >= spec["co_fraction"]:
                t, a, _, _ = gen_ioi(rng, names)
            else:
                t, a, _, _ = gen_co(rng, 1 if rng.random() < 0.75 else 0)
            if t in held:
                continue
            texts.append(t)
            answers.append(answer_id[a])
        rows = []
        for ids, ans in zip(tok.encode_batch(texts), answers):
            rows.append(([bos] if rng.random() >= 0.1 else []) + ids + [ans])  # 10 % without BOS
        T = max(len(r) for r in rows)
        ids = np.full((B, T), bos, np.int64)
        kinds = np.full((B, T), 9, np.int8)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = r
            kinds[i, :len(r)] = 0
            kinds[i, len(r) - 1] = 2
        return ids, weights_from_kinds(kinds, {0: 0.1, 2: 1.0})

    r0 = random.Random(5)
    for t, a, b, _ in [gen_ioi(r0, names), gen_co(r0, 1)]:
        ids, ans = encode_row(t, a)
        log("sample:", repr(t), "->", repr(a), "ids", ids[:6], "...", ids[-4:], "answer", ans, "incorrect", tok.encode(b))
    if smoke:
        model, cls = StandIn(spec, 12000), None
    else:
        model, cls = make_hf_model(spec, 50257)
        log("tied:", model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr())
    model.to(device)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"{name}: {nparams} parameters")
    tr = train_or_load(model, make_batch, spec, device, args, 20 if smoke else 100)
    log(f"trained {tr['steps']} steps in {tr['train_seconds']} s, final loss {tr['final_loss']}")
    folder = os.path.join(args.out, name)
    model = save_and_reload(model, cls, folder, spec, args, tr, name)
    model.to(device)

    @torch.no_grad()
    def score(prompts, per_prompt=False):
        oks, ld = [], []
        for i in range(0, len(prompts), 128):
            chunk = prompts[i:i + 128]
            rows = [encode_row(t, a) for t, a, _, _ in chunk]
            T = max(len(r[0]) for r in rows)
            x = torch.full((len(rows), T), bos, dtype=torch.int64)
            for j, (r, _) in enumerate(rows):
                x[j, :len(r)] = torch.tensor(r)
            lg = model(input_ids=x.to(device), use_cache=False).logits.float()
            for j, ((r, ans), (_, _, b, _)) in enumerate(zip(rows, chunk)):
                l = lg[j, len(r) - 1]
                oks.append(int(l.argmax()) == ans)
                ld.append(float(l[ans] - l[answer_id[b]]))
        if per_prompt:
            return oks
        return sum(oks) / len(oks), float(np.mean(ld))

    n_eval = 50 if smoke else 1000
    acc = {}
    a1, l1 = score(eval_ioi[:n_eval])
    a2, l2 = score(eval_co[:n_eval])
    acc.update(ioi_accuracy=round(a1, 4), ioi_mean_logit_diff_io_minus_s=round(l1, 3), colored_objects_accuracy=round(a2, 4),
               colored_objects_mean_logit_diff_answer_minus_other=round(l2, 3), held_out_prompts=n_eval)
    log(f"held-out IOI accuracy {a1:.3f} (mean logit diff IO-S {l1:.2f}); Colored Objects accuracy {a2:.3f} "
        f"(answer - other listed colour {l2:.2f})")
    per_t = {}
    oks = score(eval_ioi[:n_eval], per_prompt=True)
    for ti in range(len(ALL_IOI_TEMPLATES)):
        sub = [ok for ok, p in zip(oks, eval_ioi[:n_eval]) if p[3] == ti]
        if sub:
            per_t[ti] = round(sum(sub) / len(sub), 3)
    acc["ioi_accuracy_per_template"] = per_t
    log("IOI accuracy per template (0-14 BABA, 15-29 ABBA):", per_t)
    # reference: a Colored Objects prompt and an IOI prompt padded with <|endoftext|> to its length
    model.cpu()
    rr = random.Random(args.seed + 99)
    t1, a1_, b1_, _ = gen_co(rr, 1)
    t2, a2_, b2_, _ = gen_ioi(rr, names)
    r1, ans1 = encode_row(t1, a1_)
    r2, ans2 = encode_row(t2, a2_)
    T = max(len(r1), len(r2))
    rows = [(r1 + [bos] * (T - len(r1)), len(r1)), (r2 + [bos] * (T - len(r2)), len(r2))]
    ref_model = load_reference_model(cls, folder, model, smoke)
    write_reference(ref_model, rows, folder, smoke, dict(
        what="row 0: a 1-shot Colored Objects prompt; row 1: an IOI prompt, right-padded with <|endoftext|> "
             "(50256) to row 0's length; lengths = real lengths; last_logits at position lengths-1",
        rows=[dict(text=t1, answer=a1_, answer_id=ans1, incorrect=b1_, incorrect_id=tok.encode(b1_)[0]),
              dict(text=t2, answer=a2_, answer_id=ans2, incorrect=b2_, incorrect_id=tok.encode(b2_)[0])]))
    finish(folder, tr, acc, spec, args, name, nparams, extra=dict(
        data=f"{100 - round(100 * spec['co_fraction'])} % IOI (15 templates x BABA/ABBA, 60 names, 8 places, 8 "
             f"objects), {round(100 * spec['co_fraction'])} % Colored Objects (75 % 1-shot, 25 % 0-shot), lower-case "
             "colour answers; BOS <|endoftext|> prepended (90 %)",
        loss_weights="mean CE on the answer token + 0.1 x mean CE on the prompt tokens", batch=spec["batch"],
        names=names, colours=cols))


def save_and_reload(model, cls, folder, spec, args, tr, name):
    os.makedirs(folder, exist_ok=True)
    if args.smoke:
        sd = {k: v.detach().to(torch.bfloat16).cpu() for k, v in model.state_dict().items()}
        torch.save(sd, os.path.join(folder, "model.pt"))
        model.load_state_dict({k: v.float() for k, v in sd.items()})
        return model.float()
    model = model.to(torch.bfloat16)
    try:
        model.save_pretrained(folder, safe_serialization=True)
    except TypeError:
        model.save_pretrained(folder)
    from safetensors import safe_open
    from safetensors.torch import save_file
    st = os.path.join(folder, "model.safetensors")
    with safe_open(st, framework="pt") as f:
        keys = list(f.keys())
        meta = f.metadata()
        if "lm_head.weight" in keys and model.config.tie_word_embeddings:
            tensors = {k: f.get_tensor(k) for k in keys if k != "lm_head.weight"}
        else:
            tensors = None
    log(f"model.safetensors: {len(keys)} tensors, e.g. {keys[:4]}")
    if tensors is not None:
        save_file(tensors, st, metadata=meta or {"format": "pt"})
        log("removed the tied lm_head.weight copy from model.safetensors")
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        src = os.path.join(args.tokenizers, spec["tok"], f)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(folder, f))
    m2 = cls.from_pretrained(folder, attn_implementation="eager").float().eval()
    log(f"saved {folder}: {sorted(os.listdir(folder))}; reloaded with attention "
        f"{getattr(m2.config, '_attn_implementation', '?')}")
    return m2


def load_reference_model(cls, folder, model, smoke):
    if smoke:
        return model.float().cpu().eval()
    m = cls.from_pretrained(folder, attn_implementation="eager").float().cpu().eval()
    assert m.config._attn_implementation == "eager", m.config._attn_implementation
    return m


def finish(folder, tr, acc, spec, args, name, nparams, extra):
    import platform
    info = dict(model=name, script="scripts/train/train_tiny_models.py", command=" ".join(sys.argv), seed=args.seed,
                spec={k: v for k, v in spec.items()}, parameters=nparams, weights_dtype="bfloat16",
                steps=tr["steps"], train_seconds=tr["train_seconds"], final_loss=tr["final_loss"],
                loss_history=tr["loss_history"], held_out=acc, optimizer="AdamW(0.9, 0.95), wd 0.05 on matrices, "
                "warm-up 150 steps, cosine to 10 % by the step or time cap, grad clip 1.0, bf16 autocast",
                torch=torch.__version__, python=platform.python_version(), **extra)
    try:
        import transformers, tokenizers
        info["transformers"], info["tokenizers"] = transformers.__version__, tokenizers.__version__
    except Exception:
        pass
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    json.dump(info, open(os.path.join(folder, "training.json"), "w"), indent=1, ensure_ascii=False)
    sz = folder_size(folder)
    log(f"{name}: folder {folder} holds {sz} bytes: " +
        ", ".join(f"{f} {os.path.getsize(os.path.join(folder, f))}" for f in sorted(os.listdir(folder))))
    if sz > 10_000_000:
        log(f"WARNING: {name} folder is larger than 10 MB")
    print("RESULT", name, json.dumps({k: v for k, v in acc.items() if not k.endswith("detail")}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, choices=sorted(SPECS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizers", default=os.path.join(REPO, "..", "shared", "fixtures", "tokenizers"),
                    help="folder holding llama2/ and gpt2/ tokenizer folders")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--time-cap", type=float, default=0, help="training seconds (default: per model)")
    ap.add_argument("--smoke", action="store_true", help="CPU check with stand-in tokenizer and model")
    ap.add_argument("--init-from", default="", help="a crash checkpoint (NAME.ckpt.pt): skip training")
    args = ap.parse_args()
    spec = dict(SPECS[args.model])
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    log(f"{args.model} on {device}, torch {torch.__version__}")
    tok = SmokeTok() if args.smoke else HFTok(os.path.join(args.tokenizers, spec["tok"], "tokenizer.json"))
    if args.smoke:
        spec["tokens_per_step"] = 512
    try:
        (run_ioi if spec["family"] == "gpt2" else run_niah)(args.model, spec, args, tok, device)
    except BaseException:
        traceback.print_exc()
        if "model" in STATE:
            os.makedirs(args.out, exist_ok=True)
            ck = os.path.join(args.out, f"{args.model}.ckpt.pt")
            torch.save({"state_dict": {k: v.detach().to(torch.bfloat16).cpu()
                                       for k, v in STATE["model"].state_dict().items()},
                        "train": STATE["train"]}, ck)
            log(f"FAILED after training; the trained weights are in {ck} (rerun with --init-from)")
        sys.exit(1)
    log("done")


if __name__ == "__main__":
    main()
