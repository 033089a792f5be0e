"""Step onnxruntime: extract libonnxruntime.so from the PyPI onnxruntime wheel (no CDN, only pip).

ORT_GPU=1 fetches onnxruntime-gpu plus the CUDA 13 / cuDNN 9 user-space libraries from PyPI into
$MMSEARCH_MODELS/onnxruntime-gpu/ (the NVIDIA driver, R580+ for CUDA 13, must come from the host).
"""
import os, sys, zipfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, DL, fetch_wheel, log, source_key, up_to_date, write_stamp

ORT_VERSION = os.environ.get("ORT_VERSION", "1.31.1")
GPU = os.environ.get("ORT_GPU", "0") == "1"
# Same set as `pip install onnxruntime-gpu[cuda,cudnn]` for the CUDA 13 build.
CUDA_WHEELS = [("nvidia-cuda-runtime", "13.5.37"), ("nvidia-cublas", "13.10.0.20"), ("nvidia-curand", "10.4.5.25"),
               ("nvidia-cufft", "12.5.0.14"), ("nvidia-cuda-nvrtc", "13.5.37"), ("nvidia-nvjitlink", "13.5.37"),
               ("nvidia-cudnn-cu13", "9.28.1.4")]
# Pin the wheel platform so the host Python does not matter (pip does not widen --platform by itself).
PLAT = []
for p in ["manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014", "manylinux_2_12", "manylinux2010",
          "manylinux_2_5", "manylinux1"]:
    PLAT += ["--platform", f"{p}_x86_64"]
PLAT += ["--python-version", "3.11"]


def extract(whl, dest_lib):
    os.makedirs(dest_lib, exist_ok=True)
    out = []
    with zipfile.ZipFile(whl) as z:
        for n in z.namelist():
            base = os.path.basename(n)
            if n.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime"):
                p = os.path.join(dest_lib, base)
                with z.open(n) as src, open(p + ".tmp", "wb") as dst:
                    dst.write(src.read())
                os.chmod(p + ".tmp", 0o755); os.replace(p + ".tmp", p)
                out.append(p)
    for link, target in [("libonnxruntime.so.1", f"libonnxruntime.so.{ORT_VERSION}"), ("libonnxruntime.so", "libonnxruntime.so.1")]:
        lp = os.path.join(dest_lib, link)
        if os.path.lexists(lp):
            os.unlink(lp)
        os.symlink(target, lp)
    return out


def main():
    name = "onnxruntime-gpu" if GPU else "onnxruntime"
    key = source_key(ORT_VERSION, GPU, CUDA_WHEELS if GPU else "")
    if up_to_date(name, key):
        log(f"{name}: up to date"); return
    dest = os.path.join(ROOT, name)
    whl = fetch_wheel(name, ORT_VERSION, PLAT)
    outs = extract(whl, os.path.join(dest, "lib"))
    main_lib = os.path.join(dest, "lib", f"libonnxruntime.so.{ORT_VERSION}")
    if not os.path.exists(main_lib):
        raise SystemExit(f"{main_lib} not found in {whl}")
    if GPU:
        for pkg, ver in CUDA_WHEELS:
            w = fetch_wheel(pkg, ver, PLAT)
            with zipfile.ZipFile(w) as z:
                for n in z.namelist():
                    if n.startswith("nvidia/") and "/lib/" in n and ".so" in n:
                        z.extract(n, dest); os.chmod(os.path.join(dest, n), 0o755)
                        outs.append(os.path.join(dest, n))
        log(f"CUDA libs under {dest}/nvidia/*/lib (add them to LD_LIBRARY_PATH)")
    write_stamp(name, key, outs, {"version": ORT_VERSION, "wheel": os.path.basename(whl)})
    log(f"{name}: ORT_DYLIB_PATH={main_lib}")


if __name__ == "__main__":
    main()
