"""Every error class is raised by a real bad request to a real server, with the server's message
and request id; retries happen only for UNAVAILABLE and admission refusals, and only on Search,
Get, Status, Delete and Upsert batches.

INTERNAL has no trigger in a request to a well set-up server: it is a server fault. A server
whose snapshot directory is a symlink loop is one (see test_internal). Which RPCs are retried
is checked against an in-process fake server, since a real one cannot be made to refuse a
Snapshot or a Rebuild at will."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

import mmsearch
from mmsearch import errors
from mmsearch.v1 import mmsearch_pb2 as pb
from mmsearch.v1 import mmsearch_pb2_grpc as pb_grpc

from conftest import DIM, Server, space_config, unit

FAST = mmsearch.RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)
NONE = mmsearch.RetryPolicy(max_attempts=1)


def vec(*head: float) -> list[float]:
    return unit(list(head) + [0.1] * (DIM - len(head)))


@pytest.fixture(scope="module")
def client(vec_server: Server) -> Iterator[mmsearch.Client]:
    with mmsearch.Client(vec_server.addr, retry=FAST) as c:
        c.upsert([{"id": "only-shared", "vectors": {"shared": vec(1.0)}}])
        yield c


def check(err: mmsearch.MmsearchError, cls: type[mmsearch.MmsearchError], code: grpc.StatusCode, text: str) -> None:
    assert type(err) is cls
    assert err.code == code
    assert text in err.message, err.message
    assert err.request_id, "the server's x-request-id"
    assert code.name in str(err) and err.request_id in str(err)


def test_invalid_argument(client: mmsearch.Client) -> None:
    with pytest.raises(mmsearch.InvalidArgumentError) as e:
        client.search(vector=[1.0, 2.0, 3.0])
    check(e.value, mmsearch.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT, "dimension mismatch")
    assert e.value.attempts == 1 and not e.value.retryable
    with pytest.raises(mmsearch.InvalidArgumentError, match="top_k"):
        client.search(vector=vec(1.0), top_k=0)
    # Snapshot names are one folder name: no paths, nothing hidden, no "..".
    for bad in ("../escape", "/tmp/absolute", "relative/path", ".hidden", "n" * 129):
        with pytest.raises(mmsearch.InvalidArgumentError) as b:
            client.snapshot(bad)
        check(b.value, mmsearch.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT, "snapshot name")


def test_not_found(client: mmsearch.Client) -> None:
    with pytest.raises(mmsearch.NotFoundError) as e:
        client.get("no-such-item")
    check(e.value, mmsearch.NotFoundError, grpc.StatusCode.NOT_FOUND, "no-such-item")
    with pytest.raises(mmsearch.NotFoundError, match="none of the ids exist"):
        client.delete(["no-such-item"])
    with pytest.raises(mmsearch.NotFoundError):
        client.search(item_id="no-such-item")


def test_already_exists(client: mmsearch.Client) -> None:
    first = client.snapshot("errors-twice")
    with pytest.raises(mmsearch.AlreadyExistsError) as e:
        client.snapshot("errors-twice")
    check(e.value, mmsearch.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS, f"{first.directory} already exists")
    assert e.value.attempts == 1


def test_failed_precondition(client: mmsearch.Client, start: Any, tmp_path: Path) -> None:
    with pytest.raises(mmsearch.FailedPreconditionError) as e:
        client.search(item_id="only-shared", space="other")
    check(e.value, mmsearch.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION, "no vector in space")
    # A server whose snapshot directory lies under a regular file: its setup, not the request,
    # is wrong.
    regular = tmp_path / "file"
    regular.write_text("x")
    misplaced = start(space_config(), "--insecure-no-auth", "--snapshot-dir", str(regular / "snapshots"))
    with mmsearch.Client(misplaced.addr, retry=FAST) as c:
        with pytest.raises(mmsearch.FailedPreconditionError) as s:
            c.snapshot("nowhere")
    check(s.value, mmsearch.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION, "Not a directory")
    assert s.value.attempts == 1


def test_unauthenticated_and_permission_denied(auth_server: tuple[Server, dict[str, str]]) -> None:
    server, keys = auth_server
    for key in (None, "mms_not_a_key"):
        with mmsearch.Client(server.addr, api_key=key, retry=FAST) as anon:
            with pytest.raises(mmsearch.UnauthenticatedError) as e:
                anon.status()
            check(e.value, mmsearch.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED, "")
            assert e.value.attempts == 1
    with mmsearch.Client(server.addr, api_key=keys["search"]) as searcher:
        with pytest.raises(mmsearch.PermissionDeniedError) as d:
            searcher.status()
        check(d.value, mmsearch.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED, "lacks the admin role")


def test_resource_exhausted_oversize_is_not_retried(client: mmsearch.Client) -> None:
    # The server's limit here is 1 MiB; this photo is 2 MiB.
    with pytest.raises(mmsearch.ResourceExhaustedError) as e:
        client.search(image=b"\0" * (2 << 20))
    check(e.value, mmsearch.ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED, "message length too large")
    assert not e.value.is_admission and not e.value.retryable and e.value.attempts == 1
    with pytest.raises(mmsearch.ResourceExhaustedError):
        client.upsert([{"id": "big", "images": [b"\0" * (2 << 20)]}])


def _hold_ingest_slot(server: Server) -> tuple[threading.Event, Any]:
    """Opens an Upsert stream that stays open until the event is set: it holds the server's
    only ingest slot."""
    release = threading.Event()

    def requests() -> Iterator[pb.UpsertRequest]:
        yield pb.UpsertRequest(item=pb.Item(id="held", vectors=[pb.Vector(space="shared", values=vec(0.5))]))
        release.wait(30)

    channel = grpc.insecure_channel(server.addr)
    call = pb_grpc.IngestServiceStub(channel).Upsert.future(requests(), timeout=60)
    return release, (call, channel)


def test_resource_exhausted_admission_is_retried(start: Any) -> None:
    tight = start(
        space_config("[limits.concurrency]\nqueue_timeout_ms = 50\ningest = { max_in_flight = 1, max_queued = 0 }"),
        "--insecure-no-auth",
    )
    release, (held, channel) = _hold_ingest_slot(tight)
    try:
        time.sleep(0.5)
        with mmsearch.Client(tight.addr, retry=NONE) as once:
            with pytest.raises(mmsearch.ResourceExhaustedError) as e:
                once.get("held")
            check(e.value, mmsearch.ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED, "concurrency limit")
            assert e.value.is_admission and e.value.retryable and e.value.attempts == 1
            # Search has its own limit: unaffected.
            once.search(vector=vec(1.0))
        patient = mmsearch.RetryPolicy(max_attempts=30, initial_backoff=0.05, max_backoff=0.2)
        with mmsearch.Client(tight.addr, retry=patient) as retrying:
            threading.Timer(0.5, release.set).start()
            started = time.monotonic()
            assert retrying.get("held").id == "held"
            assert time.monotonic() - started >= 0.3, "answered only after the slot was freed"
        assert held.result().accepted == 1
    finally:
        release.set()
        channel.close()


def test_unavailable_is_retried_then_raised() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port now.
    with mmsearch.Client(f"127.0.0.1:{port}", retry=FAST, timeout=10) as c:
        with pytest.raises(mmsearch.UnavailableError) as e:
            c.status()
    assert e.value.code == grpc.StatusCode.UNAVAILABLE and e.value.retryable
    assert e.value.attempts == 3
    assert e.value.request_id is None  # no server answered


def test_deadline_exceeded(demo_server: Server, tmp_path: Path) -> None:
    from conftest import espeak

    wav = espeak("a long spoken query about wireless mice and keyboards", tmp_path / "q.wav")
    with mmsearch.Client(demo_server.addr) as c:
        with pytest.raises(mmsearch.DeadlineExceededError) as e:
            c.search(voice=wav, timeout=0.05)
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and not e.value.retryable


def test_unimplemented(client: mmsearch.Client) -> None:
    with pytest.raises(mmsearch.UnimplementedError) as e:
        client.search("a text query to a server without models")
    check(e.value, mmsearch.UnimplementedError, grpc.StatusCode.UNIMPLEMENTED, "without models")


def test_internal(start: Any, tmp_path: Path) -> None:
    # The server answers INTERNAL for store and index failures and for I/O errors it does not
    # classify (src/server/status.rs); no request to a well set-up server causes one. A
    # snapshot directory that is a symlink loop does: ELOOP is none of the path errors the
    # server reports as FAILED_PRECONDITION, and the server starts with it (only the check
    # that the directory lies outside the data directory looks at it before a snapshot).
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    looping = start(space_config(), "--insecure-no-auth", "--snapshot-dir", str(loop))
    with mmsearch.Client(looping.addr, retry=FAST) as c:
        with pytest.raises(mmsearch.InternalError) as e:
            c.snapshot("into-the-loop")
    check(e.value, mmsearch.InternalError, grpc.StatusCode.INTERNAL, "internal snapshot error")
    assert e.value.attempts == 1 and not e.value.retryable
    # The details are in the server's log only (logged before it answered), under the request id.
    assert "symbolic links" not in e.value.message
    rid = e.value.request_id
    assert rid
    logged = [line for line in looping.log.read_text().splitlines() if rid in line]
    assert any("Too many levels of symbolic links" in line for line in logged), logged


def test_every_status_has_its_class() -> None:
    expected = {
        grpc.StatusCode.INVALID_ARGUMENT: mmsearch.InvalidArgumentError,
        grpc.StatusCode.NOT_FOUND: mmsearch.NotFoundError,
        grpc.StatusCode.ALREADY_EXISTS: mmsearch.AlreadyExistsError,
        grpc.StatusCode.FAILED_PRECONDITION: mmsearch.FailedPreconditionError,
        grpc.StatusCode.UNAUTHENTICATED: mmsearch.UnauthenticatedError,
        grpc.StatusCode.PERMISSION_DENIED: mmsearch.PermissionDeniedError,
        grpc.StatusCode.RESOURCE_EXHAUSTED: mmsearch.ResourceExhaustedError,
        grpc.StatusCode.UNAVAILABLE: mmsearch.UnavailableError,
        grpc.StatusCode.DEADLINE_EXCEEDED: mmsearch.DeadlineExceededError,
        grpc.StatusCode.UNIMPLEMENTED: mmsearch.UnimplementedError,
        grpc.StatusCode.INTERNAL: mmsearch.InternalError,
    }
    for code, cls in expected.items():
        assert errors.error_class(code) is cls and issubclass(cls, mmsearch.MmsearchError)
    # Codes the server does not send are the base class.
    assert errors.error_class(grpc.StatusCode.CANCELLED) is mmsearch.MmsearchError
    # The server's RESOURCE_EXHAUSTED messages (admission.rs, status.rs): only admission
    # refusals are retryable.
    def exhausted(msg: str) -> mmsearch.ResourceExhaustedError:
        return mmsearch.ResourceExhaustedError(msg, code=grpc.StatusCode.RESOURCE_EXHAUSTED)

    assert exhausted("search service is at its concurrency limit and its queue is full; retry with backoff").retryable
    assert exhausted("ingest service stayed at its concurrency limit for 2s; retry with backoff").retryable
    assert not exhausted("Error, decoded message length too large: found 9 bytes, the limit is: 4 bytes").retryable
    assert not exhausted("cannot write snapshot target /x: No space left on device (os error 28)").retryable


# ------------------------------------------------------------------ which RPCs are retried

ADMISSION = "search service is at its concurrency limit and its queue is full; retry with backoff"


class Refusing(
    pb_grpc.SearchServiceServicer, pb_grpc.IngestServiceServicer, pb_grpc.AdminServiceServicer, pb_grpc.RecommendServiceServicer
):
    """Answers every call with one status, counting calls by RPC."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code, self.message = code, message
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def _refuse(self, rpc: str, context: Any) -> Any:
        with self.lock:
            self.calls[rpc] = self.calls.get(rpc, 0) + 1
        context.set_trailing_metadata((("x-request-id", f"fake-{rpc}"),))
        context.abort(self.code, self.message)

    def Search(self, request: Any, context: Any) -> Any:
        return self._refuse("Search", context)

    def Upsert(self, request_iterator: Any, context: Any) -> Any:
        for _ in request_iterator:
            pass
        return self._refuse("Upsert", context)

    def Delete(self, request: Any, context: Any) -> Any:
        return self._refuse("Delete", context)

    def Get(self, request: Any, context: Any) -> Any:
        return self._refuse("Get", context)

    def Rebuild(self, request: Any, context: Any) -> Any:
        return self._refuse("Rebuild", context)

    def RecordInteractions(self, request_iterator: Any, context: Any) -> Any:
        for _ in request_iterator:
            pass
        return self._refuse("RecordInteractions", context)

    def RecordInteractionBatch(self, request: Any, context: Any) -> Any:
        return self._refuse("RecordInteractionBatch", context)

    def Recommend(self, request: Any, context: Any) -> Any:
        return self._refuse("Recommend", context)

    def RecommendForUser(self, request: Any, context: Any) -> Any:
        return self._refuse("RecommendForUser", context)

    def DeleteUserData(self, request: Any, context: Any) -> Any:
        return self._refuse("DeleteUserData", context)

    def ExportUserData(self, request: Any, context: Any) -> Any:
        return self._refuse("ExportUserData", context)

    def Train(self, request: Any, context: Any) -> Any:
        return self._refuse("Train", context)

    def Status(self, request: Any, context: Any) -> Any:
        return self._refuse("Status", context)

    def Snapshot(self, request: Any, context: Any) -> Any:
        return self._refuse("Snapshot", context)


def fake_server(servicer: Refusing) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_SearchServiceServicer_to_server(servicer, server)
    pb_grpc.add_IngestServiceServicer_to_server(servicer, server)
    pb_grpc.add_AdminServiceServicer_to_server(servicer, server)
    pb_grpc.add_RecommendServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def exercise(c: mmsearch.Client) -> None:
    calls: list[Callable[[], object]] = [
        lambda: c.search(vector=[1.0]),
        lambda: c.get("x"),
        lambda: c.delete("x"),
        lambda: c.status(),
        lambda: c.snapshot("x"),
        lambda: list(c.rebuild()),
        lambda: c.upsert([{"id": "a"}, {"id": "b"}, {"id": "c"}], batch_size=2),
        lambda: c.record_interactions([mmsearch.Interaction("u", "a", "view")]),
        lambda: c.recommend(["a"]),
        lambda: c.recommend_for_user("u"),
        lambda: c.delete_user_data("u"),
        lambda: c.export_user_data("u"),
        lambda: list(c.train()),
    ]
    for call in calls:
        with pytest.raises(mmsearch.MmsearchError):
            call()


@pytest.mark.parametrize(
    "code,message,retried",
    [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ADMISSION, True),
        (grpc.StatusCode.UNAVAILABLE, "server is shutting down", True),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "Error, decoded message length too large: found 9 bytes", False),
        (grpc.StatusCode.INTERNAL, "internal store error", False),
    ],
)
def test_only_idempotent_rpcs_are_retried(code: grpc.StatusCode, message: str, retried: bool) -> None:
    servicer = Refusing(code, message)
    server, addr = fake_server(servicer)
    try:
        with mmsearch.Client(addr, retry=FAST) as c:
            exercise(c)
            try:
                c.get("x")
            except mmsearch.MmsearchError as e:
                assert type(e) is errors.error_class(code) and e.request_id == "fake-Get" and e.message == message
                assert e.attempts == (3 if retried else 1)
    finally:
        server.stop(None)
    n = 3 if retried else 1
    # Every RPC of the proto has been tried, and its retry policy is the intended one: all but
    # the client-streamed RecordInteractions, whose job record_interactions does with batches.
    every = {m.name for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods}
    assert set(servicer.calls) == every - {"RecordInteractions"}
    # The upsert's first batch fails for good; the second is never sent.
    assert servicer.calls == {
        "Search": n, "Get": 2 * n, "Delete": n, "Status": n, "Upsert": n, "Snapshot": 1, "Rebuild": 1,
        "RecordInteractionBatch": n, "Recommend": n, "RecommendForUser": n, "DeleteUserData": n, "ExportUserData": n,
        "Train": 1,
    }


def test_retries_stop_at_the_deadline() -> None:
    servicer = Refusing(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
    server, addr = fake_server(servicer)
    try:
        slow = mmsearch.RetryPolicy(max_attempts=100, initial_backoff=0.2, max_backoff=0.2, multiplier=1.0)
        with mmsearch.Client(addr, retry=slow) as c:
            started = time.monotonic()
            with pytest.raises(mmsearch.UnavailableError) as e:
                c.status(timeout=0.5)
            assert time.monotonic() - started < 1.0
            assert 1 <= e.value.attempts < 100
    finally:
        server.stop(None)
