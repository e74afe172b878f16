"""Text files: encodings, newline settings, errors handlers, tell/seek -- vs io.TextIOWrapper."""

from __future__ import annotations

import _pyio
import io
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import nursery_io

ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]
NEWLINES = [None, "", "\n", "\r", "\r\n"]


def _sample_text(seed: int) -> str:
    """Mixed line endings, non-ASCII characters, short and long lines; several 8 KiB chunks,
    so multi-byte characters and "\\r\\n" pairs straddle chunk boundaries somewhere."""
    rng = random.Random(seed)
    words = ["é", "ü", "ß", "naïve", "abc", "x" * 50, "ÿ", "", "tab\t", "Ç"]
    endings = ["\n", "\r\n", "\r", "\n\n", "\r\r\n"]
    parts = []
    while sum(map(len, parts)) < 30_000:
        line = " ".join(rng.choice(words) for _ in range(rng.randrange(0, 40)))
        if rng.random() < 0.02:
            line += "y" * 9000
        parts.append(line + rng.choice(endings))
    parts.append("no newline at the end é")
    return "".join(parts)


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", fn())
    except Exception as exc:
        return ("error", type(exc))


async def _aoutcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", await fn())
    except Exception as exc:
        return ("error", type(exc))


@pytest.fixture(scope="module", params=ENCODINGS)
def encoded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    encoding: str = request.param
    path = tmp_path_factory.mktemp("text") / f"{encoding}.txt"
    path.write_bytes(_sample_text(1).encode(encoding))
    return path, encoding


@pytest.mark.parametrize("newline", NEWLINES)
async def test_read_all_lines_and_newlines(encoded: tuple[Path, str], newline: str | None) -> None:
    path, encoding = encoded
    with open(path, encoding=encoding, newline=newline) as std:
        expected_all = std.read()
        expected_newlines = std.newlines
    with open(path, encoding=encoding, newline=newline) as std:
        expected_lines = list(std)
    async with await nursery_io.open_file(path, encoding=encoding, newline=newline) as f:
        assert await f.read() == expected_all
        assert f.newlines == expected_newlines
        assert await f.read() == ""
        await f.seek(0)
        assert [line async for line in f] == expected_lines
        await f.seek(0)
        assert await f.readlines() == expected_lines


@pytest.mark.parametrize("newline", NEWLINES)
async def test_read_sizes_and_readline_limits(
    encoded: tuple[Path, str], newline: str | None
) -> None:
    path, encoding = encoded
    rng = random.Random(f"{encoding}{newline!r}")
    calls: list[tuple[str, int]] = []
    for _ in range(400):
        calls.append((rng.choice(["read", "readline"]), rng.choice([0, 1, 2, 7, 100, 5000, -1])))
    calls = [(name, n) for name, n in calls if not (name == "read" and n == -1)]
    with open(path, encoding=encoding, newline=newline) as std:
        expected = [getattr(std, name)(n) for name, n in calls]
    async with await nursery_io.open_file(path, encoding=encoding, newline=newline) as f:
        got = [await getattr(f, name)(n) for name, n in calls]
    assert got == expected


@pytest.mark.parametrize("newline", NEWLINES)
async def test_tell_seek_round_trips(encoded: tuple[Path, str], newline: str | None) -> None:
    path, encoding = encoded
    async with await nursery_io.open_file(path, encoding=encoding, newline=newline) as f:
        positions: list[tuple[int, str]] = []
        while True:
            cookie = await f.tell()
            line = await f.readline()
            positions.append((cookie, line))
            if not line:
                break
        end = await f.tell()
        assert await f.seek(0, 2) == end or encoding == "utf-16"
        rng = random.Random(0)
        for cookie, line in rng.sample(positions, min(60, len(positions))):
            assert await f.seek(cookie) == cookie
            assert await f.readline() == line
            assert await f.seek(0, 1) == await f.tell()
        # Cookies in the middle of a line (after read(n)) work too.
        await f.seek(0)
        middles: list[tuple[int, str]] = []
        for n in (1, 3, 10, 200, 7, 9000, 5):
            await f.read(n)
            middles.append((await f.tell(), await f.read(20)))
        for cookie, text in middles:
            await f.seek(cookie)
            assert await f.read(20) == text
        # Cookies that are plain byte offsets agree with the stdlib's.
        await f.seek(0)
        with open(path, encoding=encoding, newline=newline) as std:
            for _ in range(30):
                assert (await f.readline()) == std.readline()
                ours, theirs = await f.tell(), std.tell()
                if theirs < 1 << 64:
                    assert ours == theirs


async def test_seek_errors_match_stdlib(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text("hello\n")
    calls: list[tuple[Any, ...]] = [(1, 1), (1, 2), (-1,), (0, 3), (0, 1), (0, 2), (0,)]
    with open(path) as std:
        expected = [_outcome(lambda: std.seek(*args)) for args in calls]  # noqa: B023
    async with await nursery_io.open_file(path) as f:
        got = [await _aoutcome(lambda: f.seek(*args)) for args in calls]  # noqa: B023
    assert got == expected


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("newline", NEWLINES)
async def test_writes_match_stdlib(tmp_path: Path, encoding: str, newline: str | None) -> None:
    text = _sample_text(2)
    pieces = [text[i : i + 777] for i in range(0, len(text), 777)]
    std_path, ours_path = tmp_path / "std", tmp_path / "ours"
    with open(std_path, "w", encoding=encoding, newline=newline) as std:
        expected = [std.write(p) for p in pieces] + [std.tell()]
    async with await nursery_io.open_file(ours_path, "w", encoding=encoding, newline=newline) as f:
        got = [await f.write(p) for p in pieces] + [await f.tell()]
    assert got == expected
    assert ours_path.read_bytes() == std_path.read_bytes()
    # Appending adds no second BOM; "w+" then seek(0) rewrites from the start.
    for path, opener in ((std_path, "std"), (ours_path, "ours")):
        if opener == "std":
            with open(path, "a", encoding=encoding, newline=newline) as a:
                a.write("appended\n")
            with open(path, "r+", encoding=encoding, newline=newline) as rw:
                rw.read(5)
                rw.seek(0)
                rw.write("START")
        else:
            async with await nursery_io.open_file(
                path, "a", encoding=encoding, newline=newline
            ) as af:
                await af.write("appended\n")
            async with await nursery_io.open_file(
                path, "r+", encoding=encoding, newline=newline
            ) as rwf:
                await rwf.read(5)
                await rwf.seek(0)
                await rwf.write("START")
    assert ours_path.read_bytes() == std_path.read_bytes()


@pytest.mark.parametrize(
    "errors", ["strict", "replace", "ignore", "surrogateescape", "backslashreplace"]
)
async def test_decode_errors_handlers(tmp_path: Path, errors: str) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"ok\xff\xfe line\n" * 3000 + b"\xc3")  # ends in half a character
    with open(path, encoding="utf-8", errors=errors) as std:
        expected = _outcome(std.read)
    async with await nursery_io.open_file(path, encoding="utf-8", errors=errors) as f:
        got = await _aoutcome(f.read)
        assert f.errors == errors
    assert got == expected
    if errors != "strict":
        with open(path, encoding="utf-8", errors=errors) as std:
            expected_lines = list(std)
        async with await nursery_io.open_file(path, encoding="utf-8", errors=errors) as f:
            assert [line async for line in f] == expected_lines


@pytest.mark.parametrize("errors", ["strict", "replace", "xmlcharrefreplace", "ignore"])
async def test_encode_errors_handlers(tmp_path: Path, errors: str) -> None:
    text = "price: 5€ — ok\n"
    with open(tmp_path / "std", "w", encoding="latin-1", errors=errors) as std:
        expected = _outcome(lambda: std.write(text))
    async with await nursery_io.open_file(
        tmp_path / "ours", "w", encoding="latin-1", errors=errors
    ) as f:
        got = await _aoutcome(lambda: f.write(text))
    assert got == expected
    assert (tmp_path / "ours").read_bytes() == (tmp_path / "std").read_bytes()


async def test_default_encoding_and_write_type_errors(tmp_path: Path) -> None:
    path = tmp_path / "t"
    with open(path, "w") as std:
        expected = (std.encoding, _outcome(lambda: std.write(b"bytes")))  # type: ignore[arg-type]
    async with await nursery_io.open_file(path, "w") as f:
        assert (f.encoding, await _aoutcome(lambda: f.write(b"bytes"))) == expected  # type: ignore[arg-type]


async def test_line_buffering_flushes_each_line(tmp_path: Path) -> None:
    path = tmp_path / "t"
    async with await nursery_io.open_file(path, "w", buffering=1) as f:
        assert f.line_buffering
        await f.write("no newline yet")
        assert path.read_bytes() == b""
        await f.write(" - now\nand more")  # like the stdlib: the whole write is flushed
        assert path.read_bytes() == b"no newline yet - now\nand more"
    assert path.read_text() == "no newline yet - now\nand more"


async def test_mixed_reads_and_writes_on_update_mode(tmp_path: Path) -> None:
    # Reads, then seek back to a tell() cookie and overwrite: same bytes as the stdlib.
    for path in (tmp_path / "std", tmp_path / "ours"):
        path.write_text("line one\nline two\nline three\n", encoding="utf-16")
    with open(tmp_path / "std", "r+", encoding="utf-16") as std:
        std.readline()
        cookie = std.tell()
        std.readline()
        std.seek(cookie)
        std.write("LINE TWO")
        std.seek(0)
        expected = std.read()
    async with await nursery_io.open_file(tmp_path / "ours", "r+", encoding="utf-16") as f:
        await f.readline()
        cookie = await f.tell()
        await f.readline()
        await f.seek(cookie)
        await f.write("LINE TWO")
        await f.seek(0)
        assert await f.read() == expected
    assert (tmp_path / "ours").read_bytes() == (tmp_path / "std").read_bytes()


async def test_truncate_and_end_seek(tmp_path: Path) -> None:
    for path in (tmp_path / "std", tmp_path / "ours"):
        path.write_text("abc\ndef\nghi\n")
    # _pyio, not io: CPython's C TextIOWrapper.truncate() ignores the text position and
    # truncates at the end of its read-ahead (12 here), against its documentation.
    with _pyio.open(tmp_path / "std", "r+") as std:
        std.readline()
        expected = [std.truncate(), std.tell(), std.seek(0, 2), std.write("x"), std.tell()]
    async with await nursery_io.open_file(tmp_path / "ours", "r+") as f:
        await f.readline()
        got = [await f.truncate(), await f.tell(), await f.seek(0, 2)]
        got += [await f.write("x"), await f.tell()]
    assert got == expected
    assert (tmp_path / "ours").read_bytes() == (tmp_path / "std").read_bytes()


async def test_text_attributes_and_buffer(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_bytes("é\r\n".encode())
    async with await nursery_io.open_file(path, encoding="utf-8") as f:
        assert await f.buffer.read(2) == "é".encode()
        assert await f.read() == "\n"
        assert f.write_through is False
        assert f.encoding == "utf-8"
        assert "AsyncTextFile" in repr(f)
    assert "closed" in repr(f)
    with pytest.raises(io.UnsupportedOperation):
        async with await nursery_io.open_file(path, "w") as w:
            await w.read()


async def test_newlines_start_over_after_a_write(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_bytes(b"a\r\nb\n")
    async with await nursery_io.open_file(path, "r+") as f:
        await f.readline()
        assert f.newlines == ("\n", "\r\n")  # the read-ahead saw both kinds
        await f.seek(0, 2)
        await f.write("x")
        assert f.newlines is None  # as io.TextIOWrapper: the decoder was reset
