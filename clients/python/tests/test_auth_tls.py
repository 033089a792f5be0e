"""API keys by role (made with `mmsearch keygen`), TLS and mutual TLS (the repository's test
certificates, tests/data/tls)."""

from __future__ import annotations

from typing import Any

import pytest

import mmsearch

from conftest import DIM, TLS_DIR, Server, space_config, unit

V = unit([1.0] * DIM)
NO_RETRY = mmsearch.RetryPolicy(max_attempts=1)


def test_each_key_reaches_only_its_services(auth_server: tuple[Server, dict[str, str]]) -> None:
    server, keys = auth_server
    item = {"id": "k1", "title": "keyed", "vectors": {"shared": V}}
    with mmsearch.Client(server.addr, api_key=keys["ingest"]) as ingest, \
            mmsearch.Client(server.addr, api_key=keys["search"]) as search, \
            mmsearch.Client(server.addr, api_key=keys["admin"]) as admin, \
            mmsearch.Client(server.addr, api_key=keys["both"]) as both:
        # ingest: writes, reads and deletes items; nothing else.
        assert ingest.upsert([item]).accepted == 1
        assert ingest.get("k1").title == "keyed"
        with pytest.raises(mmsearch.PermissionDeniedError, match="search role"):
            ingest.search(vector=V)
        with pytest.raises(mmsearch.PermissionDeniedError, match="admin role"):
            ingest.status()
        # search: searches only.
        assert [h.id for h in search.search(vector=V).hits] == ["k1"]
        with pytest.raises(mmsearch.PermissionDeniedError, match="ingest role"):
            search.upsert([item])
        with pytest.raises(mmsearch.PermissionDeniedError):
            search.get("k1")
        with pytest.raises(mmsearch.PermissionDeniedError):
            search.delete("k1")
        with pytest.raises(mmsearch.PermissionDeniedError):
            list(search.rebuild())
        # admin: the admin service only.
        assert admin.status().items >= 1
        assert [p.phase for p in admin.rebuild()][-1] == "done"
        with pytest.raises(mmsearch.PermissionDeniedError):
            admin.search(vector=V)
        with pytest.raises(mmsearch.PermissionDeniedError):
            admin.get("k1")
        # A key may hold several roles.
        assert both.search(vector=V).hits[0].id == "k1"
        assert both.delete("k1").deleted == 1
        with pytest.raises(mmsearch.PermissionDeniedError):
            both.snapshot("never-written")


def tls_server(start: Any, *extra: str) -> Server:
    return start(  # type: ignore[no-any-return]
        space_config(),
        "--insecure-no-auth",
        "--tls-cert", str(TLS_DIR / "server.pem"),
        "--tls-key", str(TLS_DIR / "server.key"),
        *extra,
    )


def test_tls(start: Any) -> None:
    server = tls_server(start)
    ca = TLS_DIR / "ca.pem"
    # The certificate names localhost and 127.0.0.1.
    with mmsearch.Client(f"localhost:{server.port}", tls=True, ca_cert=ca) as c:
        assert c.status().items == 0
    with mmsearch.Client(f"https://127.0.0.1:{server.port}", ca_cert=ca.read_bytes()) as c:
        assert c.status().items == 0
    # Plaintext to the TLS port, and TLS without trusting the CA, both fail.
    with mmsearch.Client(server.addr, retry=NO_RETRY, timeout=5) as plain:
        with pytest.raises(mmsearch.UnavailableError):
            plain.status()
    with mmsearch.Client(f"https://localhost:{server.port}", retry=NO_RETRY, timeout=5) as untrusting:
        with pytest.raises(mmsearch.UnavailableError):
            untrusting.status()


def test_mutual_tls(start: Any) -> None:
    ca = TLS_DIR / "ca.pem"
    server = tls_server(start, "--tls-client-ca", str(ca))
    target = f"localhost:{server.port}"
    with mmsearch.Client(target, ca_cert=ca, retry=NO_RETRY, timeout=5) as without:
        with pytest.raises(mmsearch.UnavailableError):
            without.status()
    with mmsearch.Client(target, ca_cert=ca, client_cert=TLS_DIR / "client.pem", client_key=TLS_DIR / "client.key") as c:
        assert c.status().items == 0
        assert c.upsert([{"id": "m", "vectors": {"shared": V}}]).accepted == 1
        assert c.search(vector=V).hits[0].id == "m"


def test_connection_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="need tls"):
        mmsearch.Client("localhost:1", tls=False, ca_cert=b"x")
    with pytest.raises(ValueError, match="contradicts"):
        mmsearch.Client("https://localhost:1", tls=False)
    with pytest.raises(ValueError, match="both client_cert and client_key"):
        mmsearch.Client("localhost:1", ca_cert=TLS_DIR / "ca.pem", client_cert=TLS_DIR / "client.pem")
