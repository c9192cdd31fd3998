#!/usr/bin/env python3
"""Reference side of benchmarks/tokenize_speed.sh.

  tokenize_ref.py corpus OUT.jsonl [MB]     write the deterministic mixed-language corpus
  tokenize_ref.py bench DIR CORPUS.jsonl [REPEAT]
                                            time the `tokenizers` package on it

The corpus is generated from a fixed seed (no downloads): Zipf-distributed words of
made-up English/German/French/Russian lexicons, Chinese and Japanese text, Arabic
and Hindi, Python/C code, numbers, URLs, emoji (ZWJ sequences, skin tones),
decomposed accents, whitespace runs. One JSON object {"text": ...} per line (texts
contain newlines).

bench encodes every text with Tokenizer.encode_batch(texts, add_special_tokens=False)
(run it with RAYON_NUM_THREADS=1 for one core), best of REPEAT runs, and prints the
same line format as dpo_tokenize_bench, including a SHA-256 of all ids so the two
can be checked for identical output.
"""
import hashlib
import json
import random
import sys
import time
from array import array


def zipf_picker(rng, items, s=1.05):
    weights = [1.0 / (i + 1) ** s for i in range(len(items))]
    total = sum(weights)
    cum, acc = [], 0.0
    for w in weights:
        acc += w / total
        cum.append(acc)
    import bisect

    def pick():
        return items[min(bisect.bisect_left(cum, rng.random()), len(items) - 1)]

    return pick


def lexicon(rng, syllables, n, max_syl=4):
    k = len(syllables)
    n = min(n, sum(k ** i for i in range(1, max_syl + 1)) // 2)  # leave room to find them
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, max_syl))))
    words = sorted(words)
    rng.shuffle(words)
    return words


COMMON_EN = ("the of and to a in is it you that he was for on are with as I his they be at one "
             "have this from or had by hot word but what some we can out other were all there "
             "when up use your how said an each she which do their time if will way about many "
             "then them write would like so these her long make thing see him two has look more "
             "day could go come did number sound no most people my over know water than call "
             "first who may down side been now find don't it's can't we'll they're I'm you've").split()


def make_corpus(path, mb):
    rng = random.Random(20240611)
    en_syl = ["ta", "re", "in", "on", "er", "an", "th", "st", "ing", "tion", "pro", "con", "ex",
              "de", "com", "ly", "ment", "ness", "able", "al", "ic", "ous", "ar", "or", "ve", "la",
              "mi", "so", "ka", "ri", "ge", "po", "ble", "ter", "ver", "un", "dis", "pre", "ant"]
    de_syl = ["sch", "ei", "ung", "keit", "über", "ä", "ö", "ü", "ß", "en", "er", "ge", "lich",
              "bar", "stein", "haus", "wald", "zeit", "kraft", "fahr"]
    fr_syl = ["é", "è", "à", "ç", "ou", "eau", "ment", "tion", "que", "re", "le", "la", "ne", "ê",
              "oi", "an", "on", "pre", "dé", "ti"]
    ru_syl = ["при", "вет", "ка", "ко", "ро", "ва", "ни", "ть", "ость", "ный", "ская", "ли",
              "на", "до", "по", "ра", "ство", "же", "мы", "ён"]
    en = zipf_picker(rng, COMMON_EN + lexicon(rng, en_syl, 30000))
    de = zipf_picker(rng, lexicon(rng, de_syl, 8000, 3))
    fr = zipf_picker(rng, lexicon(rng, fr_syl, 8000, 3))
    ru = zipf_picker(rng, lexicon(rng, ru_syl, 12000, 3))
    han = [chr(c) for c in range(0x4E00, 0x9FA6)]
    rng.shuffle(han)
    zh = zipf_picker(rng, han[:4000], 1.0)
    kana = [chr(c) for c in range(0x3041, 0x3097)] + [chr(c) for c in range(0x30A1, 0x30FB)]
    ja = zipf_picker(rng, kana + han[:800], 1.0)
    ar = zipf_picker(rng, lexicon(rng, ["ال", "م", "ك", "ت", "ب", "س", "لا", "ي", "ن", "ر", "ع"], 3000, 3))
    hi = zipf_picker(rng, lexicon(rng, ["क", "का", "की", "है", "में", "से", "ने", "हि", "न्दी", "त्र", "प्र"], 3000, 3))
    emoji = ["😀", "👍", "👍🏽", "🎉", "❤️", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🤖", "🔥", "✨", "👩🏾‍💻", "🇫🇷"]
    punct = [".", ",", "!", "?", ";", ":", " -", "...", " (", ")", "\""]

    def sentence(word, sep=" ", lo=4, hi=18):
        ws = [word() for _ in range(rng.randint(lo, hi))]
        if sep == " " and rng.random() < 0.5:
            ws[0] = ws[0][:1].upper() + ws[0][1:]
        for i in range(1, len(ws)):
            if rng.random() < 0.08:
                ws[i] = ws[i] + rng.choice(punct)
        s = sep.join(ws)
        if rng.random() < 0.1:
            s += " " + str(rng.randint(0, 10 ** rng.randint(1, 12)))
        if rng.random() < 0.05:
            s += " " + rng.choice(emoji)
        return s + rng.choice([".", ".", ".", "!", "?"])

    def cjk_sentence(pick):
        s = "".join(pick() for _ in range(rng.randint(8, 40)))
        if rng.random() < 0.3:
            s += str(rng.randint(1, 2024)) + "年"
        return s + rng.choice(["。", "、", "！", "？"])

    def code_block():
        lines = []
        ind = 0
        for _ in range(rng.randint(4, 25)):
            name = en().replace("'", "") or "x"
            kind = rng.random()
            if kind < 0.2:
                lines.append(" " * ind + f"def {name}_{en()}(self, {name}, n={rng.randint(0, 99)}):")
                ind = min(ind + 4, 12)
            elif kind < 0.35:
                lines.append(" " * ind + f"for (int i = 0; i < {name}.size(); ++i) {{")
            elif kind < 0.5 and ind:
                ind -= 4
                lines.append(" " * ind + "return " + name + f" * {rng.random():.4f}")
            elif kind < 0.6:
                lines.append(" " * ind + f"# {sentence(en, lo=3, hi=8)}")
            else:
                lines.append(" " * ind + f"{name} = {name}.get('{en()}', {rng.randint(0, 1 << 20)}) + 0x{rng.randint(0, 1 << 32):x}")
        return "```python\n" + "\n".join(lines) + "\n```"

    def paragraph():
        r = rng.random()
        if r < 0.40:
            return " ".join(sentence(en) for _ in range(rng.randint(2, 8)))
        if r < 0.47:
            return " ".join(sentence(de) for _ in range(rng.randint(2, 6)))
        if r < 0.53:
            return " ".join(sentence(fr) for _ in range(rng.randint(2, 6)))
        if r < 0.60:
            return " ".join(sentence(ru) for _ in range(rng.randint(2, 6)))
        if r < 0.72:
            return "".join(cjk_sentence(zh) for _ in range(rng.randint(2, 8)))
        if r < 0.76:
            return "".join(cjk_sentence(ja) for _ in range(rng.randint(2, 6)))
        if r < 0.78:
            return " ".join(sentence(ar) for _ in range(rng.randint(1, 4)))
        if r < 0.80:
            return " ".join(sentence(hi) for _ in range(rng.randint(1, 4)))
        if r < 0.92:
            return code_block()
        if r < 0.95:
            # decomposed accents (NFD), exercised by NFC normalisers
            return " ".join(w.replace("é", "e\u0301").replace("ü", "u\u0308")
                            for w in sentence(fr).split())
        return (f"https://{en()}.example.org/{en()}/{rng.randint(1, 99999)}?q={en()}&n={rng.random():.3f}"
                f"  \t {rng.randint(1, 31):02d}/{rng.randint(1, 12):02d}/{rng.randint(1900, 2100)}"
                f" {rng.choice(emoji)}{rng.choice(emoji)}   ")

    target = int(mb * 1e6)
    size = 0
    with open(path, "w", encoding="utf-8") as f:
        while size < target:
            parts = [paragraph() for _ in range(rng.randint(1, 6))]
            seps = ["\n\n", "\n", "\r\n", "\n\n\n", "  \n"]
            text = parts[0]
            for p in parts[1:]:
                text += rng.choice(seps) + p
            if rng.random() < 0.3:
                text = "## " + en().capitalize() + "\n" + text
            line = json.dumps({"text": text}, ensure_ascii=False)
            f.write(line + "\n")
            size += len(text.encode("utf-8"))
    print(f"wrote {path}: {size / 1e6:.1f} MB of text")


def bench(tok_dir, corpus, repeat):
    from tokenizers import Tokenizer, __version__

    tok = Tokenizer.from_file(tok_dir + "/tokenizer.json")
    texts = [json.loads(l)["text"] for l in open(corpus, encoding="utf-8")]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    best, encs = None, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        encs = tok.encode_batch(texts, add_special_tokens=False)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    h = hashlib.sha256()
    ntok = 0
    for e in encs:
        ids = e.ids
        ntok += len(ids)
        h.update(array("i", ids + [-1]).tobytes())
    print(f"tokenizers {__version__} {tok_dir}: {len(texts)} texts, {nbytes} bytes, {ntok} tokens, "
          f"{best:.3f} s, {nbytes / best / 1e6:.2f} MB/s, ids sha256 {h.hexdigest()}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "corpus":
        make_corpus(sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 30)
    elif len(sys.argv) >= 4 and sys.argv[1] == "bench":
        bench(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 2)
    else:
        sys.exit(__doc__)
