"""The retrieval-head NIAH grid protocol (Wu et al. 2024, arXiv 2404.15574) without any model: the grid,
mechscope's prompt layout, the answer span, the official per-step score, ROUGE-1 and the per-test JSONL.

Used by ``niah_grid_hf.py`` (which adds the model back ends) and importable on a machine without
transformers. Written from the official ``retrieval_head_detection.py`` (nightdessert/Retrieval_Head:
``find_needle_idx``, ``decode``, ``retrieval_calculate``; read, not copied) and from mechscope's C++
(analysis/common/needle.cpp ``buildNeedleInput``, ``findNeedleSpan``, ``roundedLinspace``;
analysis/retrieval/retrieval.cpp ``runRetrievalTest``, ``retrievalTestToJson``; analysis/common/rouge.cpp),
so that both sides build the SAME prompt token ids from the same haystack, needles and settings.

Where mechscope departs from the official prompt code on purpose (docs/reproducing-papers.md §5: sentence
ends from decoded text, the needle joined with one space and re-encoded with the whole prompt, one haystack
for all needles, the span search over full windows only), this file follows mechscope: the comparison is of
the scoring and decoding on identical prompts, not of two prompt builders.

Tokenizers (one interface: ``encode(text, add_special) -> (ids, offsets)``, ``decode(ids, skip_special)``):
* ``HFTokenizer``: the ``tokenizers`` library on ``tokenizer.json`` (what mechscope's tokenizer reproduces);
* ``CliTokenizer``: encoding by ``mechscope-cli tokenize --json`` and decoding by a small port of the
  ``tokenizer.json`` decoders (Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace), for machines
  without ``tokenizers`` (the CPU check, tests/cli/niah_protocol.sh).
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time

# --------------------------------------------------------------------------------------------------
# grid axes


def rounded_linspace(start: float, end: float, count: int) -> list[int]:
    """round(linspace(start, end, count)) with numpy's half-to-even rounding (C++ roundedLinspace)."""
    out = []
    for i in range(count):
        v = float(start) if count == 1 else float(start) + (float(end) - float(start)) * i / (count - 1)
        out.append(int(round(v)))  # Python's round() is half to even, as std::nearbyint and numpy
    return out


def grid_axes(lengths: tuple[int, int], n_lengths: int, n_depths: int) -> tuple[list[int], list[int]]:
    a, b = lengths
    if a < 0 or b < a or n_lengths < 1 or n_depths < 1:
        raise ValueError("--lengths a:b needs 0 <= a <= b, --n-lengths/--depths >= 1")
    return rounded_linspace(a, b, n_lengths), rounded_linspace(0, 100, n_depths)


def parse_range(text: str) -> tuple[int, int]:
    a, _, b = text.partition(":")
    return int(a), int(b or a)


# --------------------------------------------------------------------------------------------------
# needles, haystack, prompts

DEFAULT_TEMPLATE = "Based on the content of the book, Question: {question}\nAnswer:"
_SPACE = " \t\r\n"


def read_needles(path: str) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip(" \t\r\n"):
                continue
            j = json.loads(line)
            for k in ("needle", "question", "real_needle"):
                if not isinstance(j.get(k), str):
                    raise ValueError(f"{path}:{n}: expected a string \"{k}\"")
            out.append({k: j[k] for k in ("needle", "question", "real_needle")})
    if not out:
        raise ValueError(f"{path}: no needles")
    return out


def ends_sentence(decoded_token: str) -> bool:
    """The token's last character that is not a space, tab, CR or LF is '.' (C++ endsSentence)."""
    s = decoded_token.rstrip(_SPACE)
    return s.endswith(".")


class Haystack:
    """Token ids of the haystack text (no special tokens) and, per id, whether it ends a sentence."""

    def __init__(self, tok, text: str):
        self.ids, _ = tok.encode(text, False)
        if not self.ids:
            raise ValueError("the haystack text encodes to no tokens")
        memo: dict[int, bool] = {}
        self.sentence_end = []
        for i in self.ids:
            if i not in memo:
                memo[i] = ends_sentence(tok.decode([i], False))
            self.sentence_end.append(memo[i])


def find_needle_span(ids: list[int], answer: list[int], threshold: float = 0.9):
    """find_needle_idx: the first window of |answer| tokens whose token-set overlap with the answer's set
    exceeds `threshold`. Whole windows only, as mechscope; the official loop also tries the shorter windows
    at the very end of the prompt, which matters only if the answer ended the prompt (it never does: the
    question follows)."""
    m, n = len(answer), len(ids)
    if m == 0 or m > n:
        return None
    want = set(answer)
    for i in range(n - m + 1):
        if len(set(ids[i : i + m]) & want) / len(want) > threshold:
            return i, i + m
    return None


def build_needle_input(tok, hay: Haystack, needle: dict, length: int, depth: float, layout: dict) -> dict:
    """mechscope's buildNeedleInput: context = the first length - buffer - |needle| haystack tokens (wrapping),
    insertion at int(n * depth / 100) moved back to just after a sentence-final token (depth 100 appends),
    text = decode(context[:i]) [+ ' '] + needle [+ ' '] + decode(rest) + question, encoded once with the
    special tokens; the answer span searched in the ids."""
    needle_text = needle["needle"].strip(_SPACE)
    needle_tokens = len(tok.encode(needle_text, False)[0])
    budget = length - layout["buffer"]
    if needle_tokens > budget:
        raise ValueError(f"the needle is {needle_tokens} tokens, longer than context length {length} minus buffer {layout['buffer']}")
    n_ctx = budget - needle_tokens
    hs = len(hay.ids)
    context = [hay.ids[i % hs] for i in range(n_ctx)]
    ins = n_ctx
    if depth < 100:
        ins = int(float(n_ctx) * (depth / 100.0))
        while ins > 0 and not hay.sentence_end[(ins - 1) % hs]:
            ins -= 1
    prefix = tok.decode(context[:ins], False)
    full = tok.decode(context, False)
    suffix = full[len(prefix) :] if full.startswith(prefix) else tok.decode(context[ins:], False)
    text = prefix
    if text and text[-1] not in _SPACE:
        text += " "
    needle_char = len(text)  # code points, as Encoding offsets
    text += needle_text
    if suffix and suffix[0] not in _SPACE:
        text += " "
    text += suffix
    text += layout["question_template"].replace("{question}", needle["question"], 1)
    ids, offsets = tok.encode(text, layout.get("add_special_tokens", True))
    inserted_at = len(ids)
    for i, (_, e) in enumerate(offsets):
        if e > needle_char:
            inserted_at = i
            break
    answer = tok.encode(needle["real_needle"], False)[0]
    span = find_needle_span(ids, answer, layout["span_threshold"])
    return {"ids": ids, "span": span, "inserted_at": inserted_at, "context_tokens": n_ctx, "insertion_token": ins,
            "haystack_repeated": n_ctx > hs}


def fnv1a64_hex(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for c in data:
        h ^= c
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"fnv1a64:{h:016x}"


def prompt_hash(ids: list[int]) -> str:
    """fnv1a64 of the ids written as decimal numbers joined by ',' (the key a C++ record would need too)."""
    return fnv1a64_hex(",".join(str(int(i)) for i in ids).encode())


# --------------------------------------------------------------------------------------------------
# scoring


def score_step(score: list[list[float]], top1: list[list[int]], emitted: int, prompt_ids: list[int], span) -> None:
    """retrieval_calculate (topk=1): a head whose top-1 key j of the current row lies in the answer span
    [s, e) on a prompt token equal to the emitted one gains 1/(e - s). No span: nothing scores (the
    official -1/-1)."""
    if span is None:
        return
    s, e = span
    unit = 1.0 / (e - s)
    for l, row in enumerate(top1):
        for h, j in enumerate(row):
            if s <= j < e and prompt_ids[j] == emitted:
                score[l][h] += unit


def light_stem(w: str) -> str:
    if len(w) <= 3:
        return w
    if w.endswith("sses") or w.endswith("ies"):
        return w[:-2]
    for suf in ("ing", "ed", "ly", "es"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            return w[: -len(suf)]
    if w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def rouge_tokens(text: str, stem: bool = True) -> list[str]:
    out, cur = [], []
    for ch in text.encode("utf-8"):
        c = chr(ch)
        if "a" <= c <= "z" or "0" <= c <= "9":
            cur.append(c)
        elif "A" <= c <= "Z":
            cur.append(c.lower())
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return [light_stem(t) for t in out] if stem else out


def rouge1_recall(reference: str, candidate: str) -> float:
    """mechscope's ROUGE-1 recall (analysis/common/rouge.cpp: ASCII alphanumeric runs, light stemmer)."""
    ref = rouge_tokens(reference)
    if not ref:
        return 0.0
    r, c = {}, {}
    for t in ref:
        r[t] = r.get(t, 0) + 1
    for t in rouge_tokens(candidate):
        c[t] = c.get(t, 0) + 1
    return sum(min(n, c.get(w, 0)) for w, n in r.items()) / len(ref)


def rouge1_recall_official(reference: str, candidate: str):
    """The official ROUGE (rouge_score, Porter stemmer) when installed; None otherwise."""
    try:
        from rouge_score import rouge_scorer  # noqa: PLC0415
    except ImportError:
        return None
    return rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True).score(reference, candidate)["rouge1"].recall


def stop_index(generated: list[int], decode_text, stop_on_newline: bool, stop_tokens: list[int]):
    """Index of the step after which decoding stops (that step is kept and scored, as the official loop),
    and the reason; (None, "max_new_tokens") when it runs to the end. Greedy decoding is causal, so cutting
    a longer generation here gives exactly what stopping there would have."""
    for s, y in enumerate(generated):
        if y in stop_tokens:
            return s, "stop_token"
        if stop_on_newline and "\n" in decode_text(generated[: s + 1]):
            return s, "newline"
    return None, "max_new_tokens"


def test_record(needle_index: int, length: int, depth: int, prompt: dict, steps: list[dict], n_layers: int, n_heads: int,
                decode_text, real_needle: str, settings: dict) -> dict:
    """One test's record with mechscope's tests.jsonl keys (retrievalTestToJson with scores), from the
    backend's steps: each {"token", "top1" [L][H], optional "gap" [L][H], optional "logit_gap"}."""
    generated = [st["token"] for st in steps]
    cut, reason = stop_index(generated, decode_text, settings["stop_on_newline"], settings["stop_tokens"])
    if cut is not None:
        steps = steps[: cut + 1]
        generated = generated[: cut + 1]
    score = [[0.0] * n_heads for _ in range(n_layers)]
    for st in steps:
        score_step(score, st["top1"], st["token"], prompt["ids"], prompt["span"])
    text = decode_text(generated)
    rouge = rouge1_recall(real_needle, text)
    rec = {
        "needle": needle_index, "length": length, "depth": depth, "n_tokens": len(prompt["ids"]),
        "needle_span": list(prompt["span"]) if prompt["span"] else None, "span_found": prompt["span"] is not None,
        "generated_ids": generated, "rouge1_recall": rouge * 100.0, "success": rouge > settings["success_threshold"],
        "inserted_at": prompt["inserted_at"], "stop_reason": reason, "head_scores": score,
        "argmax": [st["top1"] for st in steps], "condition": "main", "prompt_hash": prompt_hash(prompt["ids"]),
    }
    official = rouge1_recall_official(real_needle, text.strip())
    if official is not None:
        rec["rouge1_recall_official"] = official * 100.0
    if steps and "logit_gap" in steps[0]:
        rec["logit_gap"] = [st["logit_gap"] for st in steps]
    if steps and "gap" in steps[0]:
        rec["argmax_gap"] = [st["gap"] for st in steps]
    return rec


def prompt_record(needle_index: int, length: int, depth: int, prompt: dict) -> dict:
    """A prompt-only record (no decoding): what identifies the prompt in mechscope's records."""
    return {"needle": needle_index, "length": length, "depth": depth, "n_tokens": len(prompt["ids"]),
            "needle_span": list(prompt["span"]) if prompt["span"] else None, "span_found": prompt["span"] is not None,
            "inserted_at": prompt["inserted_at"], "condition": "main", "prompt_hash": prompt_hash(prompt["ids"]), "prompt_only": True}


# --------------------------------------------------------------------------------------------------
# JSONL


def read_records(path: str, condition: str = "main") -> tuple[dict, dict]:
    """(header, {(needle, length, depth): record}) of a tests.jsonl (mechscope's or ours). Lines cut by a
    crash are skipped; records of other conditions (mechscope's "control") are left out."""
    header, recs = {}, {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                j = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "needle" not in j:
                if not header:
                    header = j
                continue
            if j.get("condition", "main") != condition:
                continue
            recs[(j["needle"], j["length"], j["depth"])] = j
    return header, recs


# --------------------------------------------------------------------------------------------------
# tokenizers


class HFTokenizer:
    """The `tokenizers` library on a model folder's tokenizer.json: encode with or without the
    post-processor's special tokens, decode without clean-up (what mechscope's Tokenizer reproduces)."""

    def __init__(self, folder: str):
        from tokenizers import Tokenizer  # noqa: PLC0415

        path = folder if folder.endswith(".json") else os.path.join(folder, "tokenizer.json")
        self.tok = Tokenizer.from_file(path)
        self.name = f"tokenizers {__import__('tokenizers').__version__}"

    def encode(self, text: str, add_special: bool):
        e = self.tok.encode(text, add_special_tokens=add_special)
        return list(e.ids), [tuple(o) for o in e.offsets]

    def decode(self, ids, skip_special: bool) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=skip_special)


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class JsonDecoder:
    """tokenizer.json's decoder chain, ported for what the tokenizers in this repo use (Sequence, Replace
    with a string pattern, ByteFallback, Fuse, Strip, ByteLevel, Metaspace); no decoder: tokens joined by
    spaces. Raises on any other decoder type."""

    def __init__(self, tj: dict):
        self.spec = tj.get("decoder")
        model_vocab = tj["model"].get("vocab", {})
        if isinstance(model_vocab, list):  # Unigram: [[piece, score], ...]
            self.id_to_token = {i: p[0] for i, p in enumerate(model_vocab)}
        else:
            self.id_to_token = {v: k for k, v in model_vocab.items()}
        self.special = set()
        for a in tj.get("added_tokens", []):
            self.id_to_token[a["id"]] = a["content"]
            if a.get("special"):
                self.special.add(a["id"])
        self.byte_dec = {c: b for b, c in _bytes_to_unicode().items()}

    def decode(self, ids, skip_special: bool) -> str:
        toks = [self.id_to_token[int(i)] for i in ids if int(i) in self.id_to_token and not (skip_special and int(i) in self.special)]
        if self.spec is None:
            return " ".join(toks)
        return "".join(self._chain(self.spec, toks))

    def _chain(self, d: dict, toks: list[str]) -> list[str]:
        t = d["type"]
        if t == "Sequence":
            for sub in d["decoders"]:
                toks = self._chain(sub, toks)
            return toks
        if t == "Replace":
            pat = d["pattern"]
            if "String" not in pat:
                raise ValueError("Replace decoder with a regex pattern: not ported")
            return [x.replace(pat["String"], d["content"]) for x in toks]
        if t == "ByteFallback":
            out, pending = [], []

            def flush():
                if pending:
                    try:
                        out.append(bytes(pending).decode("utf-8"))
                    except UnicodeDecodeError:
                        out.extend(["\ufffd"] * len(pending))
                    pending.clear()

            for x in toks:
                if len(x) == 6 and x.startswith("<0x") and x.endswith(">"):
                    try:
                        pending.append(int(x[3:5], 16))
                        continue
                    except ValueError:
                        pass
                flush()
                out.append(x)
            flush()
            return out
        if t == "Fuse":
            return ["".join(toks)]
        if t == "Strip":
            c, start, stop = d["content"], d.get("start", 0), d.get("stop", 0)
            out = []
            for x in toks:
                i = 0
                while i < start and x.startswith(c):
                    x = x[len(c) :]
                    i += 1
                i = 0
                while i < stop and x.endswith(c) and x:
                    x = x[: -len(c)]
                    i += 1
                out.append(x)
            return out
        if t == "ByteLevel":
            data = bytearray()
            for x in toks:
                if all(ch in self.byte_dec for ch in x):
                    data.extend(self.byte_dec[ch] for ch in x)
                else:
                    data.extend(x.encode("utf-8"))
            return [bytes(data).decode("utf-8", errors="replace")]
        if t == "Metaspace":
            rep = d.get("replacement", "\u2581")
            prepend = d.get("prepend_scheme", "always" if d.get("add_prefix_space", True) else "never")
            out = []
            for i, x in enumerate(toks):
                x = x.replace(rep, " ")
                if i == 0 and prepend != "never" and x.startswith(" "):
                    x = x[1:]
                out.append(x)
            return out
        raise ValueError(f"decoder {t}: not ported (use the tokenizers library)")


class CliTokenizer:
    """Encoding by `mechscope-cli tokenize --json` (mechscope's own HF-exact tokenizer, as the C++ grid
    encodes), decoding by JsonDecoder. Encodings are cached; one process per distinct text."""

    def __init__(self, folder: str, cli: str):
        self.path = folder if folder.endswith(".json") else os.path.join(folder, "tokenizer.json")
        self.cli = cli
        with open(self.path, encoding="utf-8") as f:
            self.dec = JsonDecoder(json.load(f))
        self.cache: dict[tuple[str, bool], tuple[list[int], list[tuple[int, int]]]] = {}
        self.name = f"mechscope-cli tokenize ({cli})"

    def encode(self, text: str, add_special: bool):
        key = (text, add_special)
        if key not in self.cache:
            with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
                f.write(json.dumps(text) + "\n")
                name = f.name
            try:
                cmd = [self.cli, "tokenize", "--tokenizer", self.path, "--text-file", name, "--json-lines", "--json"]
                if add_special:
                    cmd.append("--add-special-tokens")
                for attempt in range(5):  # a binary being relinked beside us is briefly not executable
                    try:
                        r = subprocess.run(cmd, check=True, capture_output=True, text=True)
                        break
                    except OSError:
                        if attempt == 4:
                            raise
                        time.sleep(2)
            finally:
                os.unlink(name)
            j = json.loads(r.stdout.strip().splitlines()[0])
            self.cache[key] = (list(j["ids"]), [tuple(o) for o in j["offsets"]])
        return self.cache[key]

    def decode(self, ids, skip_special: bool) -> str:
        return self.dec.decode(ids, skip_special)
