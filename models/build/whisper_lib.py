"""Whisper helpers shared by the export and golden steps: CTranslate2 model.bin reader, numpy log-mel front end,
and the greedy KV-cache decoding loop over the exported ONNX graphs (the recipe documented in MANIFEST.md)."""
import struct
import numpy as np

CT2_DTYPES = ["float32", "int8", "int16", "int32", "float16", "bfloat16"]


def read_ct2(path):
    """Parse a CTranslate2 model.bin (binary version >= 5; see ctranslate2/specs/model_spec.py::_serialize)."""
    buf = open(path, "rb").read()
    off = 0

    def u(fmt):
        nonlocal off
        v = struct.unpack_from(fmt, buf, off)[0]; off += struct.calcsize(fmt); return v

    def s():
        nonlocal off
        n = u("H"); st = buf[off:off + n - 1].decode("utf-8"); off += n; return st

    version = u("I")
    if version < 5:
        raise ValueError(f"unsupported CTranslate2 binary version {version}")
    name = s(); revision = u("I"); nvar = u("I")
    out = {}
    for _ in range(nvar):
        vname = s(); rank = u("B"); shape = [u("I") for _ in range(rank)]
        dt = CT2_DTYPES[u("B")]; nbytes = u("I")
        if dt == "bfloat16":
            raw = np.frombuffer(buf, dtype=np.uint16, count=nbytes // 2, offset=off)
            arr = (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=np.dtype(dt), count=nbytes // np.dtype(dt).itemsize, offset=off)
        out[vname] = arr.reshape(shape) if shape else arr.reshape(())
        off += nbytes
    aliases = {}
    if off < len(buf):
        for _ in range(u("I")):
            a = s(); aliases[a] = s()
    for a, b in aliases.items():
        out[a] = out[b]
    return {"version": version, "name": name, "revision": revision, "vars": out}


def log_mel(audio, filters, n_samples=480000, n_fft=400, hop=160):
    """16 kHz mono float audio -> [1, 80, 3000] f32 (Whisper / HF WhisperFeatureExtractor recipe)."""
    a = np.zeros(n_samples, np.float32)
    audio = np.asarray(audio, np.float32)[:n_samples]
    a[:len(audio)] = audio
    a = np.pad(a, n_fft // 2, mode="reflect")
    win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann
    n_frames = 1 + (len(a) - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(a, (n_frames, n_fft), (a.strides[0] * hop, a.strides[0]))
    spec = np.fft.rfft(frames.astype(np.float64) * win, axis=1)
    power = (spec.real ** 2 + spec.imag ** 2)[:-1]                     # drop the last frame -> 3000
    mel = filters.astype(np.float64) @ power.T                          # [80, 3000]
    lg = np.log10(np.maximum(mel, 1e-10))
    lg = np.maximum(lg, lg.max() - 8.0)
    return ((lg + 4.0) / 4.0).astype(np.float32)[None]


def read_wav_16k_mono(path):
    import wave
    with wave.open(path, "rb") as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return pcm.astype(np.float32) / 32768.0


def greedy(enc_sess, dec_sess, mel, p, max_new=None):
    """Greedy decoding with the KV-cache decoder. p = the [preprocess] table of model.toml.
    Returns (generated ids, no_speech_prob, first-step logits)."""
    hidden, ck, cv = enc_sess.run(["encoder_hidden", "cross_k", "cross_v"], {"mel": mel})
    L, D, V = p["n_layers"], p["d_model"], p["vocab_size"]
    empty = np.zeros((L, 1, 0, D), np.float32)
    suppress = np.zeros(V, bool)
    suppress[p["suppress_tokens"]] = True
    suppress[p["sot"]:] = True
    # [sot] alone first -> no-speech probability, then the rest of the prompt with the cache
    logits, pk, pv = dec_sess.run(None, {"tokens": np.array([p["prompt"][:1]], np.int64), "past_self_k": empty,
                                         "past_self_v": empty, "cross_k": ck, "cross_v": cv})
    z = logits[0].astype(np.float64); z = np.exp(z - z.max()); no_speech = float(z[p["no_speech"]] / z.sum())
    logits, pk, pv = dec_sess.run(None, {"tokens": np.array([p["prompt"][1:]], np.int64), "past_self_k": pk,
                                         "past_self_v": pv, "cross_k": ck, "cross_v": cv})
    ids, first = [], None
    for step in range(max_new or p["max_new_tokens"]):
        lg = logits[0].copy()
        if first is None:
            first = logits[0].copy()
        lg[suppress] = -np.inf
        if step == 0:
            lg[p["begin_suppress_tokens"]] = -np.inf
        nxt = int(np.argmax(lg))
        if nxt == p["eot"]:
            break
        ids.append(nxt)
        if len(p["prompt"]) + len(ids) >= p["n_text_ctx"]:
            break
        logits, pk, pv = dec_sess.run(None, {"tokens": np.array([[nxt]], np.int64), "past_self_k": pk,
                                             "past_self_v": pv, "cross_k": ck, "cross_v": cv})
    return ids, no_speech, first
