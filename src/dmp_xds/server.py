"""Running the WSGI application under gunicorn (sync workers, see research notes: prefork gives
real parallelism for lxml and Python work; a buffering proxy belongs in front in production)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from .config import Settings


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Called in each worker after fork: every worker gets its own engine and pool.
        from .app import create_app

        return create_app(self.settings)


def run(settings: Settings) -> None:
    options = {
        "bind": settings.listen,
        "workers": settings.workers,
        "worker_class": "sync",
        "timeout": settings.request_timeout_s,
        "graceful_timeout": 30,
        "max_requests": 5000,
        "max_requests_jitter": 500,
        "accesslog": None,
        "logger_class": "gunicorn.glogging.Logger",
        "proc_name": "dmp-xds",
    }
    _Gunicorn(settings, options).run()
