"""``encode_hostname``: the bytes a hostname is looked up (and sent for SNI) as.

Kept free of other nursery_io imports so that both the socket layer and ``lowlevel`` can
import it.
"""

from __future__ import annotations

__all__ = ["encode_hostname"]


def encode_hostname(hostname: str) -> bytes:
    """Encode ``hostname`` the way name lookups and TLS (SNI, certificate checks) see it.

    ASCII names, which include every numeric address, are used as they are. Other names
    are converted with IDNA 2008 and the UTS #46 mapping (so capitals are lowered) when
    the ``idna`` package is installed, as Trio does. Without it, Python's built-in codec is
    used, which implements the older IDNA 2003 and spells a few names differently (``ß``
    becomes ``ss``, for one). Invalid names raise :exc:`UnicodeError`.
    """
    try:
        return hostname.encode("ascii")
    except UnicodeEncodeError:
        pass
    try:
        import idna  # optional, and only needed for non-ASCII names
    except ImportError:
        return hostname.encode("idna")
    return idna.encode(hostname, uts46=True)  # type: ignore[no-any-return,unused-ignore]
