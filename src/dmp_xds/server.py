"""Running the WSGI application under gunicorn (sync workers, see research notes: prefork gives
real parallelism for lxml and Python work; a buffering proxy belongs in front in production)."""

from __future__ import annotations

import ssl
from typing import Any

from gunicorn.app.base import BaseApplication

from .config import Settings
from .ops import prepare_metrics_dir, worker_exited


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
    # Before gunicorn forks a worker, so that every worker shares the metrics files (ops.py).
    prepare_metrics_dir(settings.data_dir)
    options = {
        "bind": settings.listen,
        "workers": settings.workers,
        "worker_class": "sync",
        "timeout": settings.request_timeout_s,
        # SIGTERM: stop accepting, let in-flight requests finish for up to this long.
        "graceful_timeout": settings.graceful_timeout_s,
        "child_exit": worker_exited,
        "max_requests": 5000,
        "max_requests_jitter": 500,
        "accesslog": None,
        "logger_class": "gunicorn.glogging.Logger",
        "proc_name": "dmp-xds",
        **tls_options(settings),
    }
    _Gunicorn(settings, options).run()


def tls_options(settings: Settings) -> dict[str, Any]:
    """gunicorn options for our own TLS listener (``DMP_XDS_TLS_CERT``/``_KEY``).

    With ``DMP_XDS_TLS_CLIENT_CA`` the listener asks for a client certificate but does not
    require one (``CERT_OPTIONAL``): indirect-mode callers authenticate by their signed VIHF,
    direct-mode callers by their card certificate, which the security layer then validates
    against the trust store itself. TLS 1.2 at least, with PDT-INF-579's cipher suites for 1.2.
    """
    if settings.tls_cert is None and settings.tls_key is None:
        return {}
    if settings.tls_cert is None or settings.tls_key is None:
        raise ValueError("DMP_XDS_TLS_CERT and DMP_XDS_TLS_KEY go together")
    options: dict[str, Any] = {
        "certfile": str(settings.tls_cert),
        "keyfile": str(settings.tls_key),
        "ciphers": settings.tls_ciphers,
        "ssl_context": _tls12_or_later,
    }
    if settings.tls_client_ca is not None:
        options["ca_certs"] = str(settings.tls_client_ca)
        options["cert_reqs"] = ssl.CERT_OPTIONAL
    return options


def _tls12_or_later(_config: Any, default_ssl_context_factory: Any) -> ssl.SSLContext:
    context = default_ssl_context_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
