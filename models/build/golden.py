"""Step golden: reference outputs from Python onnxruntime on fixed, generated inputs -> golden/golden.json.

Layout is documented in models/MANIFEST.md §6. The input images are generated deterministically (numpy only,
no fonts, no randomness) and saved next to golden.json together with their preprocessed tensors, so a Rust
test can check the model alone (exact tensor in) and the preprocessing separately.
"""
import json, os, shutil, subprocess, sys, tomllib
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, atomic_write, log, sha256, source_key, stamp_outputs, up_to_date, write_stamp

OUT = os.path.join(ROOT, "golden")
TEXT, IMAGE, WHISPER = (os.path.join(ROOT, d) for d in ("text-minilm-l6-v2", "image-effnet-lite0", "whisper-tiny-en"))
TEXTS = ["red ethernet cable", "a photo of a running shoe", "Wireless mouse with USB receiver",
         "Ergonomic office chair, mesh back — 5 year warranty!", "Café crème: naïve résumé",
         "long " * 300]                                  # last one checks truncation at 256 tokens
VOICE_TEXT = "wireless mouse"
ESPEAK = ["espeak-ng", "-v", "en-us", "-s", "150", "-w", "voice_raw.wav", VOICE_TEXT]
SOX = ["sox", "-D", "voice_raw.wav", "-r", "16000", "-c", "1", "-b", "16", "voice.wav"]
QUERY = "wireless mouse"


def make_images(np, Image):
    """Three deterministic test images: exact-size PNG, non-square RGBA PNG (alpha + pad + resize), JPEG (decode + resize)."""
    y, x = np.mgrid[0:224, 0:224].astype(np.float64)
    a = np.zeros((224, 224, 3), np.uint8)
    a[..., 0] = (x * 255 / 223).round(); a[..., 1] = (y * 255 / 223).round(); a[..., 2] = 96
    a[(x - 112) ** 2 + (y - 112) ** 2 < 60 ** 2] = (220, 30, 30)
    a[150:200, 20:90] = (20, 20, 20)
    ims = {"img_gradient.png": Image.fromarray(a, "RGB")}
    y, x = np.mgrid[0:200, 0:320].astype(np.float64)
    b = np.zeros((200, 320, 4), np.uint8)
    b[..., 0] = 40; b[..., 1] = (120 + 100 * np.sin(x / 17)).round(); b[..., 2] = (200 - y / 2).round()
    alpha = np.clip(255 - np.hypot(x - 160, y - 100) * 2.2, 0, 255)
    b[..., 3] = alpha.round()
    ims["img_alpha.png"] = Image.fromarray(b, "RGBA")
    y, x = np.mgrid[0:300, 0:400].astype(np.float64)
    r = np.hypot(x - 200, y - 150)
    c = np.zeros((300, 400, 3), np.uint8)
    c[..., 0] = (128 + 127 * np.cos(r / 9)).round(); c[..., 1] = (128 + 127 * np.sin(x / 23)).round()
    c[..., 2] = ((x // 40 + y // 40) % 2 * 200 + 30)
    ims["img_rings.jpg"] = Image.fromarray(c, "RGB")
    return ims


def preprocess(im, Image, np, size=224):
    """MANIFEST.md §3: alpha onto white, pad to a white square, PIL BICUBIC resize, (u8 - 127) / 128, NCHW."""
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
    im = im.convert("RGB")
    w, h = im.size
    if w != h:
        s = max(w, h); canvas = Image.new("RGB", (s, s), (255, 255, 255))
        canvas.paste(im, ((s - w) // 2, (s - h) // 2)); im = canvas
    if im.size != (size, size):
        im = im.resize((size, size), Image.BICUBIC)
    u8 = np.asarray(im, np.uint8)
    return ((u8.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None].copy()


def conse(logits, E, k, T):
    import numpy as np
    z = logits.astype(np.float64) / T; p = np.exp(z - z.max()); p /= p.sum()
    keep = np.argsort(-p)[:k]; q = np.zeros_like(p); q[keep] = p[keep]
    v = q @ E.astype(np.float64)
    return (v / np.linalg.norm(v)).astype(np.float32)


def f(v, nd=7):
    return [round(float(x), nd) for x in v]


def main():
    key = source_key(os.path.join(os.path.dirname(os.path.abspath(__file__)), "whisper_lib.py"),
                     *(json.dumps(stamp_outputs(s), sort_keys=True) for s in ("text", "image", "whisper-tiny-en")))
    if up_to_date("golden", key):
        log("golden: up to date"); return
    import numpy as np, onnxruntime as ort
    from PIL import Image
    from tokenizers import Tokenizer
    from whisper_lib import greedy, log_mel, read_wav_16k_mono
    os.makedirs(OUT, exist_ok=True)
    so = ort.SessionOptions(); so.intra_op_num_threads = 2
    sess = lambda p: ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])
    g = {"format": 1, "onnxruntime": ort.__version__, "generated_by": "models/build/golden.py"}
    outs = []

    # text
    tok = Tokenizer.from_file(os.path.join(TEXT, "tokenizer.json"))
    ts = sess(os.path.join(TEXT, "model.onnx"))
    cases = []
    for t in TEXTS:
        e = tok.encode(t)
        feed = {"input_ids": np.array([e.ids], np.int64), "attention_mask": np.array([e.attention_mask], np.int64),
                "token_type_ids": np.array([e.type_ids], np.int64)}
        emb = ts.run(["sentence_embedding"], feed)[0][0]
        cases.append(dict(text=t, input_ids=e.ids, attention_mask=e.attention_mask, token_type_ids=e.type_ids,
                          embedding=f(emb)))
    assert len(cases[-1]["input_ids"]) == 256
    g["text"] = dict(model_dir="text-minilm-l6-v2", tolerance=1e-4, cases=cases)

    # image + bridge
    im_toml = tomllib.load(open(os.path.join(IMAGE, "model.toml"), "rb"))
    br = im_toml["bridge"]
    E = np.fromfile(os.path.join(IMAGE, "class_prompts.f32"), "<f4").reshape(1000, 384)
    names = [c["name"] for c in json.load(open(os.path.join(IMAGE, "imagenet_classes.json")))]
    isess = sess(os.path.join(IMAGE, "model.onnx"))
    qt = br["query_template"].format(QUERY); qe = tok.encode(qt)
    qv = ts.run(["sentence_embedding"], {"input_ids": np.array([qe.ids]), "attention_mask": np.array([qe.attention_mask]),
                                         "token_type_ids": np.array([qe.type_ids])})[0][0]
    icases, cos = [], []
    for fname, im in make_images(np, Image).items():
        p = os.path.join(OUT, fname)
        if fname.endswith(".jpg"):
            im.save(p, quality=92, subsampling=0, optimize=False)
        else:
            im.save(p)
        outs.append(p)
        loaded = Image.open(p); loaded.load()
        x = preprocess(loaded, Image, np)
        xp = os.path.join(OUT, fname.rsplit(".", 1)[0] + ".input.f32")
        with atomic_write(xp) as fh:
            fh.write(x.astype("<f4").tobytes())
        outs.append(xp)
        logits, feats = isess.run(["logits", "features"], {"image": x})
        v = conse(logits[0], E, br["top_k"], br["temperature"])
        top = np.argsort(-logits[0])[:5]
        icases.append(dict(file=fname, width=loaded.size[0], height=loaded.size[1], mode=loaded.mode,
                           input=os.path.basename(xp), input_sha256=sha256(xp),
                           preprocess_exact=(loaded.size == (224, 224) and fname.endswith(".png") and loaded.mode == "RGB"),
                           input_stats=dict(mean=float(x.mean()), std=float(x.std())),
                           top5=[dict(index=int(i), name=names[i], logit=round(float(logits[0, i]), 5)) for i in top],
                           logits=f(logits[0], 6), features=f(feats[0], 6), bridge=f(v)))
        cos.append(dict(image=fname, cos=round(float(qv @ v), 6)))
        log(f"golden: {fname} top1 {names[top[0]]}")
    g["image"] = dict(model_dir="image-effnet-lite0", tolerance=1e-3, preprocess_tolerance_u8=2,
                      preprocess="alpha onto white; pad to white square (offset (s-w)//2,(s-h)//2); PIL 13 Image.BICUBIC "
                                 "resize to 224 (Catmull-Rom a=-0.5, antialiased); (u8-127)/128; NCHW RGB", cases=icases)
    g["bridge"] = dict(query=QUERY, query_templated=qt, query_input_ids=qe.ids, query_embedding=f(qv),
                       top_k=br["top_k"], temperature=br["temperature"],
                       class_prompts_sha256=sha256(os.path.join(IMAGE, "class_prompts.f32")), cosines=cos)

    # whisper
    wt = tomllib.load(open(os.path.join(WHISPER, "model.toml"), "rb"))["preprocess"]
    wav = os.path.join(OUT, "voice.wav")
    if not os.path.exists(wav):  # espeak-ng output can differ between versions; keep the first one
        subprocess.check_call(ESPEAK, cwd=OUT); subprocess.check_call(SOX, cwd=OUT)
        os.unlink(os.path.join(OUT, "voice_raw.wav"))
    audio = read_wav_16k_mono(wav)
    filt = np.fromfile(os.path.join(WHISPER, "mel_filters.f32"), "<f4").reshape(wt["n_mels"], 201)
    mel = log_mel(audio, filt)
    mp = os.path.join(OUT, "voice.mel.f32")
    with atomic_write(mp) as fh:
        fh.write(mel.astype("<f4").tobytes())
    ids, no_speech, first = greedy(sess(os.path.join(WHISPER, "encoder.onnx")), sess(os.path.join(WHISPER, "decoder.onnx")), mel, wt)
    wtok = Tokenizer.from_file(os.path.join(WHISPER, "tokenizer.json"))
    text = wtok.decode(ids, skip_special_tokens=True).strip()
    log(f"golden: whisper transcript {text!r} ids {ids}")
    top = np.argsort(-first)[:5]
    g["whisper"] = dict(model_dir="whisper-tiny-en", wav="voice.wav", made_with=[" ".join(ESPEAK[:-1]) + f' "{VOICE_TEXT}"', " ".join(SOX)],
                        spoken_text=VOICE_TEXT, sample_rate=16000, num_samples=int(len(audio)),
                        pcm_to_float="s16 / 32768.0", mel="voice.mel.f32", mel_shape=[1, wt["n_mels"], 3000],
                        mel_tolerance=2e-3, prompt=wt["prompt"], tokens=ids, text=text,
                        no_speech_prob=round(no_speech, 6),
                        first_step_top5=[dict(id=int(i), logit=round(float(first[i]), 4)) for i in top])
    outs += [wav, mp]
    gp = os.path.join(OUT, "golden.json")
    with atomic_write(gp, "w") as fh:
        json.dump(g, fh, indent=1, ensure_ascii=False)
    outs.append(gp)
    write_stamp("golden", key, outs, {"transcript": text})
    log("golden: done")


if __name__ == "__main__":
    main()
