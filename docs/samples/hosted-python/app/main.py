"""A minimal hosted agent (Python standard library only).

It serves the container contract of docs/hosted-agents.md: GET /readiness, and POST
/responses answered with an OpenAI Responses object (or its event stream when the request
says "stream": true). It remembers how many turns its session had in $HOME, which outlives
idle stops and restarts, and stops cleanly on SIGTERM.
"""

import json
import os
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8088"))
NAME = os.environ.get("FOUNDRY_AGENT_NAME", "agent")
AGENT = f"{NAME} v{os.environ.get('FOUNDRY_AGENT_VERSION', '?')}"


def input_text(body):
    """The caller's text: "input" as a string, or the text parts of its messages."""
    value = body.get("input", "")
    if isinstance(value, str):
        return value
    parts = []
    for item in value:
        content = item.get("content", "") if isinstance(item, dict) else ""
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


def next_turn():
    """Counts this session's turns in a file of its home."""
    path = os.path.join(os.path.expanduser("~"), "turns.txt")
    try:
        with open(path) as f:
            turns = int(f.read() or "0") + 1
    except FileNotFoundError:
        turns = 1
    with open(path, "w") as f:
        f.write(str(turns))
    return turns


def response(text, status):
    message = {
        "id": "msg_" + uuid.uuid4().hex,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    return {
        "id": "resp_" + uuid.uuid4().hex,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": AGENT,
        "output": [message] if status == "completed" else [],
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, data, content_type="application/json"):
        raw = json.dumps(data).encode() if content_type == "application/json" else data
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        if self.path == "/readiness":
            self.reply(200, {"status": "ready"})
        else:
            self.reply(404, {"error": {"message": "not found"}})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/responses":
            return self.reply(404, {"error": {"message": "not found"}})
        try:
            request = json.loads(body)
        except ValueError:
            return self.reply(400, {"error": {"message": "the body is not JSON"}})
        session = self.headers.get("x-agent-session-id", "")
        said = json.dumps(input_text(request))
        text = f"{AGENT}, turn {next_turn()} of session {session}: you said {said}"
        print(f"session {session}: a turn for {self.headers.get('x-agent-user-id')}", flush=True)
        done = response(text, "completed")
        if not request.get("stream"):
            return self.reply(200, done)
        # Server-sent events, as the OpenAI Responses API streams them.
        started = {**response("", "in_progress"), "id": done["id"]}
        item = done["output"][0]
        part = {"output_index": 0, "content_index": 0, "item_id": item["id"]}
        events = [
            ("response.created", {"response": started}),
            ("response.output_item.added", {"output_index": 0, "item": {**item, "content": []}}),
            ("response.output_text.delta", {**part, "delta": text}),
            ("response.output_text.done", {**part, "text": text}),
            ("response.output_item.done", {"output_index": 0, "item": item}),
            ("response.completed", {"response": done}),
        ]
        frames = "".join(
            f"event: {name}\ndata: {json.dumps({'type': name, 'sequence_number': i, **data})}\n\n"
            for i, (name, data) in enumerate(events)
        )
        self.reply(200, frames.encode(), "text/event-stream")


server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)


def stop(signum, frame):
    print("SIGTERM: finishing the requests in flight", flush=True)
    threading.Thread(target=server.shutdown, daemon=True).start()


signal.signal(signal.SIGTERM, stop)
print(f"{AGENT} listening on port {PORT}", flush=True)
server.serve_forever()
server.server_close()
