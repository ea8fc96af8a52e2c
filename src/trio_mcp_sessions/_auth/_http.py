"""The verifiers' HTTP: one request with a deadline and a size cap, JSON out, one error type.

httpx is imported lazily (it comes with the ``auth`` extra), and no httpx
exception leaves this module: every failure becomes :exc:`FetchError`, which
the verifiers turn into :exc:`~trio_mcp_sessions.VerifierUnavailable`. Reasons
name the URL's host and what went wrong, never a token or a body.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx

__all__ = ["FetchError", "fingerprint", "import_httpx", "request_json"]


def import_httpx() -> Any:
    """httpx, or an ImportError that says which extra brings it."""
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - the test extra has it
        raise ImportError(
            "the token verifiers need httpx and joserfc: pip install 'trio-mcp-sessions[auth]'"
        ) from exc
    return httpx


def fingerprint(token: str) -> str:
    """A short SHA-256 prefix of *token*: safe to log, useless to replay."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:12]


class _OneChunkIterator:
    """Yields the request body once; a plain iterator, so a failed send leaves no generator."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data or None

    def __aiter__(self) -> _OneChunkIterator:
        return self

    async def __anext__(self) -> bytes:
        if self._data is None:
            raise StopAsyncIteration
        data, self._data = self._data, None
        return data


_STREAM_CLASS: Any = None


def _one_chunk(data: bytes) -> Any:
    """An ``httpx.AsyncByteStream`` of *data* that is not an async generator.

    httpx's own body streams are async generators; when a send fails
    half-way (the server went away), httpcore drops one unexhausted and trio
    warns when the garbage collector finds it.
    """
    global _STREAM_CLASS
    if _STREAM_CLASS is None:
        httpx = import_httpx()

        class OneChunkStream(httpx.AsyncByteStream):  # type: ignore[misc,name-defined]
            def __init__(self, data: bytes) -> None:
                self._body = data

            def __aiter__(self) -> _OneChunkIterator:
                return _OneChunkIterator(self._body)

            async def aclose(self) -> None:
                await trio.lowlevel.checkpoint()

        _STREAM_CLASS = OneChunkStream
    return _STREAM_CLASS(data)


class FetchError(Exception):
    """A request to the authorization server failed; *reason* is safe to show and log."""

    def __init__(self, reason: str, *, status: int | None = None, error: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        #: The OAuth ``error`` code of a 400 answer (RFC 6749 §5.2), if it sent one.
        self.error = error


def _where(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    data: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """The JSON document a 2xx answer to one request carries.

    The whole exchange (connect, send, every byte of the body) runs under one
    deadline, the body is read up to *max_bytes* (declared or not; sent
    uncompressed, so the cap is the memory it takes) and redirects are not
    followed (the client is made without ``follow_redirects``).

    Raises:
        FetchError: Unreachable, timed out, a non-2xx status (``status`` set),
            too large, or not JSON.
    """
    httpx = import_httpx()
    where = _where(url)
    content = urllib.parse.urlencode(dict(data)).encode() if data is not None else b""
    send_headers = {"accept": "application/json", "accept-encoding": "identity"}
    if data is not None:
        send_headers["content-type"] = "application/x-www-form-urlencoded"
    send_headers.update(headers or {})
    body = bytearray()
    status = 0
    with trio.move_on_after(timeout) as scope:
        try:
            request = client.build_request(method, url, headers=send_headers)
            request.stream = _one_chunk(content)
            if data is not None:
                request.headers["content-length"] = str(len(content))
            response = await client.send(request, stream=True)
            try:
                status = response.status_code
                # A 400's body is read for its OAuth error code (see FetchError.error).
                if not 200 <= status < 300 and status != 400:
                    raise FetchError(f"{where} answered {status}", status=status)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise FetchError(f"{where} sent more than {max_bytes} bytes")
                # Stopped by cancellation, not by leaving the loop: that unwinds
                # httpx's chain of async generators (trio warns about any left
                # for the garbage collector).
                with trio.CancelScope() as reading:
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            reading.cancel()
                if reading.cancelled_caught:
                    raise FetchError(f"{where} sent more than {max_bytes} bytes")
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise FetchError(f"{where} did not answer within {timeout:g}s") from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
            raise FetchError(f"{where} is unreachable ({type(exc).__name__})") from None
    if scope.cancelled_caught:
        raise FetchError(f"{where} did not answer within {timeout:g}s")
    try:
        document = json.loads(bytes(body))
    except (ValueError, RecursionError):
        if status == 400:
            raise FetchError(f"{where} answered 400", status=400) from None
        raise FetchError(f"{where} answered {status} with something that is not JSON") from None
    if status == 400:
        error = document.get("error") if isinstance(document, dict) else None
        code = error if isinstance(error, str) else None
        raise FetchError(f"{where} answered 400", status=400, error=code)
    return document


class ClientRunner:
    """A verifier's one httpx client and its nursery, from ``run()`` to cancellation.

    Fetches run in this nursery, not in the request that needed them, so a
    client that hangs up cannot cancel a fetch other requests wait for.
    """

    def __init__(self, owner: str, *, http_timeout: float, start_timeout: float) -> None:
        self._owner = owner
        self._http_timeout = http_timeout
        self._start_timeout = start_timeout
        self._started = trio.Event()
        self._stopped = False
        self._client: httpx.AsyncClient | None = None
        self._nursery: trio.Nursery | None = None

    async def run(self, task_status: trio.TaskStatus[None]) -> None:
        if self._started.is_set() or self._stopped:
            raise RuntimeError(f"{self._owner}.run() can run only once")
        httpx = import_httpx()
        async with (
            httpx.AsyncClient(timeout=self._http_timeout, follow_redirects=False) as client,
            trio.open_nursery() as nursery,
        ):
            self._client, self._nursery = client, nursery
            self._started.set()
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._stopped = True
                self._client = None

    async def ready(self) -> tuple[httpx.AsyncClient, trio.Nursery]:
        """The client and nursery; waits up to *start_timeout* for ``run()`` to start.

        Raises:
            VerifierUnavailable: ``run()`` did not start in time, or has ended.
        """
        from ._types import VerifierUnavailable

        if not self._started.is_set() and not self._stopped:
            with trio.move_on_after(self._start_timeout):
                await self._started.wait()
        else:
            await trio.lowlevel.checkpoint()
        if self._client is None or self._nursery is None:
            reason = (
                f"{self._owner} has stopped"
                if self._stopped
                else f"{self._owner} is not running: start its run() in a nursery"
            )
            raise VerifierUnavailable(reason)
        return self._client, self._nursery
