#!/usr/bin/env python3
"""Python onnxruntime reference for `benches/encode.rs` (issue #3 benchmark acceptance).

The same pipeline as the Rust encoders (`src/encode`), written the way a Python service would:
same .onnx files, tokenizer.json files, class prompts and mel filters from $MMSEARCH_MODELS, same
onnxruntime version (1.31.1 in the models' build venv; the Rust side loads the 1.31.1 shared
library built next to the models), same session options (ORT_ENABLE_ALL, intra-op threads from
MMSEARCH_BENCH_THREADS, intra-op spinning off, CPU provider), same inputs and the same case names.

  text_query   "a photo of a red running shoes" (manifest query_template): tokenize + MiniLM + L2
  image_*      bytes -> PIL decode; for JPEGs whose longer side is >= 4*224 the DCT-domain scaled
               decode (PIL `draft`, same 1/2..1/8 scale rule as the Rust fast path, which is on by
               default); EXIF orientation; alpha onto white; pad to square; PIL BICUBIC 224;
               (u8-127)/128 NCHW -> EfficientNet-Lite0 -> ConSE bridge (f64 softmax/T, top-k,
               p @ E, L2) + L2 of the 1280-d features
  voice        WAV bytes -> s16/32768 -> log-mel (numpy, f64 FFT) -> Whisper encoder -> greedy
               decoding with the KV-cache decoder ([sot] alone for P(no speech), rest of the
               prompt, then one token per call, suppression masks, log-prob for the silence rule)
               -> tokenizer.decode -> text
  ingest_*     32 catalogue items: titles (one padded batch), photos (one batch of 32), fused
               (0.5 * title + 0.5 * photo bridge vector, L2; visual = L2 features)

stdout: one JSON line per case {engine, case, batch, n, p50_ms, p95_ms, mean_ms, items_per_s}
(p50/p95 = numpy.percentile, linear; items_per_s = batch / p50). stderr: inputs, self-check.

Run with the models' venv:  ~/.cache/mmsearch/models/.venv/bin/python benches/encode_reference.py
Environment: MMSEARCH_MODELS, MMSEARCH_BENCH_{THREADS,JPEG,PNG,WAV,CATALOG,CASES,FAST_JPEG}
(same meaning and defaults as in benches/encode.rs).
"""
import glob
import io
import json
import os
import sys
import time
import tomllib
import wave

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps
from tokenizers import Tokenizer

HOME = os.path.expanduser("~")
MODELS = os.environ.get("MMSEARCH_MODELS") or f"{HOME}/.cache/mmsearch/models"
THREADS = int(os.environ.get("MMSEARCH_BENCH_THREADS", "0") or 0)
FAST_JPEG = os.environ.get("MMSEARCH_BENCH_FAST_JPEG", "1") != "0"  # Rust default: fast_jpeg = true
VENDURE = f"{HOME}/.cache/mmsearch/demo/vendure-create-3.7.3/package/assets/images"
QUERY = "red running shoes"
CASES = [c.strip() for c in os.environ.get("MMSEARCH_BENCH_CASES", "").split(",") if c.strip()]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the Rust runtime.rs
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def manifest(name):
    d = f"{MODELS}/{name}"
    with open(f"{d}/model.toml", "rb") as f:
        return d, tomllib.load(f)


def l2n(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ------------------------------------------------------------------ text
class Text:
    def __init__(self):
        d, m = manifest("text-minilm-l6-v2")
        p = m["preprocess"]
        self.sess = session(f"{d}/model.onnx")
        self.tok = Tokenizer.from_file(f"{d}/tokenizer.json")
        self.tok.enable_truncation(p.get("max_tokens", 256))
        pad = p.get("pad_id", 0)
        self.tok.enable_padding(pad_id=pad, pad_token=self.tok.id_to_token(pad) or "[PAD]")
        self.inputs = m["io"]["inputs"]
        self.output = m["io"]["outputs"][0]

    def embed(self, texts):
        enc = self.tok.encode_batch(list(texts))
        cols = {"input_ids": [e.ids for e in enc], "attention_mask": [e.attention_mask for e in enc],
                "token_type_ids": [e.type_ids for e in enc]}
        feeds = {n: np.array(cols[n], np.int64) for n in self.inputs}
        return l2n(self.sess.run([self.output], feeds)[0])


# ------------------------------------------------------------------ image + bridge
class ImageTower:
    def __init__(self):
        d, m = manifest("image-effnet-lite0")
        p, b = m["preprocess"], m["bridge"]
        assert p["resize"] == "pad" and p.get("background", "white") == "white"
        self.size = p["size"]
        self.mean = np.array(p["mean"], np.float32)
        self.std = np.array(p["std"], np.float32)
        self.sess = session(f"{d}/model.onnx")
        self.E = np.fromfile(f"{d}/{b['class_prompts']}", "<f4").reshape(b["classes"], b["dim"]).astype(np.float64)
        self.k, self.T = b["top_k"], b["temperature"]
        self.query_template = b.get("query_template", "{}")

    def decode(self, data, fast=FAST_JPEG):
        im = Image.open(io.BytesIO(data))
        w, h = im.size
        if fast and im.format == "JPEG" and max(w, h) >= 4 * self.size:
            # smallest of 1/8..1/1 keeping the longer side >= 2*size, as image.rs::decode_jpeg_scaled
            denom, side, min_side = 8, max(w, h), 2 * self.size
            while denom > 1 and -(-side // denom) < min_side:
                denom //= 2
            if denom > 1:
                im.draft("RGB", (w // denom, h // denom))
        if im.getexif().get(0x0112, 1) != 1:
            im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
        return im.convert("RGB")

    def preprocess(self, data, fast=FAST_JPEG):
        im = self.decode(data, fast)
        w, h = im.size
        if w != h:
            s = max(w, h)
            c = Image.new("RGB", (s, s), (255, 255, 255))
            c.paste(im, ((s - w) // 2, (s - h) // 2))
            im = c
        if im.size != (self.size, self.size):
            im = im.resize((self.size, self.size), Image.BICUBIC)
        x = (np.asarray(im, np.uint8).astype(np.float32) - self.mean) / self.std
        return x.transpose(2, 0, 1)

    def bridge(self, logits):
        z = logits.astype(np.float64) / self.T
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        top = np.argpartition(-p, self.k - 1, axis=1)[:, : self.k]
        q = np.zeros_like(p)
        np.put_along_axis(q, top, np.take_along_axis(p, top, 1), 1)
        return l2n(q @ self.E).astype(np.float32)

    def run_tensor(self, x):
        logits, feats = self.sess.run(["logits", "features"], {"image": x})
        return self.bridge(logits), l2n(feats)

    def embed(self, images):
        return self.run_tensor(np.stack([self.preprocess(b) for b in images]))


# ------------------------------------------------------------------ voice
class Whisper:
    def __init__(self):
        d, m = manifest("whisper-tiny-en")
        self.p = p = m["preprocess"]
        self.enc = session(f"{d}/encoder.onnx")
        self.dec = session(f"{d}/decoder.onnx")
        self.tok = Tokenizer.from_file(f"{d}/tokenizer.json")
        nb = p["n_fft"] // 2 + 1
        self.filters = np.fromfile(f"{d}/{p['mel_filters']}", "<f4").reshape(p["n_mels"], nb).astype(np.float64)
        n = p["n_fft"]
        self.win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)  # periodic Hann
        self.suppress = np.zeros(p["vocab_size"], bool)
        self.suppress[p["suppress_tokens"]] = True
        self.suppress[p["sot"]:] = True
        self.empty = np.zeros((p["n_layers"], 1, 0, p["d_model"]), np.float32)

    @staticmethod
    def read_wav(data):
        with wave.open(io.BytesIO(data), "rb") as w:
            assert w.getsampwidth() == 2 and w.getframerate() == 16000, "bench input must be 16 kHz s16"
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
        return pcm.mean(1, dtype=np.float32) / 32768.0 if pcm.shape[1] > 1 else pcm[:, 0].astype(np.float32) / 32768.0

    def log_mel(self, audio):
        p = self.p
        a = np.zeros(p["n_samples"], np.float32)
        audio = audio[: p["n_samples"]]
        a[: len(audio)] = audio
        n_fft, hop = p["n_fft"], p["hop"]
        a = np.pad(a, n_fft // 2, mode="reflect")
        n_frames = 1 + (len(a) - n_fft) // hop
        frames = np.lib.stride_tricks.as_strided(a, (n_frames, n_fft), (a.strides[0] * hop, a.strides[0]))
        spec = np.fft.rfft(frames.astype(np.float64) * self.win, axis=1)
        power = (spec.real ** 2 + spec.imag ** 2)[:-1]
        lg = np.log10(np.maximum(self.filters @ power.T, 1e-10))
        lg = np.maximum(lg, lg.max() - 8.0)
        return ((lg + 4.0) / 4.0).astype(np.float32)[None]

    @staticmethod
    def log_softmax_at(lg, i):
        m = lg.max()
        return float(lg[i] - (m + np.log(np.exp((lg - m).astype(np.float64)).sum())))

    def decode_mel(self, mel):
        p = self.p
        _, ck, cv = self.enc.run(None, {"mel": mel})

        def step(tokens, pk, pv):
            return self.dec.run(None, {"tokens": np.array([tokens], np.int64), "past_self_k": pk,
                                       "past_self_v": pv, "cross_k": ck, "cross_v": cv})

        logits, pk, pv = step(p["prompt"][:1], self.empty, self.empty)
        no_speech = float(np.exp(self.log_softmax_at(logits[0], p["no_speech"])))
        logits, pk, pv = step(p["prompt"][1:], pk, pv)
        ids, lp = [], []
        budget = min(p["max_new_tokens"], p["n_text_ctx"] - len(p["prompt"]))
        for i in range(budget):
            lg = logits[0].copy()
            lg[self.suppress] = -np.inf
            if i == 0:
                lg[p["begin_suppress_tokens"]] = -np.inf
            nxt = int(np.argmax(lg))
            lp.append(self.log_softmax_at(logits[0], nxt))
            if nxt == p["eot"]:
                break
            ids.append(nxt)
            logits, pk, pv = step([nxt], pk, pv)
        text = self.tok.decode(ids, skip_special_tokens=True).strip()
        avg = sum(lp) / len(lp) if lp else 0.0
        if (no_speech > 0.6 and avg < -1.0) or no_speech > 0.9:  # whisper.rs silence rule
            text = ""
        return text, no_speech

    def transcribe(self, data):
        return self.decode_mel(self.log_mel(self.read_wav(data)))


# ------------------------------------------------------------------ timing
def bench(case, batch, warmup, n, f):
    if CASES and case not in CASES:
        return
    for _ in range(warmup):
        f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append((time.perf_counter() - t) * 1e3)
    p50 = float(np.percentile(ts, 50))
    print(json.dumps({"engine": "python", "case": case, "batch": batch, "n": n, "p50_ms": round(p50, 3),
                      "p95_ms": round(float(np.percentile(ts, 95)), 3), "mean_ms": round(float(np.mean(ts)), 3),
                      "items_per_s": round(batch * 1e3 / p50, 3)}), flush=True)
    log(f"  {case:<34} b{batch:<3} p50 {p50:9.2f} ms")


def size_of(path):
    with Image.open(path) as im:
        return im.size


def bench_jpeg():
    if os.environ.get("MMSEARCH_BENCH_JPEG"):
        return os.environ["MMSEARCH_BENCH_JPEG"]
    paths = sorted(p for p in glob.glob(f"{VENDURE}/*") if p.lower().endswith((".jpg", ".jpeg")))
    return min(paths, key=lambda p: (abs(max(size_of(p)) - 1200), p))


def ingest_items():
    path = os.environ.get("MMSEARCH_BENCH_CATALOG") or f"{HOME}/.cache/mmsearch/demo/catalog.jsonl"
    out = []
    for line in open(path):
        if not line.strip():
            continue
        d = json.loads(line)
        if d.get("title") and d.get("images") and os.path.exists(d["images"][0]):
            out.append((d["title"], os.path.basename(d["images"][0]), open(d["images"][0], "rb").read()))
        if len(out) == 32:
            break
    return out


def self_check(text, img, wh):
    """The reference must compute what the goldens say, or its timings mean nothing."""
    g = json.load(open(f"{MODELS}/golden/golden.json"))
    c = g["text"]["cases"][0]
    assert np.abs(text.embed([c["text"]])[0] - np.array(c["embedding"])).max() < g["text"]["tolerance"]
    for c in g["image"]["cases"]:
        shared, _ = img.embed([open(f"{MODELS}/golden/{c['file']}", "rb").read()])
        err = np.abs(shared[0] - np.array(c["bridge"])).max()
        assert err < 2e-3, (c["file"], err)
    if wh is not None:
        t, _ = wh.transcribe(open(f"{MODELS}/golden/{g['whisper']['wav']}", "rb").read())
        assert t == g["whisper"]["text"], t
    log("  self-check against golden.json: text, image+bridge, transcript OK")


def main():
    t = time.perf_counter()
    text, img = Text(), ImageTower()
    wh = Whisper()
    log(f"python: onnxruntime {ort.__version__} (CPUExecutionProvider), numpy {np.__version__}, "
        f"Pillow {Image.__version__}, load {(time.perf_counter() - t) * 1e3:.0f} ms, "
        f"intra_threads {THREADS} (0 = ORT default), fast_jpeg {FAST_JPEG}")
    self_check(text, img, wh)

    # ---- batch 1 ----
    q = img.query_template.replace("{}", QUERY.strip(), 1)
    bench("text_query", 1, 5, 50, lambda: text.embed([q]))

    jp = bench_jpeg()
    jpg = open(jp, "rb").read()
    log(f"  JPEG {jp} {size_of(jp)} ({len(jpg)} bytes); decoded at {img.decode(jpg).size}")
    bench("image_jpeg", 1, 3, 30, lambda: img.embed([jpg]))
    bench("image_jpeg_decode_preprocess", 1, 3, 30, lambda: img.preprocess(jpg))
    bench("image_jpeg_decode_preprocess_full", 1, 3, 30, lambda: img.preprocess(jpg, fast=False))
    x = img.preprocess(jpg)[None].copy()
    bench("image_model_bridge", 1, 3, 30, lambda: img.run_tensor(x))

    pp = os.environ.get("MMSEARCH_BENCH_PNG") or f"{MODELS}/golden/img_alpha.png"
    png = open(pp, "rb").read()
    log(f"  PNG {pp} {size_of(pp)} ({len(png)} bytes)")
    bench("image_png", 1, 3, 30, lambda: img.embed([png]))

    wp = os.environ.get("MMSEARCH_BENCH_WAV") or f"{MODELS}/golden/voice.wav"
    wav = open(wp, "rb").read()
    tr, ns = wh.transcribe(wav)
    log(f"  WAV {wp} -> {tr!r} (no_speech_prob {ns:.3f})")
    bench("voice", 1, 2, 10, lambda: wh.transcribe(wav))
    pcm = wh.read_wav(wav)
    bench("voice_log_mel", 1, 2, 10, lambda: wh.log_mel(pcm))
    mel = wh.log_mel(pcm)
    bench("voice_encoder_decoder", 1, 2, 10, lambda: wh.decode_mel(mel))

    # ---- ingest, batch 32 ----
    items = ingest_items()
    titles = [t for t, _, _ in items]
    imgs = [b for _, _, b in items]
    n = len(items)
    log(f"  ingest: {n} items, first {titles[0]!r} / {items[0][1]}")
    bench("ingest_titles", n, 1, 5, lambda: text.embed(titles))
    bench("ingest_photos", n, 1, 5, lambda: img.embed(imgs))

    def fused():
        t = text.embed(titles)
        shared, visual = img.embed(imgs)
        return l2n(0.5 * t + 0.5 * shared), visual

    bench("ingest_fused", n, 1, 5, fused)


if __name__ == "__main__":
    main()
