"""nursery_io as an anyio backend: ``anyio.run(main, backend="nursery_io")``.

anyio has no plugin API for backends (no entry point either); it imports
``anyio._backends._<name>`` and reads its ``backend_class``. :func:`install` adds a
meta-path finder (see :mod:`._finder`) that answers exactly that one module name, so anyio's
own loader finds :class:`~nursery_io.anyio_backend._backend.NurseryIOBackend` without
anything being patched. The package root calls :func:`install` (one explicit call in
``nursery_io/__init__.py``), so ``import nursery_io`` is enough. Nothing here imports
anyio until anyio asks for the backend.

anyio's ``AsyncBackend`` interface is private and changes between minor releases, so the
backend supports exactly one anyio minor version (see ``SUPPORTED_ANYIO``).

Pytest: mark tests with ``@pytest.mark.anyio`` and return ``"nursery_io"`` from an
``anyio_backend`` fixture; anyio's plugin then runs fixtures and tests in one long-lived
nursery_io run (:class:`~nursery_io.anyio_backend._testing.TestRunner`).
"""

from ._finder import BACKEND_MODULE, BACKEND_NAME, install

#: The anyio versions this backend implements the ``AsyncBackend`` interface of.
SUPPORTED_ANYIO = ">=4.16,<4.17"

__all__ = ["BACKEND_MODULE", "BACKEND_NAME", "SUPPORTED_ANYIO", "install"]
