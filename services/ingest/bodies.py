"""Reading a request body under the size limit, with or without `Content-Encoding: gzip`.

Upstream links are often slow, so clients may gzip their batches (a 1,000-event JSON batch
shrinks about tenfold). The limit applies to what the body *decodes to*: that is what
ingest holds and parses. A gzip stream is inflated as it arrives with
`zlib.decompressobj(...).decompress(chunk, max_length)`, asking each time for at most one
byte more than the limit still allows, so a zip bomb (megabytes of zeros in kilobytes, or
a stream that would expand to gigabytes) is refused after inflating at most `limit + 1`
bytes: memory and CPU stay bounded by the limit whatever the ratio. The compressed bytes
are held to the same limit (a gzip body never needs to be larger than what it decodes to,
give or take its header).

Several gzip members one after the other are one stream (RFC 1952 §2.2), accepted on
purpose: `cat a.gz b.gz` and compressors that flush as they stream write them, and each
costs a member's 18 bytes at least, so the limit bounds their number too. Anything else
is refused (400), each case in its own words: a body that does not begin as gzip, bytes
after a member that are not another (trailing data, zero padding), a stream cut short,
and what zlib finds corrupt inside a member (its data, CRC or length).
"""

import zlib
from collections.abc import AsyncIterator

IDENTITY = "identity"
GZIP = "gzip"
# `x-gzip` is gzip's old name; RFC 9110 §8.4.1.3 asks recipients to take it as gzip.
ENCODINGS = {IDENTITY: IDENTITY, "": IDENTITY, GZIP: GZIP, "x-gzip": GZIP}
# What a 415 names in its detail and its `Accept-Encoding` header (RFC 9110 §12.5.3).
SUPPORTED = (GZIP, IDENTITY)

# gzip framing only (RFC 1952): a raw deflate or zlib stream sent as gzip is corrupt.
_GZIP_WBITS = 16 + zlib.MAX_WBITS
# Every gzip member begins with these two bytes (RFC 1952 §2.3.1).
_MAGIC = b"\x1f\x8b"
_STEP = 64 * 1024
NOT_GZIP = "not a valid gzip stream: it does not begin with gzip's header (1f 8b)"
# Anything after a member but another member, zero padding included, is refused: GNU
# gzip skips trailing zeros with a warning, but an HTTP body is exactly what the client
# sent, and bytes it did not mean to send say its framing is broken somewhere.
NOT_A_MEMBER = (
    "not a valid gzip stream: bytes after the end of a gzip member are not another "
    "member (trailing data or padding)"
)
TRUNCATED = "the gzip stream is truncated"


class BodyTooLarge(Exception):
    """The body, or what it decodes to, is larger than the limit."""

    def __init__(self, limit: int, *, decoded: bool) -> None:
        what = "the decompressed body" if decoded else "the body"
        super().__init__(f"{what} is larger than {limit} bytes")
        self.decoded = decoded


class CorruptBody(Exception):
    """The body is not a valid stream of its Content-Encoding."""


def encoding_of(header: str | None) -> str | None:
    """The coding a Content-Encoding header names (`identity` or `gzip`), None when it is
    one ingest does not decode (br, deflate, zstd, or a list of codings)."""
    return ENCODINGS.get((header or "").strip().lower())


class _Inflater:
    """gzip to bytes, never producing more than `limit` bytes in all."""

    def __init__(self, limit: int) -> None:
        self._room = limit
        self._limit = limit
        self._member = zlib.decompressobj(_GZIP_WBITS)
        self._members = 1
        # the first bytes of the current member, until they are known to be gzip's magic
        self._head = b""
        self._chunks: list[bytes] = []

    def _not_gzip(self) -> str:
        return NOT_GZIP if self._members == 1 else NOT_A_MEMBER

    def feed(self, data: bytes) -> None:
        more = True  # output cut at what was asked for may go on without new input
        while data or more:
            if self._member.eof:
                if not data:
                    return
                # RFC 1952 allows several members one after the other (`cat a.gz b.gz`):
                # what follows the end of one must be the start of the next.
                self._member = zlib.decompressobj(_GZIP_WBITS)
                self._members += 1
                self._head = b""
            if len(self._head) < len(_MAGIC):
                # zlib would say "incorrect header check", or, for a lone byte, nothing
                # until the end ("truncated"): the precise reason is known from the start
                self._head += data[: len(_MAGIC) - len(self._head)]
                if not _MAGIC.startswith(self._head):
                    raise CorruptBody(self._not_gzip())
            # One byte more than the room left: getting it is proof of "too large", and
            # never more than that is inflated. At most a step at a time, so a bomb's
            # first kilobyte does not become one limit-sized piece plus zlib's buffers.
            asked = min(self._room + 1, _STEP)
            try:
                out = self._member.decompress(data, asked)
            except zlib.error as exc:
                raise CorruptBody(f"not a valid gzip stream: {exc}") from exc
            if len(out) > self._room:
                raise BodyTooLarge(self._limit, decoded=True)
            self._room -= len(out)
            self._chunks.append(out)
            more = len(out) == asked and not self._member.eof
            data = self._member.unused_data if self._member.eof else self._member.unconsumed_tail

    def result(self) -> bytes:
        if not self._member.eof:
            raise CorruptBody(TRUNCATED)
        return b"".join(self._chunks)


async def read_body(stream: AsyncIterator[bytes], encoding: str, limit: int) -> bytes:
    """The body `stream` carries, decoded from `encoding` (`identity` or `gzip`), refused
    with BodyTooLarge as soon as it or its decoded form passes `limit` bytes, with
    CorruptBody when it is not valid gzip."""
    inflater = _Inflater(limit) if encoding == GZIP else None
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, decoded=False)
        if inflater is None:
            chunks.append(chunk)
        else:
            inflater.feed(chunk)
    return b"".join(chunks) if inflater is None else inflater.result()
