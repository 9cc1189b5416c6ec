"""The app's door: a token on every request, no cross-site writes, a strict CSP on every reply.

- **Token**: every request carries the random token the command printed, in the URL
  (`?token=…`, first visit) or in the cookie that visit sets (HttpOnly, SameSite=Strict, named
  after the port so two servers on one host keep their own). A visit with the token in the URL
  is redirected to the same address without it, so it stays out of the history and the page.
- **Cross-site requests**: a request that changes anything must be a JSON POST carrying the
  page's CSRF token in `X-CSRF-Token`, and its `Origin`, when the browser sends one, must be
  the app's own. A form on another site (even another port of 127.0.0.1, which is the same
  *site* and so gets the cookie) can set neither the header nor the JSON type.
- **Host**: only the host names the server was started for are answered (DNS rebinding);
  `*` (a server on every interface) answers any.
- **Every reply**: `Content-Security-Policy` allowing the app's own origin only and no inline
  script or style, `nosniff`, no referrer, no framing, no caching.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from urllib.parse import urlencode

from starlette.datastructures import URL, Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
SAFE_METHODS = {"GET", "HEAD"}


class Guard:
    """ASGI middleware enforcing the rules of the module docstring."""

    def __init__(
        self, app: ASGIApp, *, token: str, csrf: str, cookie: str, hosts: Iterable[str]
    ) -> None:
        self.app = app
        self.token = token
        self.csrf = csrf
        self.cookie = cookie
        self.hosts = {h.lower() for h in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        refusal = self.refuse(Request(scope))
        if refusal is not None:
            await refusal(scope, receive, send_secured)
            return
        await self.app(scope, receive, send_secured)

    def refuse(self, request: Request) -> Response | None:
        """The response refusing ``request``, or a redirect setting the cookie, or None."""
        host = request.headers.get("host", "").rsplit(":", 1)[0].strip("[]").lower()
        if "*" not in self.hosts and host not in self.hosts:
            return PlainTextResponse("refused: unknown host", status_code=400)
        in_url = request.query_params.get("token", "")
        given = in_url or request.cookies.get(self.cookie, "")
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return PlainTextResponse(
                "refused: open the address with the token that `simulate annotate` printed",
                status_code=403,
            )
        if request.method not in SAFE_METHODS:
            return self.refuse_write(request)
        if in_url:
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = URL(path=request.url.path, query=urlencode(rest))
            response = RedirectResponse(str(target), status_code=303)
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict")
            return response
        return None

    def refuse_write(self, request: Request) -> Response | None:
        """Refuse a state-changing request that could come from another site."""
        headers: Headers = request.headers
        origin = headers.get("origin")
        own = f"{request.url.scheme}://{headers.get('host', '')}"
        if origin is not None and origin != own:
            return PlainTextResponse("refused: cross-site request", status_code=403)
        csrf = headers.get("x-csrf-token", "")
        if not secrets.compare_digest(csrf.encode(), self.csrf.encode()):
            return PlainTextResponse("refused: missing or wrong X-CSRF-Token", status_code=403)
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return PlainTextResponse("refused: send JSON", status_code=415)
        return None
