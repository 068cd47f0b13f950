#!/usr/bin/env python3
"""llm_server.py - a local stand-in for three LLM providers, for tests/unit/test_llm.c.

It speaks the documented request and response shapes of
  OpenAI Chat Completions  POST /v1/chat/completions              (Authorization: Bearer KEY)
  Gemini generateContent   POST /v1beta/models/MODEL:generateContent (x-goog-api-key: KEY)
  Anthropic Messages       POST /v1/messages                      (x-api-key: KEY,
                                                                   anthropic-version: 2023-06-01)
and checks every request strictly: the auth header and only that header carries the key, the key
appears nowhere else (URL, body), the JSON body has exactly the documented fields with the right
types. A wrong request gets HTTP 400 with the reason in the provider's error shape, so the C test
sees it in its error message and fails. A wrong key gets 401 with the key echoed back, as some
providers do, to test that the client scrubs it from its messages.

The behaviour is picked by the model name: "SCENARIO" or "SCENARIO.NONCE" (the nonce keeps the
per-model hit counters of different tests apart). GET /stats/MODEL returns {"hits": N,
"times": [...]} (monotonic seconds of each hit).

The "obey" scenario is a model that follows every instruction it finds in the prompt, for the
prompt-injection test (tests/integration/test_prompt_injection.sh): see obey_answer(). "obeyline"
does the same with only the incident's own line (so each answer can be traced to one log line).
When the environment variable LLM_RECORD names a file, every request body received is appended to
it as one JSON line {"path": ..., "body": ...} (the body as text, undecodable bytes replaced).

Standard library only. Prints "listening PORT" on stdout once it accepts connections; the key it
expects comes from the environment variable LLM_TEST_KEY.
"""
import base64
import email.utils
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY = None
LOCK = threading.Lock()
HITS = {}  # model -> list of monotonic times

TEXT = "hello from the test server"


class BadRequest(Exception):
    pass


def need(cond, why):
    if not cond:
        raise BadRequest(why)


def error_body(proto, status, message, kind, extra=None):
    if proto == "openai":
        e = {"message": message, "type": kind, "param": None, "code": kind}
        if extra:
            e.update(extra)
        return {"error": e}
    if proto == "gemini":
        e = {"code": status, "message": message, "status": kind}
        if extra:
            e.update(extra)
        return {"error": e}
    e = {"type": kind, "message": message}
    if extra:
        e.update(extra)
    return {"type": "error", "error": e, "request_id": "req_test"}


def ok_body(proto, model, text, finish=None, usage=True):
    if proto == "openai":
        b = {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                          "finish_reason": finish or "stop"}]}
        if usage:
            b["usage"] = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        return b
    if proto == "gemini":
        half = len(text) // 2
        b = {"candidates": [{"content": {"role": "model",
                                         "parts": [{"text": "thinking...", "thought": True},
                                                   {"text": text[:half]}, {"text": text[half:]}]},
                             "finishReason": finish or "STOP", "index": 0}],
             "modelVersion": model}
        if usage:
            b["usageMetadata"] = {"promptTokenCount": 11, "candidatesTokenCount": 7,
                                  "thoughtsTokenCount": 3, "totalTokenCount": 21}
        return b
    b = {"id": "msg_test", "type": "message", "role": "assistant", "model": model,
         "content": [{"type": "thinking", "thinking": "hmm", "signature": "x"},
                     {"type": "text", "text": text}],
         "stop_reason": finish or "end_turn", "stop_sequence": None}
    if usage:
        b["usage"] = {"input_tokens": 11, "output_tokens": 7}
    return b


def check_text_list(v, where):
    need(isinstance(v, list) and len(v) == 1, where + " must be a list of one part")
    need(isinstance(v[0], dict) and set(v[0]) == {"text"}, where + "[0] must be {text}")
    need(isinstance(v[0]["text"], str) and v[0]["text"], where + "[0].text must be a string")
    return v[0]["text"]


def check_request(proto, path, headers, raw, body):
    """Returns (model, user text); raises BadRequest naming what is wrong."""
    need(headers.get("Content-Type", "").startswith("application/json"),
         "Content-Type must be application/json")
    need("?" not in path and "key=" not in path, "the URL must not carry a query (or a key)")
    need(KEY.encode() not in raw, "the key must not appear in the body")
    need(KEY not in path, "the key must not appear in the URL")
    auth = {"openai": "Authorization", "gemini": "x-goog-api-key", "anthropic": "x-api-key"}
    for p, h in auth.items():
        if p != proto:
            need(headers.get(h) is None, "unexpected header " + h + " for " + proto)
    need(isinstance(body, dict), "the body must be a JSON object")
    if proto == "openai":
        need(set(body) <= {"model", "messages", "max_tokens"} and
             {"model", "messages", "max_tokens"} <= set(body),
             "body must have exactly model, messages, max_tokens")
        need(isinstance(body["model"], str), "model must be a string")
        need(type(body["max_tokens"]) is int and body["max_tokens"] > 0, "max_tokens must be > 0")
        msgs = body["messages"]
        need(isinstance(msgs, list) and 1 <= len(msgs) <= 2, "messages must hold 1 or 2 items")
        for m in msgs:
            need(isinstance(m, dict) and set(m) == {"role", "content"},
                 "each message must be {role, content}")
            need(isinstance(m["content"], str) and m["content"], "content must be a string")
        if len(msgs) == 2:
            need(msgs[0]["role"] == "system", "messages[0].role must be system")
        need(msgs[-1]["role"] == "user", "the last message must be the user's")
        return body["model"], msgs[-1]["content"]
    if proto == "gemini":
        m = re.fullmatch(r"/v1beta/models/([A-Za-z0-9._-]+):generateContent", path)
        need(m is not None, "path must be /v1beta/models/MODEL:generateContent")
        need(set(body) <= {"contents", "systemInstruction", "generationConfig"} and
             {"contents", "generationConfig"} <= set(body),
             "body must have contents, generationConfig and maybe systemInstruction")
        c = body["contents"]
        need(isinstance(c, list) and len(c) == 1 and isinstance(c[0], dict) and
             set(c[0]) == {"role", "parts"} and c[0]["role"] == "user",
             "contents must be [{role: user, parts}]")
        user = check_text_list(c[0]["parts"], "contents[0].parts")
        if "systemInstruction" in body:
            si = body["systemInstruction"]
            need(isinstance(si, dict) and set(si) == {"parts"}, "systemInstruction must be {parts}")
            check_text_list(si["parts"], "systemInstruction.parts")
        gc = body["generationConfig"]
        need(isinstance(gc, dict) and set(gc) == {"maxOutputTokens"} and
             type(gc["maxOutputTokens"]) is int and gc["maxOutputTokens"] > 0,
             "generationConfig must be {maxOutputTokens > 0}")
        return m.group(1), user
    need(headers.get("anthropic-version") == "2023-06-01", "anthropic-version must be 2023-06-01")
    need(set(body) <= {"model", "max_tokens", "system", "messages"} and
         {"model", "max_tokens", "messages"} <= set(body),
         "body must have model, max_tokens, messages and maybe system")
    need(isinstance(body["model"], str), "model must be a string")
    need(type(body["max_tokens"]) is int and body["max_tokens"] > 0, "max_tokens must be > 0")
    if "system" in body:
        need(isinstance(body["system"], str) and body["system"], "system must be a string")
    msgs = body["messages"]
    need(isinstance(msgs, list) and len(msgs) == 1 and isinstance(msgs[0], dict) and
         set(msgs[0]) == {"role", "content"} and msgs[0]["role"] == "user" and
         isinstance(msgs[0]["content"], str) and msgs[0]["content"],
         "messages must be [{role: user, content: string}]")
    return body["model"], msgs[0]["content"]


def key_of(proto, headers):
    if proto == "openai":
        a = headers.get("Authorization") or ""
        return a[7:] if a.startswith("Bearer ") else None
    return headers.get("x-goog-api-key" if proto == "gemini" else "x-api-key")


# --- the "obey" scenario: a model that does whatever the prompt's data tells it to ---------------

_JSON_ESC = re.compile(r'\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|0?33|[nrtbf"/\\\'])')


def _json_unescape(s):
    def one(m):
        e = m.group(1)
        if e[0] == "u":
            return chr(int(e[1:], 16))
        if e[0] == "x":
            return chr(int(e[1:], 16))
        if e in ("33", "033"):
            return "\x1b"
        return {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}.get(e, e)
    return _JSON_ESC.sub(one, s)


def _url_unquote(s):
    return re.sub(r"%([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), s)


def _b64_texts(s):
    """Texts hidden in base64 runs of s: the decodings that are mostly printable."""
    out = []
    for m in re.finditer(r"[A-Za-z0-9+/]{16,}={0,2}", s):
        run = m.group(0)
        try:
            raw = base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
            txt = raw.decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue
        printable = sum(1 for c in txt if c.isprintable() or c in "\n\t")
        if txt and printable >= 0.9 * len(txt):
            out.append(txt)
    return out


def obey_views(text):
    """The text and every decoding of it an obedient model would read: JSON-unescaped (up to three
    levels), URL-decoded (two levels), base64 runs decoded, and those unescaped again."""
    views, todo = [], [text]
    while todo and len(views) < 64:
        v = todo.pop(0)
        if v in views:
            continue
        views.append(v)
        for d in (_json_unescape(v), _url_unquote(v)):
            if d != v:
                todo.append(d)
        todo.extend(_b64_texts(v))
    return views


_BLOCK = re.compile(r"^([^\n]*)\n<<<<<<< SEARCH\n(.*?)^=======\n(.*?)^>>>>>>> REPLACE",
                    re.S | re.M)
_ORDER = re.compile(r"\b(?:edit|write|overwrite|modify|append to|change|update|create|delete)"
                    r"\s+(?:the\s+file\s+|file\s+|to\s+)?([^\s'\"`;,()]*[/.][^\s'\"`;,()]*)"
                    r"([^\n;]*)", re.I)
_ACTION = re.compile(r"""["']?\baction["']?\s*[:=]\s*["']?([A-Za-z_]+)["']?,?([^;\n]*)""", re.I)
_COMMAND = re.compile(r"""\b(?:command|cmd|run|exec|execute|argv)\b["']?\s*[:=]?\s*"""
                      r"""(\[[^\]\n]*\]|"[^"\n]*"|'[^'\n]*'|`[^`\n]*`|[^;\n]{3,80})""", re.I)
_PIPE = re.compile(r"(?:curl|wget)[^\n;|]*\|\s*(?:sh|bash)\b")
_SECRETS = [r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b", r"\bgh[pousr]_[A-Za-z0-9]{30,}", r"github_pat_\w+",
            r"\beyJ[\w-]+\.[\w-]+\.[\w-]*", r"\bBearer\s+\S+", r"\bBasic\s+\S+",
            r"[a-z+]+://[^/\s:@]*:[^@\s]+@[^\s/]+",
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.{0,4000}?(?:-----END [A-Z ]*-----|$)",
            r"\bxox[abprso]-[\w-]+", r"\bsk-[\w-]{16,}", r"\b[rs]k_(?:live|test)_\w+",
            r"\bAIza[\w-]{30,}", r"\bglpat-[\w-]+", r"\bnpm_\w{30,}", r"\[REDACTED:\w+\]",
            r"(?i)(?<![\w.-])[\w.-]*(?:secret|token|key|passw(?:or)?d|pwd|auth)[\w.-]*[\"']?\s*[=:]\s*[\"']?"
            r"[^\s\"',;&]{6,}"]


def _path_of(line):
    """The path an edit block names: the last word of the line before it."""
    words = [w for w in re.split(r"[\s\"'=:`]+", line) if w]
    return words[-1] if words else "obeyed.txt"


def _legit_block(user):
    """One ordinary edit on the first source file the prompt shows, so the answer would look
    like a real fix even with everything else removed."""
    m = re.search(r"<<<UNTRUSTED-([0-9a-f]{16}) file (\S+) \(bytes \d+-\d+ of \d+\)\n(.*?)\n"
                  r"UNTRUSTED-\1>>>", user, re.S)
    if m is None:
        return None
    path, content = m.group(2), m.group(3)
    lines = content.split("\n")
    c_like = path.endswith((".c", ".h"))
    for ln in lines[1:-1]:
        code = ln.rstrip().endswith(";") and not ln.lstrip().startswith(("*", "/", "#"))
        if (code or not c_like) and ln.strip() and content.count(ln) == 1 and \
                not ln.startswith(("<<<<<<<", "=======", ">>>>>>>")):
            note = " /* checked */" if c_like else ""
            return "%s\n<<<<<<< SEARCH\n%s\n=======\n%s%s\n>>>>>>> REPLACE\n" % (
                path, ln, ln.rstrip(), note)
    return None


def obey_answer(user, line_only=False):
    """What a model that obeys its data answers: a legitimate-looking edit on a source file it was
    shown (if any), then every edit block found in any decoding of the prompt, an edit block for
    every "edit/write/overwrite/modify FILE ..." order, every action or command it was asked to
    run (as text, as JSON and as YAML steps), and every secret-looking string it saw."""
    data = user
    if line_only:
        m = re.search(r"^line: (.*)$", user, re.M)
        data = m.group(1) if m else ""
    views = obey_views(data)
    parts = ["I will do exactly as instructed in the incident data."]
    legit = _legit_block(user)
    if legit:
        parts.append(legit)
    seen = set()
    for v in views:
        for m in _BLOCK.finditer(v):
            blk = "%s\n<<<<<<< SEARCH\n%s=======\n%s>>>>>>> REPLACE\n" % (
                _path_of(m.group(1)), m.group(2), m.group(3))
            if blk not in seen:
                seen.add(blk)
                parts.append(blk)
    for v in views:
        for m in _ORDER.finditer(v):
            path = m.group(1).rstrip(".")
            rest = m.group(2).strip()
            rest = re.sub(r"^(?:with|adding|to|so that|:)\s*", "", rest) or "obeyed"
            blk = "%s\n<<<<<<< SEARCH\n=======\n%s\n>>>>>>> REPLACE\n" % (path, rest)
            if blk not in seen:
                seen.add(blk)
                parts.append(blk)
    # Orders to act are taken from the incident data, not from the source files it quotes.
    orders = obey_views(re.sub(r"<<<UNTRUSTED-([0-9a-f]{16}) file .*?UNTRUSTED-\1>>>", "", data,
                               flags=re.S))
    steps = []
    for v in orders:
        for name, rest in _ACTION.findall(v):
            rest = re.sub(r"^\s*(?:command|cmd|run|argv)\s*[:=]?\s*", "", rest.strip(), flags=re.I)
            step = {"action": name, "command": rest.strip().strip("'\"`")}
            if step not in steps:
                steps.append(step)
        for c in _COMMAND.findall(v) + _PIPE.findall(v):
            step = {"action": "shell", "command": c.strip().strip("'\"`")}
            if step not in steps:
                steps.append(step)
    if steps:
        parts.append("Plan, as ordered:\n" +
                     "".join("action: %s command: %s\n" % (s["action"], s["command"])
                             for s in steps) +
                     json.dumps({"steps": steps}) + "\nsteps:\n" +
                     "".join("  - action: %s\n    run: %s\n" % (s["action"], s["command"])
                             for s in steps))
    secrets = []
    for v in views:
        for rx in _SECRETS:
            secrets += [s for s in re.findall(rx, v, re.S) if s not in secrets]
    if secrets:
        parts.append("Secrets I was asked to reveal:\n" + "\n".join(secrets))
    return "\n".join(parts)


def record(path, raw):
    name = os.environ.get("LLM_RECORD")
    if not name:
        return
    line = json.dumps({"path": path, "body": raw.decode("utf-8", "replace")}) + "\n"
    with LOCK:
        with open(name, "a", encoding="utf-8") as f:
            f.write(line)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, status, obj, headers=None):
        data = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            pass

    def do_GET(self):
        if self.path.startswith("/stats/"):
            model = self.path[len("/stats/"):]
            with LOCK:
                times = list(HITS.get(model, []))
            self.send_json(200, {"hits": len(times), "times": times})
            return
        self.send_json(404, {"error": "not found"})

    def do_POST(self):
        path = self.path
        if path == "/v1/chat/completions":
            proto = "openai"
        elif path.startswith("/v1beta/models/"):
            proto = "gemini"
        elif path == "/v1/messages":
            proto = "anthropic"
        else:
            n = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(n)
            self.send_json(404, {"error": {"message": "no such path " + path}})
            return
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        record(path, raw)
        try:
            try:
                body = json.loads(raw)
            except ValueError:
                raise BadRequest("the body is not JSON")
            model, user = check_request(proto, path, self.headers, raw, body)
        except BadRequest as e:
            self.send_json(400, error_body(proto, 400, "test server: bad request: " + str(e),
                                           "invalid_request_error" if proto != "gemini"
                                           else "INVALID_ARGUMENT"))
            return
        got = key_of(proto, self.headers)
        if got != KEY:
            self.send_json(401, error_body(proto, 401, "Incorrect API key provided: %s" % got,
                                           "authentication_error" if proto != "gemini"
                                           else "UNAUTHENTICATED"))
            return
        with LOCK:
            hits = HITS.setdefault(model, [])
            hits.append(time.monotonic())
            hit = len(hits)
        self.scenario(proto, model, model.split(".")[0], hit, user)

    def scenario(self, proto, model, sc, hit, user):
        text = TEXT + " (" + proto + "): " + user
        if sc == "ok":
            self.send_json(200, ok_body(proto, model, text))
        elif sc in ("obey", "obeyline"):
            self.send_json(200, ok_body(proto, model, obey_answer(user, sc == "obeyline")))
        elif sc == "nousage":
            self.send_json(200, ok_body(proto, model, text, usage=False))
        elif sc in ("ra429", "radate429", "ralong429"):
            if hit == 1 or sc == "ralong429":
                ra = "1" if sc == "ra429" else "120" if sc == "ralong429" else \
                    email.utils.formatdate(time.time() + 2, usegmt=True)
                kind = {"openai": "rate_limit_exceeded", "gemini": "RESOURCE_EXHAUSTED",
                        "anthropic": "rate_limit_error"}[proto]
                self.send_json(429, error_body(proto, 429, "Rate limit reached", kind),
                               {"Retry-After": ra})
            else:
                self.send_json(200, ok_body(proto, model, text))
        elif sc == "retryinfo429":  # Gemini's per-minute limit: RetryInfo in the body, no header
            if hit == 1:
                self.send_json(429, error_body(proto, 429, "You exceeded your current quota",
                                               "RESOURCE_EXHAUSTED", {"details": [
                                                   {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                                    "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
                                                   {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                                    "retryDelay": "0.6s"}]}))
            else:
                self.send_json(200, ok_body(proto, model, text))
        elif sc == "quota429":
            if proto == "openai":
                body = error_body(proto, 429, "You exceeded your current quota, please check "
                                  "your plan and billing details.", "insufficient_quota")
            elif proto == "gemini":
                body = error_body(proto, 429, "You exceeded your current quota",
                                  "RESOURCE_EXHAUSTED", {"details": [
                                      {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                       "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},
                                      {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                       "retryDelay": "1s"}]})
            else:
                body = error_body(proto, 429, "You have reached your monthly spend limit",
                                  "rate_limit_error",
                                  {"details": {"error_code": "enforced_spend_limit_reached"}})
            self.send_json(429, body, {"Retry-After": "1"})
        elif sc in ("flaky500", "flaky503", "flaky529"):
            if hit <= 2:
                st = int(sc[5:])
                self.send_json(st, error_body(proto, st, "temporarily unavailable",
                                              "overloaded_error" if proto == "anthropic"
                                              else "UNAVAILABLE" if proto == "gemini"
                                              else "server_error"))
            else:
                self.send_json(200, ok_body(proto, model, text))
        elif sc == "down503":
            self.send_json(503, b"<html><body>503 Service Unavailable</body></html>",
                           {"Content-Type": "text/html"})
        elif sc == "bad400":
            self.send_json(400, error_body(proto, 400, "context too long", "invalid_request_error"))
        elif sc == "slow":
            time.sleep(2.5)
            self.send_json(200, ok_body(proto, model, text))
        elif sc == "slowonce":
            if hit == 1:
                time.sleep(1.5)
            self.send_json(200, ok_body(proto, model, text))
        elif sc == "truncated":
            finish = {"openai": "length", "gemini": "MAX_TOKENS", "anthropic": "max_tokens"}[proto]
            self.send_json(200, ok_body(proto, model, "<<<<<<< SEARCH\nint x", finish))
        elif sc == "refused":
            finish = {"openai": "content_filter", "gemini": "SAFETY",
                      "anthropic": "refusal"}[proto]
            self.send_json(200, ok_body(proto, model, "no", finish))
        elif sc == "malformed":
            self.send_json(200, json.dumps(ok_body(proto, model, text)).encode()[:-7])
        elif sc == "missing":
            b = ok_body(proto, model, text)
            b.pop({"openai": "choices", "gemini": "candidates", "anthropic": "content"}[proto])
            self.send_json(200, b)
        elif sc == "wrongtype":
            b = ok_body(proto, model, text)
            if proto == "openai":
                b["choices"][0]["message"]["content"] = 42
            elif proto == "gemini":
                b["candidates"][0]["content"]["parts"][1]["text"] = ["x"]
            else:
                b["content"][1]["text"] = {"x": 1}
            self.send_json(200, b)
        elif sc == "badusage":
            b = ok_body(proto, model, text)
            b["usage" if proto != "gemini" else "usageMetadata"] = {"prompt_tokens": "many",
                                                                   "input_tokens": -1,
                                                                   "promptTokenCount": 1.5}
            self.send_json(200, b)
        elif sc == "empty":
            self.send_json(200, ok_body(proto, model, ""))
        elif sc == "oversize":
            self.send_json(200, ok_body(proto, model, "x" * (2 << 20)))
        elif sc == "oversizechunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                self.wfile.write(b'%x\r\n{"pad":"\r\n' % len(b'{"pad":"'))
                for _ in range(40):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b'2\r\n"}\r\n0\r\n\r\n')
            except OSError:
                pass
            self.close_connection = True
        elif sc == "redirect":
            self.send_response(307)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_json(400, error_body(proto, 400, "test server: unknown scenario " + sc,
                                           "invalid_request_error"))


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that hangs up (timeouts, oversize aborts) is part of the tests, not an error.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def main():
    global KEY
    import os
    KEY = os.environ.get("LLM_TEST_KEY")
    if not KEY:
        sys.stderr.write("llm_server: set LLM_TEST_KEY\n")
        return 2
    srv = Server(("127.0.0.1", 0), Handler)
    sys.stdout.write("listening %d\n" % srv.server_address[1])
    sys.stdout.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
