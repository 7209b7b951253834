"""Runs commands inside a session's sandbox for the host (`:exec`).

Started by the loader (loader.py, loader.mjs) when the sandbox boots, before any agent code
runs, with the only copy in the sandbox of the host's control socket (a descriptor number in
argv). Being forked from the sandbox's own process it is in the sandbox's namespaces, cgroup
and seccomp filter, as the sandbox's uid, and so is every command it starts. Its first act is to
make itself non-dumpable (or die), so the agent (same uid) cannot open its /proc files (mem,
fd) to reach the socket (ptrace is denied by the seccomp filter already); it then closes what
else it inherited and writes one byte on the ready descriptor (argv[2]): the loader runs no
agent code before that byte.

Frames, both ways: a 9-byte header (payload length u32, exec id u32, type u8, big-endian),
then the payload. Host to helper: START (JSON argv, env, cwd), STDIN (bytes), STDIN_END,
KILL, CREDIT (u32: more output bytes the host will take for this exec). Helper to host:
STARTED (JSON pid), STDOUT, STDERR (bytes), ERROR (JSON message), EXIT (JSON code, signal).
A command runs in a process group of its own; the group is killed once the command has
exited, on KILL (its output is then dropped), and when the host goes. The exit is sent once
the command's pipes have ended, or have been silent for a short grace (held open by a process
that left the group), or DRAIN_MAX after the exit (one that left the group and keeps
writing), or a short grace after a KILL.
"""

import ctypes
import os
import sys

CONTROL_FD = int(sys.argv[1])
# Where the loader waits for one byte: this process is out of the agent's reach (the loader
# runs no agent code before it).
READY_FD = int(sys.argv[2]) if len(sys.argv) > 2 else None


def no_dump():
    """PR_SET_DUMPABLE 0: /proc/<this pid> becomes root's, out of the agent's reach. Fails closed."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        if prctl(4, 0, 0, 0, 0) != 0 or prctl(3, 0, 0, 0, 0) != 0:  # SET, then GET_DUMPABLE
            os._exit(1)
    except (OSError, AttributeError):
        os._exit(1)


def close_strays():
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in (CONTROL_FD, READY_FD):
            try:
                os.close(fd)
            except OSError:
                pass


# First of all, before the imports below take their time: until then the agent's loader waits.
no_dump()
close_strays()
if READY_FD is not None:
    os.write(READY_FD, b"1")
    os.close(READY_FD)

import json  # noqa: E402
import queue  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

START, STDIN, STDIN_END, KILL, CREDIT = 1, 2, 3, 4, 5
STARTED, STDOUT, STDERR, ERROR, EXIT = 10, 11, 12, 13, 14
HEADER = struct.Struct(">IIB")
MAX_PAYLOAD = 256 * 1024
CHUNK = 64 * 1024
# Output the host takes before its first CREDIT (it grants as its client reads).
WINDOW = 256 * 1024
# After the command exits, how long its pipes may stay silent (a background child holding
# them), and how long in all they are drained (a child that left the group and keeps writing;
# or a host that takes them slowly). After a KILL from the host, DRAIN_GRACE in all.
DRAIN_GRACE = 0.5
DRAIN_MAX = 5.0
MAX_EXECS = 16

control = socket.socket(fileno=CONTROL_FD)
control.set_inheritable(False)
control.setblocking(True)
send_lock = threading.Lock()


def send(exec_id, kind, payload=b""):
    with send_lock:
        try:
            control.sendall(HEADER.pack(len(payload), exec_id, kind) + payload)
        except OSError:
            os._exit(0)  # the host is gone: so is everything this helper runs


def send_json(exec_id, kind, value):
    send(exec_id, kind, json.dumps(value).encode())


class Exec:
    def __init__(self, exec_id, spec):
        self.id = exec_id
        self.credit = WINDOW
        self.cond = threading.Condition()
        self.done = False
        # Killed by the host: output is read and dropped (nobody takes it any more).
        self.killed = False
        self.killed_at = None
        # When a reader last got output or waited for credit (a draining pipe, not a stuck one).
        self.progress = time.monotonic()
        self.stdin = queue.Queue()
        self.proc = subprocess.Popen(
            [str(a) for a in spec["argv"]],
            cwd=spec["cwd"],
            env={str(k): str(v) for k, v in spec["env"].items()},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
        execs[exec_id] = self
        send_json(exec_id, STARTED, {"pid": self.proc.pid})
        self.readers = [
            threading.Thread(target=self.read, args=(self.proc.stdout, STDOUT), daemon=True),
            threading.Thread(target=self.read, args=(self.proc.stderr, STDERR), daemon=True),
        ]
        threads = [
            *self.readers,
            threading.Thread(target=self.write_stdin, daemon=True),
            threading.Thread(target=self.wait, daemon=True),
        ]
        try:
            for t in threads:
                t.start()
        except RuntimeError:
            # No thread to be had (the session's pids limit): the command goes at once.
            self.kill(by_host=True)
            with self.cond:
                self.done = True
                self.cond.notify_all()
            self.proc.wait()
            execs.pop(exec_id, None)
            raise OSError(0, "no thread could be started for it (the session's pids limit)")

    def read(self, pipe, kind):
        fd = pipe.fileno()
        while True:
            with self.cond:
                while self.credit <= 0 and not self.done and not self.killed:
                    self.progress = time.monotonic()
                    self.cond.wait(DRAIN_GRACE / 2)
                if self.done:
                    return
            try:
                data = os.read(fd, CHUNK)
            except OSError:
                return
            if not data:
                return
            with self.cond:
                self.progress = time.monotonic()
                if self.done:
                    return
                if self.killed:
                    continue
                self.credit -= len(data)
            send(self.id, kind, data)

    def write_stdin(self):
        pipe = self.proc.stdin
        try:
            while True:
                data = self.stdin.get()
                if data is None:
                    break
                pipe.write(data)
                pipe.flush()
        except (OSError, ValueError):
            pass  # the command closed its stdin, or ended
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    def grant(self, n):
        with self.cond:
            self.credit += n
            self.cond.notify_all()

    def kill(self, by_host=False):
        if by_host:
            with self.cond:
                self.killed = True
                if self.killed_at is None:
                    self.killed_at = time.monotonic()
                self.cond.notify_all()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass

    def wait(self):
        code = self.proc.wait()
        # What the command left behind in its group goes with it; its pipes then drain to
        # their end, however slowly the host takes them, unless a process that left the group
        # keeps them open without writing.
        self.kill()
        exited = time.monotonic()
        while any(t.is_alive() for t in self.readers):
            for t in self.readers:
                t.join(0.05)
            now = time.monotonic()
            if now - self.progress > DRAIN_GRACE or now - exited > DRAIN_MAX:
                break
            if self.killed_at is not None and now - self.killed_at > DRAIN_GRACE:
                break
        with self.cond:
            self.done = True
            self.cond.notify_all()
        self.stdin.put(None)
        execs.pop(self.id, None)
        if code < 0:
            send_json(self.id, EXIT, {"code": None, "signal": signal.Signals(-code).name})
        else:
            send_json(self.id, EXIT, {"code": code, "signal": None})


execs = {}


def start(exec_id, payload):
    if exec_id in execs or len(execs) >= MAX_EXECS:
        send_json(exec_id, ERROR, {"message": "too many commands at once"})
        send_json(exec_id, EXIT, {"code": 126, "signal": None})
        return
    try:
        Exec(exec_id, json.loads(payload))
    except (OSError, ValueError, KeyError, TypeError) as err:
        message = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        name = getattr(err, "filename", None)
        send_json(exec_id, ERROR, {"message": f"{message}: {name}" if name else message})
        code = 127 if isinstance(err, FileNotFoundError) else 126
        send_json(exec_id, EXIT, {"code": code, "signal": None})


def read_exact(n):
    data = b""
    while len(data) < n:
        chunk = control.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def main():
    while True:
        header = read_exact(HEADER.size)
        if header is None:
            break
        length, exec_id, kind = HEADER.unpack(header)
        if length > MAX_PAYLOAD:
            break
        payload = read_exact(length) if length else b""
        if payload is None:
            break
        if kind == START:
            start(exec_id, payload)
            continue
        e = execs.get(exec_id)
        if e is None:
            continue
        if kind == STDIN:
            e.stdin.put(payload)
        elif kind == STDIN_END:
            e.stdin.put(None)
        elif kind == KILL:
            e.kill(by_host=True)
        elif kind == CREDIT and len(payload) == 4:
            e.grant(struct.unpack(">I", payload)[0])
    for e in list(execs.values()):
        e.kill()
    os._exit(0)


main()
