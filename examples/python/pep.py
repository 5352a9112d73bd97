"""ExecLayer from Python, standard library only: ask before acting, act only when allowed, report the outcome.

    npx execlayer serve --config examples/python/execlayer.yaml   # serves policy.yaml beside this file
    EXECLAYER_URL=http://127.0.0.1:8787 EXECLAYER_KEY=example-python-key python3 examples/python/pep.py

The same three steps work from any language (schema/decision-api.openapi.json describes the endpoints):
POST /v1/decide with the action, run it only on effect "allow", POST /v1/outcome with what happened.
Anything but a well-formed answer is a refusal: the action never runs unless the server said allow.
"""

import hashlib
import json
import os
import time
import urllib.error
import urllib.request

URL = os.environ.get("EXECLAYER_URL", "http://127.0.0.1:8787").rstrip("/")
KEY = os.environ.get("EXECLAYER_KEY", "")


def post(path, body):
    """POST JSON; (status, parsed body). Network errors raise."""
    request = urllib.request.Request(
        URL + path,
        data=json.dumps(body).encode("utf-8"),
        headers={"authorization": "Bearer " + KEY, "content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def digest(value):
    """SHA-256 of the canonical JSON (RFC 8785) of value, for strings, integers, booleans, null, lists
    and objects with ASCII keys, which is what this example reports."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Refused(Exception):
    pass


def guarded(tool, args, run):
    """Runs run(**args) only when ExecLayer allows tool with args; reports the outcome; returns the result."""
    try:
        status, decision = post("/v1/decide", {"tool": tool, "args": args})
    except OSError as error:
        raise Refused(f"the decision server is unreachable ({error}); not run") from error
    if status != 200 or decision.get("effect") != "allow":
        raise Refused(decision.get("reason") or decision.get("detail") or f"HTTP {status}")
    started = time.monotonic()
    report = {"decision": decision["id"], "ok": True}
    try:
        result = run(**args)
        report["resultDigest"] = digest(result)
        return result
    except Exception as error:
        report["ok"] = False
        report["error"] = str(error)[:2000]
        raise
    finally:
        report["durationMs"] = (time.monotonic() - started) * 1000
        status, answer = post("/v1/outcome", report)
        if status != 200:
            raise RuntimeError(f"outcome not recorded: {answer.get('detail')}")


def export_report(rows):
    return {"exported": rows, "format": "csv"}


if __name__ == "__main__":
    for rows in (10, 1000):
        try:
            result = guarded("reports.export", {"rows": rows}, export_report)
            print(f"allowed reports.export rows={rows}: {json.dumps(result, sort_keys=True)} (outcome recorded)")
        except Refused as refusal:
            print(f"refused reports.export rows={rows}: {refusal}")
