"""Side by side with Trio: the same code run under ``trio`` and ``nursery_io``, compared."""
