"""Verifies webhook requests with the independent `standardwebhooks` reference library.

Reads JSON from stdin: {"secrets": ["whsec_..."], "requests": [{"headers": {...}, "body": "..."}]}
and prints, for each request and secret, whether Webhook(secret).verify accepts it:
{"results": [[true, false], ...]}.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    job = json.load(sys.stdin)
    results = []
    for request in job["requests"]:
        row = []
        for secret in job["secrets"]:
            try:
                Webhook(secret).verify(request["body"], request["headers"])
                row.append(True)
            except WebhookVerificationError:
                row.append(False)
        results.append(row)
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
