"""The dashboard's application factory.

``create_app(core_or_settings)`` takes either a built ``core.app.Core`` (tests, the one-command
shop, which share one core between bot, scheduler and dashboard) or ``Settings`` (a separate
dashboard process, which builds its own core and closes it at shutdown).

Middleware order, outermost first: allowed hosts → security headers → request limits (size,
field count, NUL) → sessions → CSRF → authentication; then the role guard on every route.
Errors from core map to 4xx pages or JSON, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, cast

from litestar import Litestar, Request, Response, Router
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.logging.config import LoggingConfig
from litestar.middleware.base import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.stores.base import Store
from litestar.stores.registry import StoreRegistry
from litestar.template.config import TemplateConfig
from litestar.types import Middleware

from admin import api, health, metrics, webhooks
from admin.auth import PUBLIC_PATHS, StaffAuthMiddleware, is_machine_path, role_guard
from admin.context import AdminContext
from admin.controllers import (
    audit,
    broadcasts,
    crypto,
    ledger,
    login,
    orders,
    overview,
    prices,
    promo,
    providers,
    reconciliation,
    staff,
    tickets,
    users,
)
from admin.csrf import csrf_middleware
from admin.forms import FormError, error_message, error_status
from admin.queries import BadQuery
from admin.render import install_filters
from admin.request_limits import RequestLimitsMiddleware
from admin.secret import load_or_create_secret
from admin.security_headers import SecurityHeadersMiddleware
from admin.sessions import session_config, session_store
from admin.throttle import LoginThrottle, ThrottlePolicy
from core.clock import Clock
from core.config import Settings
from core.errors import ShopError
from core.hosts import allowed_hosts
from core.staff import StaffAccounts

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


def create_app(
    core_or_settings: Any,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    throttle_policy: ThrottlePolicy | None = None,
    staff_accounts: StaffAccounts | None = None,
    secret_key: str | None = None,
    secure_cookies: bool = False,
    reconcile: Any | None = None,
    debug: bool = False,
) -> Litestar:
    owns_core = isinstance(core_or_settings, Settings)
    if owns_core:
        from core.app import build_core

        core = build_core(core_or_settings, clock=clock)
    else:
        core = core_or_settings
    settings: Settings = core.settings
    clock = clock or core.clock
    secret = secret_key or load_or_create_secret(settings.ADMIN_SECRET_KEY, settings.data_dir)
    sessions = store or session_store(settings.REDIS_URL)
    ctx = AdminContext(
        core=core,
        staff=staff_accounts or StaffAccounts(core.db, clock),
        throttle=LoginThrottle(sessions, clock, throttle_policy),
        currency=settings.SHOP_CURRENCY,
        reconcile=reconcile if reconcile is not None else _find_reconcile(),
        nonces=sessions,
        session_max_age=settings.ADMIN_SESSION_MAX_AGE_SECONDS,
    )

    def engine_callback(engine: JinjaTemplateEngine) -> None:
        env = engine.engine
        install_filters(env, ctx.currency)
        env.trim_blocks = True
        env.lstrip_blocks = True

    async def on_shutdown() -> None:
        if owns_core:
            await core.aclose()

    app = Litestar(
        route_handlers=[
            Router(
                path="/",
                include_in_schema=False,
                route_handlers=[
                    login.login_form,
                    login.login,
                    login.logout,
                    overview.overview_page,
                    *users.HANDLERS,
                    *orders.HANDLERS,
                    *tickets.HANDLERS,
                    *ledger.HANDLERS,
                    *providers.HANDLERS,
                    *reconciliation.HANDLERS,
                    *audit.HANDLERS,
                    *crypto.HANDLERS,
                    *staff.HANDLERS,
                    *promo.HANDLERS,
                    *broadcasts.HANDLERS,
                    *prices.HANDLERS,
                ],
            ),
            *api.HANDLERS,
            metrics.metrics,
            health.healthz,
            health.readyz,
            webhooks.textverified,
            webhooks.cryptopay,
            create_static_files_router(
                path="/static",
                directories=[HERE / "static"],
                opt={"public": True, "exclude_from_auth": True},
                include_in_schema=False,
            ),
        ],
        middleware=[
            # DNS rebinding: 421 for unknown Host names. core types ASGI messages as plain
            # mappings to stay framework-free; Litestar's typed dicts are those mappings at runtime.
            cast(Middleware, allowed_hosts(settings.ALLOWED_HOSTS)),
            SecurityHeadersMiddleware,
            RequestLimitsMiddleware,
            session_config(secure=secure_cookies).middleware,
            csrf_middleware(secret, secure=secure_cookies),
            DefineMiddleware(StaffAuthMiddleware, exclude=PUBLIC_PATHS),
        ],
        guards=[role_guard],
        stores=StoreRegistry(stores={"sessions": sessions}),
        template_config=TemplateConfig(
            directory=HERE / "templates", engine=JinjaTemplateEngine, engine_callback=engine_callback
        ),
        openapi_config=OpenAPIConfig(
            title="numbershop staff API",
            version="1.0.0",
            path="/api/schema",
            render_plugins=[SwaggerRenderPlugin() if settings.ADMIN_API_DOCS else JsonRenderPlugin()],
            openapi_router=Router(path="/api/schema", route_handlers=[], opt={"role": "viewer"}),
        ),
        exception_handlers={
            NotAuthorizedException: _not_authorized,
            PermissionDeniedException: _forbidden,
            FormError: _form_error,
            BadQuery: _bad_query,
            ShopError: _shop_error,
            ValidationException: _validation_error,
            HTTPException: _http_error,
        },
        on_shutdown=[on_shutdown],
        # Unexpected errors are logged with their traceback (never shown to the browser);
        # the process's root logger belongs to the command line, so it is left alone.
        logging_config=LoggingConfig(
            configure_root_logger=False,
            log_exceptions="always",
            disable_existing_loggers=False,
            exception_logging_handler=_log_unexpected,
        ),
        debug=debug,
    )
    app.state.admin = ctx
    return app


def _log_unexpected(logger: Any, scope: Any, tb: list[str]) -> None:
    """Log the traceback of an unexpected error; expected refusals (4xx) are not errors."""
    exc = sys.exc_info()[1]
    if isinstance(exc, (ShopError, FormError, BadQuery)):
        return
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        return
    logger.error(
        "unexpected error on %s %s:\n%s", scope.get("method", ""), scope.get("path", ""), "".join(tb)
    )


def _find_reconcile() -> Any | None:
    """The reconciliation entry point, if core has one yet (written by the scheduler work)."""
    try:
        from core import reconcile
    except ImportError:
        return None
    return getattr(reconcile, "run_reconciliation", None)


def _wants_json(request: Request[Any, Any, Any]) -> bool:
    return is_machine_path(request.url.path) or request.url.path.startswith("/webhooks/")


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response({"status_code": status, "detail": detail}, status_code=status, headers=headers)


def _text_page(request: Request[Any, Any, Any], status: int, message: str) -> Response[Any]:
    from admin.render import page

    try:
        return page(request, "error.html", status=status, error=message)
    except Exception:
        return Response(message, status_code=status, media_type="text/plain")


def _not_authorized(request: Request[Any, Any, Any], exc: NotAuthorizedException) -> Response[Any]:
    if _wants_json(request):
        return _json(401, exc.detail or "authentication required", {"WWW-Authenticate": "Bearer"})
    from urllib.parse import quote

    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Response(b"", status_code=303, headers={"Location": f"/login?next={quote(target)}"})


def _forbidden(request: Request[Any, Any, Any], exc: PermissionDeniedException) -> Response[Any]:
    detail = exc.detail or "forbidden"
    if "CSRF" in detail:
        detail = "the form's security token is missing or stale; reload the page and try again"
    if _wants_json(request):
        return _json(403, detail)
    return _text_page(request, 403, detail)


def _form_error(request: Request[Any, Any, Any], exc: FormError) -> Response[Any]:
    if _wants_json(request):
        return _json(exc.status, exc.message)
    return _text_page(request, exc.status, exc.message)


def _bad_query(request: Request[Any, Any, Any], exc: BadQuery) -> Response[Any]:
    if _wants_json(request):
        return _json(400, str(exc))
    return _text_page(request, 400, str(exc))


def _shop_error(request: Request[Any, Any, Any], exc: ShopError) -> Response[Any]:
    ctx: AdminContext = request.app.state.admin
    status, message = error_status(exc), error_message(exc, ctx.currency)
    if _wants_json(request):
        return _json(status, message)
    return _text_page(request, status, message)


def _validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    if _wants_json(request):
        return Response({"status_code": 400, "detail": exc.detail, "extra": exc.extra}, status_code=400)
    return _text_page(request, 400, exc.detail)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if _wants_json(request) or exc.status_code >= 500:
        return _json(exc.status_code, exc.detail)
    return _text_page(request, exc.status_code, exc.detail)
