"""Verifies one event delivery with the Standard Webhooks reference library, as a subscriber
would: `verify_webhook.py SECRET HEADERS_JSON BODY_FILE` exits 0 and prints the event's type
when the signature holds, and exits 1 naming the failure otherwise (tests/crm.rs runs it)."""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> int:
    secret, headers_file, body_file = sys.argv[1:4]
    with open(headers_file, encoding="utf-8") as f:
        headers = json.load(f)
    with open(body_file, "rb") as f:
        body = f.read()
    try:
        event = Webhook(secret).verify(body, headers)
    except WebhookVerificationError as e:
        print(f"refused: {e}")
        return 1
    print(event["type"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
