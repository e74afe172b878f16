"""The text layer of async files: :class:`AsyncTextFile` (the async ``io.TextIOWrapper``):
incremental decoding and encoding, newline handling and tell/seek cookies, all in the loop
thread over the buffered layer's reads."""

from __future__ import annotations

import codecs
import io
import operator
import os
import re
from collections.abc import Iterable
from io import UnsupportedOperation
from typing import Any, Final

from .._core import CancelScope
from .._core import checkpoint as _checkpoint
from ._file_base import (
    AsyncFileBase,
    exclusive,
    readlines_of,
    size_arg,
)
from ._file_buffered import AsyncBufferedFile

__all__ = ["AsyncTextFile"]

#: Text read size, as ``io.TextIOWrapper._CHUNK_SIZE``.
_CHUNK_SIZE: Final = 8192

# --------------------------------------------------------------------------------------------
# Text files: io.TextIOWrapper
# --------------------------------------------------------------------------------------------

_ANY_NEWLINE: Final = re.compile(r"\r\n|\r|\n")
_U64: Final = (1 << 64) - 1


def _pack_cookie(
    position: int, dec_flags: int = 0, bytes_to_feed: int = 0, need_eof: bool = False, skip: int = 0
) -> int:
    # Same layout as the stdlib's, so a cookie with no decoder state is the byte position.
    return position | (dec_flags << 64) | (bytes_to_feed << 128) | (skip << 192) | (need_eof << 256)


def _unpack_cookie(cookie: int) -> tuple[int, int, int, bool, int]:
    return (
        cookie & _U64,
        (cookie >> 64) & _U64,
        (cookie >> 128) & _U64,
        bool(cookie >> 256),
        (cookie >> 192) & _U64,
    )


class AsyncTextFile(AsyncFileBase):
    """A text file (``open_file(..., "r")``, ``"w"``, ``"a+"``, ...): the async counterpart
    of :class:`io.TextIOWrapper`, over the :class:`AsyncBufferedFile` in ``buffer``.

    Decoding and encoding use the codec's incremental decoder/encoder, so multi-byte
    characters split between reads, ``errors=`` handlers and BOMs (utf-8-sig, utf-16) behave
    as with the stdlib, and so do the ``newline`` settings (universal newlines through
    :class:`io.IncrementalNewlineDecoder`).

    ``tell()`` returns an opaque cookie, as the stdlib does: the byte position when the
    decoder holds no state (always the case at the start of a line for utf-8, latin-1, ...),
    otherwise a larger number that only ``seek()`` understands. ``seek(cookie)`` accepts 0,
    any cookie ``tell()`` returned on this file, and ``seek(0, 2)`` (end). Relative seeks
    other than ``seek(0, 1)`` are not possible on text files, as with the stdlib.
    """

    __slots__ = (
        "_b2c",
        "_buffer",
        "_decoded",
        "_decoder",
        "_encoder",
        "_encoding",
        "_errors",
        "_line_buffering",
        "_open_mode",
        "_readnl",
        "_readtranslate",
        "_readuniversal",
        "_snapshot",
        "_used",
        "_writenl",
        "_writetranslate",
    )

    _CHUNK_SIZE = _CHUNK_SIZE

    def __init__(
        self,
        buffer: AsyncBufferedFile,
        encoding: str,
        errors: str,
        newline: str | None,
        line_buffering: bool,
        mode: str,
    ) -> None:
        self._buffer = buffer
        self._raw = buffer._raw
        self._encoding = encoding
        self._errors = errors
        self._open_mode = mode
        self._line_buffering = line_buffering
        self._readuniversal = not newline
        self._readtranslate = newline is None
        self._readnl = newline
        self._writetranslate = newline != ""
        self._writenl = newline or os.linesep
        self._decoder: Any = None
        if self._raw._readable:
            decoder: Any = codecs.getincrementaldecoder(encoding)(errors)
            if self._readuniversal:
                decoder = io.IncrementalNewlineDecoder(decoder, self._readtranslate)
            self._decoder = decoder
        self._encoder: codecs.IncrementalEncoder | None = None
        seekable = self._raw._is_seekable()  # also settles it for _read_chunk
        if self._raw._writable:
            self._encoder = codecs.getincrementalencoder(encoding)(errors)
            # Writing into the middle of a file must not start with a BOM.
            if seekable and buffer._tell() != 0:
                self._encoder.setstate(0)
        # Decoded text not yet returned: _decoded[_used:]. _snapshot = (decoder flags, bytes)
        # such that decoding the bytes from a decoder in that state gives _decoded; tell()
        # works back from it. None when there is nothing to work back from.
        self._decoded = ""
        self._used = 0
        self._snapshot: tuple[int, bytes] | None = None
        self._b2c = 0.0

    # --- attributes ---

    @property
    def buffer(self) -> AsyncBufferedFile:
        return self._buffer

    @property
    def encoding(self) -> str:
        return self._encoding

    @property
    def errors(self) -> str:
        return self._errors

    @property
    def line_buffering(self) -> bool:
        return self._line_buffering

    @property
    def write_through(self) -> bool:
        return False

    @property
    def newlines(self) -> str | tuple[str, ...] | None:
        """The newline kinds seen so far (universal-newlines reading only), as the stdlib."""
        decoder = self._decoder
        return getattr(decoder, "newlines", None) if decoder is not None else None

    @property
    def mode(self) -> str:
        return self._open_mode

    def __repr__(self) -> str:
        raw = self._raw
        if raw._fd < 0:
            return "<nursery_io.AsyncTextFile [closed]>"
        return (
            f"<nursery_io.AsyncTextFile name={raw._name!r} mode={self._open_mode!r} "
            f"encoding={self._encoding!r}>"
        )

    # --- helpers (turn held) ---

    def _check_readable(self) -> Any:
        decoder = self._decoder
        if decoder is None:
            raise UnsupportedOperation("not readable")
        return decoder

    def _check_seekable(self) -> None:
        if not self._raw._is_seekable():
            raise UnsupportedOperation("underlying stream is not seekable")

    def _reset_read_state(self) -> None:
        self._decoded = ""
        self._used = 0
        self._snapshot = None

    async def _read_chunk(self, size: int) -> tuple[bool, bool]:
        """Read and decode one chunk of at least ``size`` bytes' worth, appending to the
        unread text. Returns (not at EOF, the unread text started over at index 0)."""
        decoder = self._decoder
        fresh = self._used >= len(self._decoded)
        track = bool(self._raw._seekable)
        dec_buffer, dec_flags = decoder.getstate() if fresh and track else (b"", 0)
        data = await self._buffer._read1(max(size, self._CHUNK_SIZE))
        # From here on no await: the decoder state and our bookkeeping change together.
        eof = not data
        text = decoder.decode(data, eof)
        if fresh:
            self._decoded = text
            self._used = 0
            self._snapshot = (dec_flags, dec_buffer + data) if track else None
        else:
            self._decoded += text
            snapshot = self._snapshot
            if snapshot is not None:
                self._snapshot = (snapshot[0], snapshot[1] + data)
        snapshot = self._snapshot
        if snapshot is not None and self._decoded:
            self._b2c = len(snapshot[1]) / len(self._decoded)
        return not eof, fresh

    def _find_line_end(self, text: str, start: int) -> int:
        """Index just past the first line ending at or after ``start``, or -1."""
        if self._readtranslate:
            i = text.find("\n", start)
            return -1 if i < 0 else i + 1
        if self._readuniversal:
            m = _ANY_NEWLINE.search(text, start)
            return -1 if m is None else m.end()
        nl = self._readnl
        assert nl is not None
        i = text.find(nl, start)
        return -1 if i < 0 else i + len(nl)

    async def _readline(self, limit: int) -> str:
        self._check_readable()
        await self._buffer._prepare_read()
        did_io = False
        start = scan = self._used
        eof = False
        while True:
            text = self._decoded
            end = self._find_line_end(text, scan)
            if end >= 0:
                break
            if eof or (0 <= limit <= len(text) - start):
                end = len(text)
                break
            # '\r\n' may straddle two chunks when it is the only line ending.
            scan = max(start, len(text) - 1) if self._readnl == "\r\n" else len(text)
            more, fresh = await self._read_chunk(max(len(text) - start, self._CHUNK_SIZE))
            did_io = True
            eof = not more
            if fresh:
                start = scan = 0
        if limit >= 0:
            end = min(end, start + limit)
        if not did_io:
            await _checkpoint()
        self._used = end
        return text[start:end]

    async def _read(self, size: int) -> str:
        decoder = self._check_readable()
        await self._buffer._prepare_read()
        if size < 0:
            data = await self._buffer._readall()
            text: str = self._decoded[self._used :] + decoder.decode(data, True)
            self._reset_read_state()
            return text
        did_io = False
        more = True
        while more and len(self._decoded) - self._used < size:
            more, _ = await self._read_chunk(size - (len(self._decoded) - self._used))
            did_io = True
        if not did_io:
            await _checkpoint()
        start = self._used
        end = min(start + size, len(self._decoded))
        self._used = end
        return self._decoded[start:end]

    async def _write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        encoder = self._encoder
        if encoder is None:
            raise UnsupportedOperation("not writable")
        # Cancel point before the encoder (which may emit a BOM once) sees anything.
        await _checkpoint()
        length = len(text)
        haslf = (self._writetranslate or self._line_buffering) and "\n" in text
        if haslf and self._writetranslate and self._writenl != "\n":
            text = text.replace("\n", self._writenl)
        data = encoder.encode(text)
        # Like the stdlib: writing discards decoded read-ahead and resets the decoder
        # (``newlines`` starts over too).
        self._reset_read_state()
        if self._decoder is not None:
            self._decoder.reset()
        buffer = self._buffer
        await buffer._write_accepted(memoryview(data))
        if self._line_buffering and (haslf or "\r" in text):
            with CancelScope(shield=True):
                await buffer._flush_writes()
        return length

    def _tell_cookie(self) -> int:
        """The tell() cookie for the current position (writes already flushed)."""
        position = self._buffer._tell()
        decoder = self._decoder
        snapshot = self._snapshot
        if decoder is None or snapshot is None:
            return position
        dec_flags, next_input = snapshot
        position -= len(next_input)
        skip = self._used
        if skip == 0:
            return _pack_cookie(position, dec_flags)
        saved = decoder.getstate()
        try:
            if skip == len(self._decoded) and not saved[0]:
                # Everything decoded so far was returned and the decoder holds no bytes.
                return _pack_cookie(position + len(next_input), saved[1])
            # Phase 1: guess how many bytes the returned characters took (from the ratio
            # seen so far) and back off until the guess lands on a boundary where the
            # decoder holds no partial input.
            start_pos, start_flags = position, dec_flags
            skip_bytes = int(self._b2c * skip)
            step = 1
            while skip_bytes > 0:
                decoder.setstate((b"", dec_flags))
                n = len(decoder.decode(next_input[:skip_bytes]))
                if n <= skip:
                    pending, flags = decoder.getstate()
                    if not pending:
                        start_pos += skip_bytes
                        start_flags = flags
                        skip -= n
                        break
                    skip_bytes -= len(pending)
                    step = 1
                else:
                    skip_bytes -= step
                    step *= 2
            else:
                skip_bytes = 0
                decoder.setstate((b"", dec_flags))
            if skip == 0:
                return _pack_cookie(start_pos, start_flags)
            # Phase 2: feed one byte at a time, remembering the last clean boundary.
            fed = 0
            produced = 0
            need_eof = False
            for i in range(skip_bytes, len(next_input)):
                fed += 1
                produced += len(decoder.decode(next_input[i : i + 1]))
                pending, flags = decoder.getstate()
                if not pending and produced <= skip:
                    start_pos += fed
                    start_flags = flags
                    skip -= produced
                    fed = produced = 0
                if produced >= skip:
                    break
            else:
                produced += len(decoder.decode(b"", True))
                need_eof = True
                if produced < skip:
                    raise OSError("can't reconstruct logical file position")
            return _pack_cookie(start_pos, start_flags, fed, need_eof, skip)
        finally:
            decoder.setstate(saved)

    async def _seek_cookie(self, cookie: int) -> int:
        if cookie < 0:
            raise ValueError(f"negative seek position {cookie!r}")
        buffer = self._buffer
        await buffer._flush_writes()
        start_pos, dec_flags, bytes_to_feed, need_eof, skip = _unpack_cookie(cookie)
        # The rest can't be half done: shielded (it is at most one short read).
        with CancelScope(shield=True):
            await self._buffer_seek(start_pos, os.SEEK_SET)
            self._reset_read_state()
            decoder = self._decoder
            if decoder is not None:
                if cookie == 0:
                    decoder.reset()
                else:
                    decoder.setstate((b"", dec_flags))
                    self._snapshot = (dec_flags, b"")
                if skip:
                    data = await buffer._read(bytes_to_feed)
                    text = decoder.decode(data, need_eof)
                    if len(text) < skip:
                        raise OSError("can't restore logical file position")
                    self._decoded = text
                    self._used = skip
                    self._snapshot = (dec_flags, data)
        encoder = self._encoder
        if encoder is not None:
            if cookie == 0:
                encoder.reset()
            else:
                encoder.setstate(0)
        return cookie

    async def _buffer_seek(self, offset: int, whence: int) -> int:
        buffer = self._buffer
        await buffer._flush_writes()
        buffer._drop_read_ahead()
        return await self._raw._seek(offset, whence)

    async def _flush_for_close(self) -> None:
        await self._buffer._flush_writes()

    def _has_unflushed(self) -> bool:
        return self._buffer._has_unflushed()

    def _has_buffered(self) -> bool:
        return self._buffer._has_buffered()

    async def _locked_flush(self) -> None:
        await self._buffer._locked_flush()

    @exclusive
    async def _locked_sync(self) -> None:
        buffer = self._buffer
        await buffer._flush_writes()
        if buffer._rpos < len(buffer._rbuf) or self._decoded:
            # The decoded read-ahead may be stale too: restart decoding at the position.
            cookie = self._tell_cookie()
            await self._seek_cookie(cookie)

    # --- public API ---

    @exclusive
    async def read(self, size: int | None = -1) -> str:
        """Read ``size`` characters (fewer only at end of file), or all the rest."""
        return await self._read(size_arg(size))

    @exclusive
    async def readline(self, size: int | None = -1) -> str:
        """Read one line including its line ending (at most ``size`` characters); ``""`` at
        end of file."""
        return await self._readline(size_arg(size))

    async def readlines(self, hint: int | None = -1) -> list[str]:
        """Read lines until end of file, or until they total more than ``hint`` characters."""
        return await readlines_of(self, hint)

    @exclusive
    async def write(self, text: str) -> int:
        """Encode and buffer ``text``; returns ``len(text)``. With line buffering, a write
        that contains a line ending is flushed."""
        return await self._write(text)

    async def writelines(self, lines: Iterable[str]) -> None:
        """Write each string of ``lines`` (no newlines are added)."""
        for line in lines:
            await self.write(line)

    @exclusive
    async def flush(self) -> None:
        """Write out buffered data."""
        buffer = self._buffer
        if buffer._wbuf:
            await buffer._flush_writes()
        else:
            await _checkpoint()

    @exclusive
    async def tell(self) -> int:
        """An opaque position cookie for :meth:`seek` (see the class docstring)."""
        self._check_seekable()
        if self._buffer._wbuf:
            await self._buffer._flush_writes()
        else:
            await _checkpoint()
        return self._tell_cookie()

    @exclusive
    async def seek(self, cookie: int, whence: int = os.SEEK_SET) -> int:
        """Go to a position: ``seek(cookie)`` with a cookie from :meth:`tell` (or 0),
        ``seek(0, 1)`` (stay), ``seek(0, 2)`` (end of file). Returns the new cookie."""
        self._check_seekable()
        cookie = operator.index(cookie)
        if whence == os.SEEK_CUR:
            if cookie != 0:
                raise UnsupportedOperation("can't do nonzero cur-relative seeks")
            await self._buffer._flush_writes()
            cookie = self._tell_cookie()
            whence = os.SEEK_SET
        elif whence == os.SEEK_END:
            if cookie != 0:
                raise UnsupportedOperation("can't do nonzero end-relative seeks")
            position = await self._buffer_seek(0, os.SEEK_END)
            self._reset_read_state()
            if self._decoder is not None:
                self._decoder.reset()
            encoder = self._encoder
            if encoder is not None:
                if position:
                    encoder.setstate(0)
                else:
                    encoder.reset()
            return position
        if whence != os.SEEK_SET:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        return await self._seek_cookie(cookie)

    @exclusive
    async def truncate(self, size: int | None = None) -> int:
        """Flush, then resize the underlying file to ``size`` bytes (default: the current
        position). The position doesn't move."""
        buffer = self._buffer
        buffer._check_writable("truncate")
        await buffer._flush_writes()
        if size is None:
            # The documented behaviour (and _pyio's): the text position. CPython's C
            # TextIOWrapper truncates at the end of its read-ahead instead.
            size = self._tell_cookie()
        buffer._drop_read_ahead()
        return await self._raw._truncate(size)

    async def __anext__(self) -> str:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line
