#!/usr/bin/env python3
"""Extended Hugging Face reference encodings for mechscope's tokenizer tests.

Run on a machine with `tokenizers` (0.23) installed:

    OUT=outdir python3 scripts/device/tokenizer_make_refs.py /path/to/shared/fixtures/tokenizers

Writes $OUT/tokenizer_refs_extended.json: {tokenizer name: [{text, ids, ids_special, offsets, decoded}]},
the same record format as fixtures/tokenizers/reference_encodings.json (offsets are code-point spans,
decoded = decode(ids, skip_special_tokens=False)). Copy it to tests/data/tokenizer/reference_extended.json.
The strings are generated deterministically below (several hundred per tokenizer).
"""
import json
import os
import random
import sys
import unicodedata

from tokenizers import Tokenizer

NAMES = ["gpt2", "llama2", "llama3", "qwen3"]


def category_samples(rng):
    """A few code points of every Unicode general category (surrogates excluded: not UTF-8)."""
    by_cat = {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        by_cat.setdefault(unicodedata.category(chr(cp)), []).append(cp)
    out = []
    for cat in sorted(by_cat):
        cps = by_cat[cat]
        picks = cps[:3] + rng.sample(cps, min(4, len(cps)))
        for cp in picks:
            c = chr(cp)
            out.append(c)
            out.append(f"a{c}b {c}{c} x{c}")
        out.append("".join(chr(cp) for cp in picks))
    return out


def texts():
    rng = random.Random(20240601)
    t = []
    # whitespace runs and line endings
    for ch in [" ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u180e", "\u200b", "\u2003"]:
        for n in (1, 2, 3, 5, 8):
            t += [ch * n, f"a{ch * n}b", f"{ch * n}lead", f"trail{ch * n}", f"x {ch * n} y"]
    t += [" \t\n \r\n ", "line1\nline2\r\nline3\rline4", "\n\n\nHello\n\n", "   ", " a ", "a\t\tb\n\nc",
          "word  \n  word", "end with space ", " start with space", "\t\ttabbed\tcode\n\t\t\tdeeper"]
    # Unicode general categories
    t += category_samples(rng)
    # emoji sequences
    t += ["👩‍👩‍👧‍👦", "👨🏽‍💻 coding", "🏳️‍🌈 flag", "🇯🇵🇺🇸🇩🇪", "1️⃣2️⃣#️⃣", "❤️‍🔥", "🧑🏿‍🤝‍🧑🏻", "😀😃😄😁😆😅😂🤣",
          "emoji🙂in🙃words", "👍🏻👍🏼👍🏽👍🏾👍🏿", "🫠🫡🫢", "a😀 b 😀c"]
    # RTL and bidi
    t += ["مرحبا بالعالم", "שלום עולם", "العربية 123 English", "עברית (with parens) ועוד", "\u200fRTL mark\u200e",
          "\u202eoverride\u202c", "فارسی: سلام دنیا", "اردو میں خوش آمدید", "السلام عليكم ورحمة الله وبركاته"]
    # combining marks and normalization-sensitive text
    t += ["e\u0301", "cafe\u0301 vs café", "a\u0328\u0301", "o\u0308\u0304", "\u212b \u00c5 A\u030a", "\u2126 \u03a9",
          "\u1100\u1161\u11a8 \uac01", "Tiê\u0301ng Viê\u0323t", "ﬁ ﬂ ﬀ ﬃ", "① ② ⑽", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ",
          "x\u0300\u0301\u0302\u0303\u0304", "\u0301leading mark", "q\u0307\u0323", "s\u0323\u0307", "ǅ ǆ Ǆ",
          "ΐ ΰ", "\u0345\u0301", "\u0e01\u0e34\u0e4a", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇"]
    # digits
    t += ["1" * 50, "1234567890" * 5, "3.14159265358979323846", "1,000,000.00", "-42 +17 0x1F 1e-9", "١٢٣٤٥٦",
          "१२३४", "๑๒๓", "²³¹ ½ ¾", "Ⅻ Ⅳ ⅷ", "2024-06-01T12:34:56Z", "v1.2.3-rc.4", "12345 678 9", "0000000000000"]
    # special and added tokens in odd places
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>", "<|begin_of_text|>",
                "<|end_of_text|>", "<think>", "</think>", "<|reserved_special_token_5|>", "<|eot_id|>", "<|fim_prefix|>"]
    for s in specials:
        t += [s, f"word{s}word", f" {s} ", f"{s}{s}", f"a {s}b", f"{s}\n", f"x{s[:-1]}", s.upper()]
    t += ["<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", "<s>[INST] hi [/INST]", "<|endoftext|><|endoftext|>x",
          "< s>", "<0x0A>", "Ġhello", "▁hello ▁▁world", "Ċ", "<|", "|>", "<|endoftext"]
    # long words and repetition
    t += ["a" * 300, "ab" * 200, "supercalifragilisticexpialidocious" * 8, "x" * 1000, "Z" * 257,
          "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(500)),
          "".join(rng.choice("αβγδεζηθ") for _ in range(200)), "日本" * 150, "🙂" * 100]
    # contractions and case
    t += ["IT'S", "it's IT'S It'S", "we'LL they'Re I'M you'VE he'D", "it'ſ", "it’s curly", "''s", "'s'", "don't'",
          "KELVIN \u212a", "İstanbul ıi", "ß ẞ straße STRASSE", "ǈ", "ΣΑΣ σας"]
    # scripts
    t += ["Hello世界مرحبا", "日本語とEnglishの混在テキスト", "한국어 텍스트 처리", "ภาษาไทยไม่มีช่องว่าง", "हिन्दी पाठ",
          "தமிழ் உரை", "ქართული ტექსტი", "Ελληνικά κείμενο", "Русский текст, ёжик", "Հայերեն", "ᚠᚢᚦᚨᚱᚲ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙",
          "ꦗꦮ", "ⴰⵣⵓⵍ", "ᐊᐃᑉ"]
    # code, markup, urls
    t += ["def f(x):\n\treturn {'a': [1, 2, 3]}\n", "for (int i = 0; i < n; ++i) { a[i] += b[i]; }", "<div class=\"x\">&amp;</div>",
          "SELECT * FROM t WHERE id = 42;", "https://example.com/path?q=1&r=2#frag", "user.name+tag@example.co.uk",
          "{\"key\": \"value\", \"n\": null}", "# Title\n\n* item\n* **bold** _it_", "$ ls -la | grep '^d'", "C:\\Users\\x\\file.txt",
          "a->b => c <=> d != e", "λx.x", "∀x∈ℝ: x²≥0", "E = mc²"]
    # unusual but valid code points
    t += ["\x00", "a\x00b", "\x01\x02\x1f\x7f", "\ufeffBOM", "\ufffd replacement", "\uffff\ufffe", "\U0010ffff", "\ue000\uf8ff",
          "\U000e0001\U000e0041", "\u00ad soft hyphen", "\u2060word\u2060joiner", "\u034f", "\U0001f3fb alone"]
    # sentences
    t += ["When Mary and John went to the store, Mary gave a drink to", "The best thing to do in San Francisco is eat a sandwich.",
          "Records were once again broken, and in some cases smashed, for greenhouse gas levels.",
          "Mr Green is disliked by everyone because he is a mean person.", "  Multiple   spaces   between   words  ",
          "Hello, World! How are you? I'm fine... (really)", "\"Quoted\" and 'single' and `back`"]
    seen, out = set(), []
    for s in t:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "fixtures/tokenizers"
    out_dir = os.environ.get("OUT", ".")
    strings = texts()
    result = {}
    for name in NAMES:
        tok = Tokenizer.from_file(os.path.join(root, name, "tokenizer.json"))
        recs = []
        for s in strings:
            e = tok.encode(s, add_special_tokens=False)
            es = tok.encode(s, add_special_tokens=True)
            recs.append({"text": s, "ids": e.ids, "ids_special": es.ids, "offsets": [list(o) for o in e.offsets],
                         "decoded": tok.decode(e.ids, skip_special_tokens=False)})
        result[name] = recs
        print(f"{name}: {len(recs)} records")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "tokenizer_refs_extended.json")
    with open(path, "w") as f:
        json.dump(result, f)
    print("wrote", path)


if __name__ == "__main__":
    main()
