#!/usr/bin/env python3
"""Export an open_clip model's text and image towers to ONNX as mmsearch `clip_text` / `clip_image` models.

For operators with Hugging Face hub access (weights are downloaded by open_clip; this cannot run on the
air-gapped build machine). Example:

    python3 -m venv /tmp/oc && /tmp/oc/bin/pip install open_clip_torch torch onnx onnxruntime transformers
    /tmp/oc/bin/python models/export_openclip.py ViT-B-32 laion2b_s34b_b79k            # -> $MMSEARCH_MODELS/clip-vit-b-32-laion2b_s34b_b79k-{text,image}
    /tmp/oc/bin/python models/export_openclip.py MobileCLIP-S1 datacompdr --out /srv/models

Graphs (models/MANIFEST.md §5), both L2-normalised inside the graph (encode_*(normalize=True)):
  text:  input_ids int64 [B, context_length]  -> text_embeds  f32 [B, D]
  image: pixel_values f32 [B, 3, S, S]        -> image_embeds f32 [B, D]
Only the batch axis is dynamic: text towers need exactly `context_length` tokens (pad with pad_id), and
image towers have a fixed input size.
"""
import argparse, json, os, re, sys, tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "build"))
from common import ROOT, write_manifest  # noqa: E402  (stdlib-only helper)


def slug(s):
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def preprocess_cfg(model):
    """Image size / mean / std / interpolation / resize mode as open_clip would apply them at inference."""
    import open_clip
    v = model.visual
    cfg = dict(getattr(v, "preprocess_cfg", None) or {})            # open_clip >= 2.24
    size = cfg.get("size", getattr(v, "image_size", 224))
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    mean = cfg.get("mean") or getattr(v, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = cfg.get("std") or getattr(v, "image_std", None) or open_clip.OPENAI_DATASET_STD
    interp = cfg.get("interpolation", "bicubic")
    resize_mode = cfg.get("resize_mode", "shortest")
    fill = cfg.get("fill_color", 0)
    if resize_mode not in ("shortest", "squash", "longest"):
        raise SystemExit(f"unsupported resize_mode {resize_mode}")
    return dict(size=int(size),
                resize={"shortest": "crop", "squash": "squash", "longest": "pad"}[resize_mode],
                filter={"bicubic": "catmull-rom", "bilinear": "triangle", "nearest": "nearest"}.get(interp, interp),
                background="white" if resize_mode != "longest" else ("black" if not fill else f"rgb({fill})"),
                mean=[round(float(m) * 255.0, 6) for m in mean], std=[round(float(s) * 255.0, 6) for s in std],
                layout="NCHW", channels="RGB")


def tokenizer_info(tok, out_dir):
    """Write tokenizer.json (HF tokenizers format) and return the [preprocess] keys for the text manifest."""
    import open_clip
    ctx = int(getattr(tok, "context_length", 77))
    if isinstance(tok, open_clip.tokenizer.SimpleTokenizer):
        # OpenAI CLIP BPE: rebuild vocab.json/merges.txt from the tokenizer's own tables, then let transformers'
        # CLIPTokenizerFast serialise an equivalent tokenizer.json (same ids as SimpleTokenizer for plain text).
        from transformers import CLIPTokenizerFast
        with tempfile.TemporaryDirectory() as tmp:
            json.dump(tok.encoder, open(f"{tmp}/vocab.json", "w"))
            merges = sorted(tok.bpe_ranks.items(), key=lambda kv: kv[1])
            with open(f"{tmp}/merges.txt", "w") as fh:
                fh.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for (a, b), _ in merges))
            hf = CLIPTokenizerFast(vocab_file=f"{tmp}/vocab.json", merges_file=f"{tmp}/merges.txt")
            hf.backend_tokenizer.save(os.path.join(out_dir, "tokenizer.json"))
        return dict(context_length=ctx, pad_id=0, sot=int(tok.sot_token_id), eot=int(tok.eot_token_id),
                    tokenizer="tokenizer.json", truncate="keep first context_length-1 tokens, last = eot")
    hf = getattr(tok, "tokenizer", None)                              # open_clip HFTokenizer / SigLIP
    if hf is None or not hasattr(hf, "backend_tokenizer"):
        raise SystemExit(f"cannot serialise tokenizer of type {type(tok).__name__}")
    hf.backend_tokenizer.save(os.path.join(out_dir, "tokenizer.json"))
    pre = dict(context_length=ctx, pad_id=int(hf.pad_token_id if hf.pad_token_id is not None else 0),
               tokenizer="tokenizer.json", truncate="right")
    if hf.bos_token_id is not None:
        pre["sot"] = int(hf.bos_token_id)
    if hf.eos_token_id is not None:
        pre["eot"] = int(hf.eos_token_id)
    return pre


def main():
    ap = argparse.ArgumentParser(description="export an open_clip model to mmsearch clip_text/clip_image ONNX")
    ap.add_argument("model", help="open_clip model name, e.g. ViT-B-32 (see open_clip.list_pretrained())")
    ap.add_argument("pretrained", help="pretrained tag, e.g. laion2b_s34b_b79k, or a local checkpoint path")
    ap.add_argument("--out", default=ROOT, help="models root (default $MMSEARCH_MODELS)")
    ap.add_argument("--id", default=None, help="model id prefix (default clip-<model>-<pretrained>)")
    ap.add_argument("--licence", default="see upstream model card", help="licence string for model.toml")
    ap.add_argument("--opset", type=int, default=17)
    a = ap.parse_args()

    import numpy as np, torch, onnx, onnxruntime as ort, open_clip
    model, _, _ = open_clip.create_model_and_transforms(a.model, pretrained=a.pretrained, device="cpu")
    model.eval()
    tok = open_clip.get_tokenizer(a.model)
    base = a.id or f"clip-{slug(a.model)}-{slug(os.path.basename(a.pretrained))}"
    tid, iid = f"{base}-text", f"{base}-image"
    tdir, idir = os.path.join(a.out, tid), os.path.join(a.out, iid)
    os.makedirs(tdir, exist_ok=True); os.makedirs(idir, exist_ok=True)
    pre_i = preprocess_cfg(model)
    S = pre_i["size"]

    class Text(torch.nn.Module):
        def __init__(s, m): super().__init__(); s.m = m
        def forward(s, input_ids): return s.m.encode_text(input_ids, normalize=True)

    class Image(torch.nn.Module):
        def __init__(s, m): super().__init__(); s.m = m
        def forward(s, pixel_values): return s.m.encode_image(pixel_values, normalize=True)

    texts = ["a photo of a red running shoe", "a wooden dining table", "wireless mouse"]
    ids = tok(texts)
    pix = torch.randn(2, 3, S, S, generator=torch.Generator().manual_seed(0))
    kw = dict(opset_version=a.opset, dynamo=False, do_constant_folding=True)
    with torch.no_grad():
        te, ie = Text(model)(ids), Image(model)(pix)
        torch.onnx.export(Text(model), (ids,), os.path.join(tdir, "model.onnx"), input_names=["input_ids"],
                          output_names=["text_embeds"], dynamic_axes={"input_ids": {0: "batch"}, "text_embeds": {0: "batch"}}, **kw)
        torch.onnx.export(Image(model), (pix,), os.path.join(idir, "model.onnx"), input_names=["pixel_values"],
                          output_names=["image_embeds"], dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}}, **kw)
    for d in (tdir, idir):
        onnx.checker.check_model(os.path.join(d, "model.onnx"))   # path form: works for >2 GB models too
    ts = ort.InferenceSession(os.path.join(tdir, "model.onnx"), providers=["CPUExecutionProvider"])
    isess = ort.InferenceSession(os.path.join(idir, "model.onnx"), providers=["CPUExecutionProvider"])
    ot = ts.run(None, {"input_ids": ids.numpy().astype(np.int64)})[0]
    oi = isess.run(None, {"pixel_values": pix.numpy()})[0]
    dt, di = float(np.abs(ot - te.numpy()).max()), float(np.abs(oi - ie.numpy()).max())
    print(f"[openclip] ONNX vs torch: text {dt:.2e}, image {di:.2e}")
    assert dt < 1e-3 and di < 1e-3, (dt, di)
    dim = int(te.shape[1])
    assert int(ie.shape[1]) == dim

    pre_t = tokenizer_info(tok, tdir)
    from tokenizers import Tokenizer  # check the written tokenizer reproduces open_clip's ids
    hf_tok = Tokenizer.from_file(os.path.join(tdir, "tokenizer.json"))
    for t, row in zip(texts, ids.tolist()):
        want = [i for i in row if i != pre_t["pad_id"]]
        got = hf_tok.encode(t).ids
        if got != want:
            print(f"[openclip] WARNING tokenizer.json ids differ for {t!r}: {got} vs {want}")
    src = dict(package="open_clip", version=getattr(open_clip, "__version__", "?"), registry="open_clip",
               model=a.model, pretrained=a.pretrained)
    write_manifest(tdir, dict(id=tid, kind="clip_text", dim=dim, licence=a.licence, pair=iid), src,
                   [("model.onnx", "model"), ("tokenizer.json", "tokenizer")],
                   dict(inputs=["input_ids"], outputs=["text_embeds"]), pre_t)
    write_manifest(idir, dict(id=iid, kind="clip_image", dim=dim, licence=a.licence, pair=tid), src,
                   [("model.onnx", "model")], dict(inputs=["pixel_values"], outputs=["image_embeds"]), pre_i)
    print(f"[openclip] wrote {tdir} and {idir} (dim {dim}, image {S}px, context {pre_t['context_length']})")


if __name__ == "__main__":
    main()
