#!/usr/bin/env python3
"""Build a tiny, randomly initialised CLIP-shaped ONNX pair (+ model.toml, tokenizer.json, golden) for tests.

    python3 models/make_tiny_clip.py [OUT_DIR] [--dim 32] [--width 32] [--size 32] [--patch 8] [--seed 0]

Writes OUT_DIR/tiny-clip-text/ and OUT_DIR/tiny-clip-image/ (default OUT_DIR: $MMSEARCH_MODELS/test) and
OUT_DIR/tiny-clip-golden.json. Needs only numpy + onnx (graphs are built with onnx.helper); if onnxruntime is
installed the ONNX outputs are checked against the numpy reference. Deterministic for a given seed.

The interface matches the real `clip_text` / `clip_image` kinds (models/MANIFEST.md §5):
  text:  input_ids int64 [B, T]           -> text_embeds  f32 [B, D] (unit norm)
  image: pixel_values f32 [B, 3, S, S]    -> image_embeds f32 [B, D] (unit norm)
Inside, the towers are trivial (token embedding + position + tanh MLP + masked mean; patch conv + tanh + average
pool), so the embeddings carry no meaning. The tokenizer is a WordLevel vocabulary of common product words
(ids: 0 pad, 1 unk, 2 sot, 3 eot) in HF `tokenizers` JSON, loadable by the Rust `tokenizers` crate.
"""
import argparse, hashlib, json, os, sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WORDS = ("a an the of for with and in on to photo picture image red blue green black white grey yellow pink orange "
         "purple brown silver gold wooden metal leather cotton wool glass plastic small large big tiny new old "
         "shoe shoes sneaker boot boots sandal shirt t-shirt dress jacket coat hat cap bag backpack wallet watch "
         "laptop tablet phone camera lens tripod headphones speaker keyboard mouse monitor cable charger usb "
         "wireless bluetooth chair table desk sofa lamp bed shelf plant plants pot succulent cactus tree flower "
         "ball bike bicycle helmet tent racket skateboard running football basketball tennis golf cup mug bottle "
         "kettle knife fork spoon plate bowl cat dog bird car toy book pen").split()
SPECIAL = ["<pad>", "<unk>", "<|startoftext|>", "<|endoftext|>"]


def tokenizer_json(context_length):
    vocab = {t: i for i, t in enumerate(SPECIAL + sorted(set(WORDS)))}
    return {
        "version": "1.0", "truncation": {"direction": "Right", "max_length": context_length, "strategy": "LongestFirst", "stride": 0},
        "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate(SPECIAL)],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<|startoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<|startoftext|>": {"id": "<|startoftext|>", "ids": [2], "tokens": ["<|startoftext|>"]},
                                              "<|endoftext|>": {"id": "<|endoftext|>", "ids": [3], "tokens": ["<|endoftext|>"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    }, vocab


def tokenize(text, vocab, context_length):
    """Reference tokenisation (same as the tokenizer.json): lowercase, split on whitespace, sot/eot, pad with 0."""
    ids = [2] + [vocab.get(w, 1) for w in text.lower().split()][:context_length - 2] + [3]
    return ids + [0] * (context_length - len(ids))


def weights(dim, width, size, patch, vocab_size, context_length, seed):
    r = np.random.default_rng(seed)
    n = lambda *s, scale=1.0: (r.standard_normal(s) * scale).astype(np.float32)
    return dict(tok=n(vocab_size, width), pos=n(context_length, width, scale=0.1), w1=n(width, width, scale=width ** -0.5),
                b1=n(width, scale=0.1), tproj=n(width, dim, scale=width ** -0.5),
                conv=n(width, 3, patch, patch, scale=(3 * patch * patch) ** -0.5), convb=n(width, scale=0.1),
                iproj=n(width, dim, scale=width ** -0.5))


def l2norm_nodes(x, out, prefix):
    return [helper.make_node("ReduceL2", [x], [f"{prefix}_n"], axes=[1], keepdims=1),
            helper.make_node("Max", [f"{prefix}_n", "eps"], [f"{prefix}_nc"]),
            helper.make_node("Div", [x, f"{prefix}_nc"], [out])]


def model(nodes, inputs, outputs, inits):
    g = helper.make_graph(nodes, "tiny_clip", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="mmsearch-make-tiny-clip")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def text_graph(W):
    inits = dict(tok=W["tok"], pos=W["pos"], w1=W["w1"], b1=W["b1"], tproj=W["tproj"],
                 eps=np.array([1e-12], np.float32), pad=np.array(0, np.int64), zero=np.array([0], np.int64),
                 ax1=np.array([1], np.int64), ax2=np.array([2], np.int64), tiny=np.array([1e-9], np.float32))
    nodes = [
        helper.make_node("Gather", ["tok", "input_ids"], ["emb"]),
        helper.make_node("Shape", ["input_ids"], ["T"], start=1, end=2),
        helper.make_node("Slice", ["pos", "zero", "T", "zero"], ["pos_t"]),
        helper.make_node("Add", ["emb", "pos_t"], ["h0"]),
        helper.make_node("MatMul", ["h0", "w1"], ["h1"]),
        helper.make_node("Add", ["h1", "b1"], ["h2"]),
        helper.make_node("Tanh", ["h2"], ["h"]),
        helper.make_node("Equal", ["input_ids", "pad"], ["is_pad"]),
        helper.make_node("Not", ["is_pad"], ["keep"]),
        helper.make_node("Cast", ["keep"], ["mask2"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask2", "ax2"], ["mask"]),
        helper.make_node("Mul", ["h", "mask"], ["hm"]),
        helper.make_node("ReduceSum", ["hm", "ax1"], ["s"], keepdims=0),
        helper.make_node("ReduceSum", ["mask", "ax1"], ["cnt0"], keepdims=0),
        helper.make_node("Max", ["cnt0", "tiny"], ["cnt"]),
        helper.make_node("Div", ["s", "cnt"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "tproj"], ["proj"]),
    ] + l2norm_nodes("proj", "text_embeds", "t")
    D = W["tproj"].shape[1]
    return model(nodes, [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
                 [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", D])], inits)


def image_graph(W, size, patch):
    inits = dict(conv=W["conv"], convb=W["convb"], iproj=W["iproj"], eps=np.array([1e-12], np.float32))
    nodes = [
        helper.make_node("Conv", ["pixel_values", "conv", "convb"], ["c"], kernel_shape=[patch, patch], strides=[patch, patch]),
        helper.make_node("Tanh", ["c"], ["ct"]),
        helper.make_node("GlobalAveragePool", ["ct"], ["gp"]),
        helper.make_node("Flatten", ["gp"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "iproj"], ["proj"]),
    ] + l2norm_nodes("proj", "image_embeds", "i")
    D = W["iproj"].shape[1]
    return model(nodes, [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, size, size])],
                 [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", D])], inits)


def ref_text(W, ids):
    ids = np.asarray(ids, np.int64)
    h = np.tanh((W["tok"][ids] + W["pos"][:ids.shape[1]]) @ W["w1"] + W["b1"])
    m = (ids != 0).astype(np.float32)[..., None]
    p = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    v = p @ W["tproj"]
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def ref_image(W, x, patch):
    B, _, S, _ = x.shape; g = S // patch
    xp = x.reshape(B, 3, g, patch, g, patch).transpose(0, 2, 4, 1, 3, 5).reshape(B, g * g, -1)
    c = np.tanh(xp @ W["conv"].reshape(W["conv"].shape[0], -1).T + W["convb"])
    v = c.mean(1) @ W["iproj"]
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()


def toml(v):
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, (int, float)): return repr(v)
    if isinstance(v, str): return json.dumps(v)
    return "[" + ", ".join(toml(x) for x in v) + "]"


def manifest(d, top, files, io, pre):
    lines = [f"{k} = {toml(v)}" for k, v in top.items()]
    lines += ["", "[source]", 'package = "mmsearch-make-tiny-clip"', 'version = "1"', 'registry = "generated"']
    for name, role in files:
        lines += ["", "[[files]]", f"name = {toml(name)}", f"sha256 = {toml(sha(os.path.join(d, name)))}", f"role = {toml(role)}"]
    lines += ["", "[io]"] + [f"{k} = {toml(v)}" for k, v in io.items()]
    lines += ["", "[preprocess]"] + [f"{k} = {toml(v)}" for k, v in pre.items()]
    open(os.path.join(d, "model.toml"), "w").write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", default=os.path.join(os.environ.get("MMSEARCH_MODELS") or
                                                           os.path.expanduser("~/.cache/mmsearch/models"), "test"))
    ap.add_argument("--dim", type=int, default=32); ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--size", type=int, default=32); ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--context-length", type=int, default=77); ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    assert a.size % a.patch == 0
    tok, vocab = tokenizer_json(a.context_length)
    W = weights(a.dim, a.width, a.size, a.patch, len(vocab), a.context_length, a.seed)
    td, idr = os.path.join(a.out, "tiny-clip-text"), os.path.join(a.out, "tiny-clip-image")
    os.makedirs(td, exist_ok=True); os.makedirs(idr, exist_ok=True)
    onnx.save(text_graph(W), os.path.join(td, "model.onnx"))
    json.dump(tok, open(os.path.join(td, "tokenizer.json"), "w"), indent=1)
    onnx.save(image_graph(W, a.size, a.patch), os.path.join(idr, "model.onnx"))
    manifest(td, dict(id="tiny-clip-text", kind="clip_text", dim=a.dim, licence="CC0-1.0", pair="tiny-clip-image"),
             [("model.onnx", "model"), ("tokenizer.json", "tokenizer")], dict(inputs=["input_ids"], outputs=["text_embeds"]),
             dict(context_length=a.context_length, pad_id=0, sot=2, eot=3, tokenizer="tokenizer.json"))
    manifest(idr, dict(id="tiny-clip-image", kind="clip_image", dim=a.dim, licence="CC0-1.0", pair="tiny-clip-text"),
             [("model.onnx", "model")], dict(inputs=["pixel_values"], outputs=["image_embeds"]),
             dict(size=a.size, resize="crop", filter="catmull-rom", background="white",
                  mean=[122.770935, 116.74601, 104.093735], std=[68.500534, 66.63216, 70.32318], layout="NCHW", channels="RGB"))
    # golden: numpy reference outputs on fixed inputs
    texts = ["red running shoe", "a photo of a wooden chair", "zzz unknown words"]
    ids = np.array([tokenize(t, vocab, a.context_length) for t in texts], np.int64)
    img = (np.arange(3 * a.size * a.size, dtype=np.float32).reshape(1, 3, a.size, a.size) % 17 - 8) / 8
    te, ie = ref_text(W, ids), ref_image(W, img, a.patch)
    gold = dict(texts=texts, input_ids=ids.tolist(), text_embeds=te.round(7).tolist(),
                image="pixel_values[0,c,y,x] = ((c*S*S + y*S + x) % 17 - 8) / 8", image_embeds=ie.round(7).tolist(),
                tolerance=1e-5)
    json.dump(gold, open(os.path.join(a.out, "tiny-clip-golden.json"), "w"), indent=1)
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None:
        ts = ort.InferenceSession(os.path.join(td, "model.onnx"), providers=["CPUExecutionProvider"])
        isess = ort.InferenceSession(os.path.join(idr, "model.onnx"), providers=["CPUExecutionProvider"])
        d1 = np.abs(ts.run(None, {"input_ids": ids})[0] - te).max()
        d2 = np.abs(isess.run(None, {"pixel_values": img})[0] - ie).max()
        assert d1 < 1e-5 and d2 < 1e-5, (d1, d2)
        print(f"[tiny-clip] onnxruntime matches numpy reference ({d1:.1e}, {d2:.1e})", file=sys.stderr)
    print(f"[tiny-clip] wrote {td} and {idr} (dim {a.dim}, image {a.size}px)", file=sys.stderr)


if __name__ == "__main__":
    main()
