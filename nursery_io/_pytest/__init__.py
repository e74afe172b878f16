"""The pytest plugin's machinery; the plugin module pytest loads is ``nursery_io.pytest_plugin``."""
