"""The Vendure demo catalogue ingested from Python into a server with the real models; text,
photo, voice, filtered, more-like-this and vector searches give the hits `mmsearch search
--json` gives on the same server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest

import mmsearch

from conftest import DEMO_CATALOG, Server, cli, espeak


def lines() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DEMO_CATALOG.read_text().splitlines() if line.strip()]


def same_hits(result: mmsearch.SearchResult, expected: dict[str, Any]) -> None:
    assert [h.id for h in result.hits] == [h["id"] for h in expected["hits"]]
    for got, want in zip(result.hits, expected["hits"]):
        assert got.score == pytest.approx(want["score"], abs=1e-6)
        assert got.item is not None and got.item.title == want["title"]
    assert result.transcript == expected["transcript"]
    assert result.exact == expected["exact"]


def test_ingest_demo_catalogue_from_python(demo: tuple[Server, mmsearch.UpsertResult]) -> None:
    server, result = demo
    assert result.accepted == 54 and result.rejected == [], result
    assert result.last_version > 0
    with mmsearch.Client(server.addr) as client:
        assert client.status().items == 54
        first = lines()[0]
        item = client.get(first["id"])
        assert (item.title, item.category, item.price) == (first["title"], first["category"], first["price"])
        assert item.attributes == first["attributes"]
        # As `mmsearch ingest` stores them: the photo paths as written, no bytes, no vectors.
        assert item.image_uris == first["images"] and item.images == [] and item.vectors == {}
        assert item.version > 0


def test_text_search_matches_cli(demo: tuple[Server, mmsearch.UpsertResult], binary: Path) -> None:
    server, _ = demo
    with mmsearch.Client(server.addr) as client:
        for query in ("camera on a tripod", "running shoes", "something to sit on"):
            result = client.search(query, top_k=5)
            same_hits(result, cli(binary, server, "--text", query, "-k", "5"))
        assert client.search("camera on a tripod", top_k=1).hits[0].id == "tripod"
        # Paging: offset 3 continues where the first three stopped.
        six = client.search("camera", top_k=6).hits
        assert [h.id for h in client.search("camera", top_k=3, offset=3).hits] == [h.id for h in six[3:]]


def test_image_search_matches_cli(demo: tuple[Server, mmsearch.UpsertResult], binary: Path) -> None:
    server, _ = demo
    with mmsearch.Client(server.addr) as client:
        for product in lines()[::18]:
            photo = product["images"][0]
            expected = cli(binary, server, "--image", photo, "-k", "3")
            same_hits(client.search(image=photo, top_k=3), expected)
            same_hits(client.search(image=Path(photo).read_bytes(), top_k=3), expected)
            # A PIL image is sent as PNG: not the same bytes, but the product still ranks first.
            with PIL.Image.open(photo) as img:
                assert client.search(image=img, top_k=3).hits[0].id == product["id"]


def test_voice_search_matches_cli(demo: tuple[Server, mmsearch.UpsertResult], binary: Path, tmp_path: Path) -> None:
    server, _ = demo
    wav = espeak("wireless mouse", tmp_path / "q.wav")
    expected = cli(binary, server, "--voice", str(wav), "-k", "3")
    with mmsearch.Client(server.addr) as client:
        result = client.search(voice=wav, top_k=3)
        same_hits(result, expected)
        assert "mouse" in result.transcript.lower()
        assert "cordless-mouse" in [h.id for h in result.hits]
        same_hits(client.search(voice=wav.read_bytes(), top_k=3), expected)
        assert result.timing.encode_us > 0
        # The language given (as the CLI's --language) instead of detected.
        same_hits(client.search(voice=wav, top_k=3, speech_language="en"), cli(binary, server, "--voice", str(wav), "--language", "en", "-k", "3"))
        with pytest.raises(mmsearch.InvalidArgumentError, match="English-only"):
            client.search(voice=wav, speech_language="zh")


def test_filtered_search_matches_cli(demo: tuple[Server, mmsearch.UpsertResult], binary: Path) -> None:
    server, _ = demo
    with mmsearch.Client(server.addr) as client:
        result = client.search("chair", filter=mmsearch.Filter(categories=["Furniture"], price_max=100), top_k=5)
        same_hits(result, cli(binary, server, "--text", "chair", "--category", "Furniture", "--price-max", "100", "-k", "5"))
        assert result.hits and all(h.item and h.item.category == "Furniture" and h.item.price <= 100 for h in result.hits)
        result = client.search("shoe", filter={"attributes": {"brand": "Nike"}, "price_min": 50}, top_k=5)
        same_hits(result, cli(binary, server, "--text", "shoe", "--attr", "brand=Nike", "--price-min", "50", "-k", "5"))
        assert result.hits and all(h.item and h.item.attributes["brand"] == "Nike" for h in result.hits)


def test_more_like_this_matches_cli(demo: tuple[Server, mmsearch.UpsertResult], binary: Path) -> None:
    server, _ = demo
    with mmsearch.Client(server.addr) as client:
        result = client.search(item_id="tripod", top_k=5)
        same_hits(result, cli(binary, server, "--item", "tripod", "-k", "5"))
        assert "tripod" not in [h.id for h in result.hits]
        same_hits(client.search(item_id="tripod", space="visual", top_k=5), cli(binary, server, "--item", "tripod", "--space", "visual", "-k", "5"))


def test_vector_search_matches_cli(demo: tuple[Server, mmsearch.UpsertResult], binary: Path) -> None:
    server, _ = demo
    v = np.random.default_rng(7).standard_normal(384).astype(np.float32)
    expected = cli(binary, server, "--vector", ",".join(repr(float(x)) for x in v), "-k", "5")
    with mmsearch.Client(server.addr) as client:
        same_hits(client.search(vector=v, top_k=5), expected)
        same_hits(client.search(vector=[float(x) for x in v], top_k=5), expected)


def test_explain_attaches_plan_and_space_scores(demo: tuple[Server, mmsearch.UpsertResult]) -> None:
    server, _ = demo
    with mmsearch.Client(server.addr) as client:
        plain = client.search(image=lines()[0]["images"][0], top_k=3)
        explained = client.search(image=lines()[0]["images"][0], top_k=3, explain=True)
    assert all(h.explanation is None for h in plain.hits)
    assert [h.id for h in explained.hits] == [h.id for h in plain.hits]
    for hit in explained.hits:
        e = hit.explanation
        assert e is not None and e.plan and e.score == pytest.approx(hit.score, abs=1e-5)
        # An image query searches the text-role and the visual space.
        assert {s.role for s in e.spaces} == {"text", "visual"}
        assert all(s.weight > 0 for s in e.spaces)


@pytest.fixture(scope="session")
def videos() -> Path:
    """The test videos of deploy/video/make-test-videos.sh (made once, cached)."""
    script = Path(__file__).resolve().parents[3] / "deploy" / "video" / "make-test-videos.sh"
    out = subprocess.run([str(script)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip())


def test_video_search_matches_cli(demo: tuple[Server, mmsearch.UpsertResult], binary: Path, videos: Path) -> None:
    server, _ = demo
    narrated = videos / "tripod-narrated.mp4"
    expected = cli(binary, server, "--video", str(narrated), "-k", "3")
    with mmsearch.Client(server.addr) as client:
        result = client.search(video=narrated, top_k=3)
        same_hits(result, expected)
        assert result.hits[0].item.title == "Tripod"
        assert "tripod" in result.transcript.lower()
        explained = client.search(video=narrated.read_bytes(), top_k=1, explain=True)
        e = explained.hits[0].explanation
        assert e is not None and e.video is not None
        assert e.video.frames >= 1 and e.video.frame_weight + e.video.speech_weight == pytest.approx(1.0)
        assert e.video.speech_weight > 0


def test_upsert_item_with_video(demo: tuple[Server, mmsearch.UpsertResult], videos: Path) -> None:
    server, _ = demo
    with mmsearch.Client(server.addr) as client:
        result = client.upsert([{"id": "py-video", "title": "Laptop clip", "videos": [videos / "laptop-silent.mp4"]}])
        assert result.accepted == 1 and result.rejected == [], result
        try:
            item = client.get("py-video")
            assert item.video_uris == [str(videos / "laptop-silent.mp4")]
            assert item.videos == []
            bad = client.upsert([mmsearch.Item("py-bad-video", title="x", videos=[b"not a video"])])
            assert bad.accepted == 0 and "video 0" in bad.rejected[0].reason
        finally:
            client.delete(["py-video"])
