"""python-echo: an example Plugboard channel plugin written in Python.

It speaks for a simple JSON provider: the provider POSTs {"id", "from", "to", "text"} to the
webhook with the shared secret in an `X-Token` header, and replies are sent as
POST {api_base}/messages with a Bearer key. Built with componentize-py against the `channel`
world of wit/plugin.wit (see README.md beside this file).

Every import is at module top: componentize-py snapshots the interpreter after importing this
module, and the host grants no filesystem, so a module first imported inside a call cannot be
found.
"""

import hmac
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

DEFAULT_API_BASE = "https://api.example.com"
"""Where replies go when the `api_base` setting is empty or absent."""

JSON_HEADERS = [("content-type", "application/json")]
"""The headers of every JSON request and answer this plugin builds."""

def setting(settings, name):
    """The value of setting `name`, or "" when the operator left it out."""
    for key, value in settings:
        if key == name:
            return value
    return ""


def header(headers, name):
    """The first value of header `name` (compared case-insensitively), or None."""
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def text_field(doc, name):
    """Field `name` of the webhook document, which must be a non-empty string."""
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise Err(types.WebhookError_BadRequest(f"field `{name}` must be a non-empty string"))
    return value


def retry_after(headers):
    """The seconds a `Retry-After` header asks to wait, when it holds a plain number."""
    value = (header(headers, "Retry-After") or "").strip()
    if value.isdigit() and int(value) <= 0xFFFFFFFF:
        return int(value)
    return None


def send_error(resp):
    """The send error for a non-2xx provider answer: what the host should do about it."""
    status = resp.status
    detail = f"provider answered {status}: {resp.body[:200].decode('utf-8', 'replace')}"
    if status in (401, 403):
        return types.SendError_Unauthorized(detail)
    if status == 429:
        return types.SendError_RateLimited(retry_after(resp.headers))
    if 500 <= status <= 599:
        return types.SendError_Unavailable(detail)
    return types.SendError_Invalid(detail)


class Messaging(exports.Messaging):
    """The `messaging` export: what componentize-py calls for each function of the contract."""

    def describe(self) -> types.Manifest:
        """The manifest: name, kind, settings, the one API host replies go to, and SMS rules."""
        return types.Manifest(
            name="python-echo",
            version="0.1.0",
            kind="sms",
            settings=[
                types.SettingSpec("token", True, True, "Shared secret the provider sends in X-Token"),
                types.SettingSpec("api_key", False, True, "Bearer key for the provider's send API"),
                types.SettingSpec("api_base", False, False, f"API base URL (default {DEFAULT_API_BASE})"),
            ],
            api_hosts=["api.example.com"],
            capabilities=types.Capabilities(0),
            rules=types.ChannelRules(
                address=types.AddressForm_E164(""),
                max_text=1600,
                segments=True,
                opt_out_keywords=True,
                reply_window_hours=None,
            ),
        )

    def check_settings(self, settings) -> None:
        """Every combination of settings can work, so nothing is refused here."""
        return None

    def handle_webhook(self, req: types.HttpRequest, settings) -> types.WebhookOutcome:
        """Checks `X-Token` in constant time, then turns the JSON body into one message event."""
        token = setting(settings, "token")
        if not token:
            raise Err(types.WebhookError_Misconfigured("setting `token` is empty"))
        given = header(req.headers, "X-Token")
        if given is None:
            raise Err(types.WebhookError_Unauthorized("no X-Token header"))
        if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
            raise Err(types.WebhookError_Unauthorized("X-Token does not match the token setting"))
        if req.method != "POST":
            raise Err(types.WebhookError_BadRequest(f"method {req.method} is not POST"))
        try:
            doc = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise Err(types.WebhookError_BadRequest(f"body is not JSON: {error}"))
        if not isinstance(doc, dict):
            raise Err(types.WebhookError_BadRequest("body is not a JSON object"))
        text = doc.get("text")
        if text is not None and not isinstance(text, str):
            raise Err(types.WebhookError_BadRequest("field `text` must be a string"))
        message = types.InboundMessage(
            provider_id=text_field(doc, "id"),
            from_=text_field(doc, "from"),
            to=text_field(doc, "to"),
            text=text,
            attachments=[],
            contact_name=None,
            thread=[],
        )
        return types.WebhookOutcome(
            events=[types.Event_Message(message)],
            response=types.HttpResponse(200, list(JSON_HEADERS), b"{}"),
        )

    def prepare_send(self, msg: types.OutboundMessage, settings) -> types.HttpRequest:
        """POST {api_base}/messages with the Bearer key and {"to", "text"}."""
        api_key = setting(settings, "api_key")
        if not api_key:
            raise Err(types.SendError_Misconfigured("setting `api_key` is empty"))
        base = setting(settings, "api_base").rstrip("/") or DEFAULT_API_BASE
        body = json.dumps({"to": msg.to, "text": msg.text or ""}).encode("utf-8")
        headers = [("authorization", f"Bearer {api_key}")] + JSON_HEADERS
        return types.HttpRequest("POST", f"{base}/messages", headers, body)

    def read_send_response(self, resp: types.HttpResponse, settings) -> str:
        """The provider's id from {"id": ...} on 2xx, else the error the status calls for."""
        if not 200 <= resp.status <= 299:
            raise Err(send_error(resp))
        try:
            doc = json.loads(resp.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise Err(types.SendError_Invalid(f"answer is not JSON: {error}"))
        message_id = doc.get("id") if isinstance(doc, dict) else None
        if not isinstance(message_id, str) or not message_id:
            raise Err(types.SendError_Invalid("answer has no `id`"))
        return message_id

    def prepare_token(self, settings):
        """None: every request is authenticated with the `api_key` setting alone."""
        return None

    def read_token_response(self, resp: types.HttpResponse, settings) -> types.TokenGrant:
        """Never called, since `prepare_token` asks for no token."""
        raise Err(types.SendError_Misconfigured("python-echo uses no access token"))

    def prepare_check(self, settings):
        """None: the provider offers no harmless call to check credentials with."""
        return None

    def read_check_response(self, resp: types.HttpResponse, settings) -> None:
        """Never called, since `prepare_check` asks for nothing; any answer is fine."""
        return None
