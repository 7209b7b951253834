"""Starts an agent inside its sandbox.

Started ahead of time (a warm sandbox) with the interpreter booted and the modules agents
use most already imported, it waits for one JSON line on stdin: the agent's argv, working
directory and environment. It then serves the agent's HTTP port on the listening Unix
socket the host handed it as a descriptor (the agent itself only needs to know PORT),
relays its own loopback relay port (when the host gives one) to the host's outbound socket,
and runs the entry point in this process.
"""

import json
import os
import runpy
import select
import signal
import socket
import sys
import threading

LISTENER_FD = int(sys.argv[1])
# How long the exec helper has to report that the agent cannot reach it.
READY_TIMEOUT = 5.0
# The host's control socket for commands run in this sandbox (`:exec`), when it gives one.
EXEC_FD = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--exec-fd=")), None)


def close_strays():
    """Closes every inheritable descriptor but stdio and the listener: nothing else is ours."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd in (LISTENER_FD, EXEC_FD):
            continue
        try:
            if os.get_inheritable(fd):
                os.close(fd)
        except OSError:
            pass  # the listing's own descriptor, closed by now


close_strays()


def start_exec_helper():
    """Forks the exec helper before any agent code runs; this process keeps no copy of its socket."""
    if EXEC_FD is None:
        return
    helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exec_helper.py")
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.close(LISTENER_FD)
            os.close(ready_r)
            os.set_inheritable(ready_w, True)
            argv = [sys.executable, "-I", "-S", helper, str(EXEC_FD), str(ready_w)]
            os.execv(sys.executable, argv)
        finally:
            os._exit(127)
    os.close(EXEC_FD)
    os.close(ready_w)
    # Until the helper says it is non-dumpable (and holds no stray descriptor), the agent's
    # code could open its /proc/<pid>/mem: none of it runs before. No word in time: no helper.
    ready, _, _ = select.select([ready_r], [], [], READY_TIMEOUT)
    if not ready or os.read(ready_r, 1) != b"1":
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(ready_r)


start_exec_helper()

if "--preload" in sys.argv:
    # A warm sandbox has time to spare: import what agents use most, so that the agent's
    # own imports of it cost nothing once it is launched.
    import asyncio  # noqa: F401
    import dataclasses  # noqa: F401
    import datetime  # noqa: F401
    import http.server  # noqa: F401
    import logging  # noqa: F401
    import secrets  # noqa: F401
    import socketserver  # noqa: F401
    import typing  # noqa: F401
    import urllib.request  # noqa: F401
    import uuid  # noqa: F401


def relay(a, b):
    """Copies bytes both ways between two sockets until both sides are done."""

    def pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    other = threading.Thread(target=pump, args=(b, a), daemon=True)
    other.start()
    pump(a, b)
    other.join()
    a.close()
    b.close()


def forward(listener, port):
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", port))
        except OSError:
            client.close()  # the agent is not listening yet
            continue
        threading.Thread(target=relay, args=(client, upstream), daemon=True).start()


def relay_out(listener, socket_path):
    """Relays each connection to the sandbox's relay port to the host's outbound socket."""
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(socket_path)
        except OSError:
            upstream.close()
            client.close()  # the host refused it (too many connections, or shutting down)
            continue
        threading.Thread(target=relay, args=(client, upstream), daemon=True).start()


def main():
    spec = json.loads(sys.stdin.readline())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.environ.clear()
    os.environ.update(spec["env"])
    os.chdir(spec["cwd"])
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    for extra in spec.get("path", []):
        sys.path.insert(0, extra)

    listener = socket.socket(fileno=LISTENER_FD)
    listener.set_inheritable(False)
    listener.setblocking(True)  # the host's end of the description was non-blocking
    port = int(spec["env"].get("PORT", "8088"))
    threading.Thread(target=forward, args=(listener, port), daemon=True).start()

    if spec.get("relay"):
        outbound = socket.create_server(("127.0.0.1", int(spec["relay"]["port"])))
        relay_args = (outbound, spec["relay"]["socket"])
        threading.Thread(target=relay_out, args=relay_args, daemon=True).start()

    argv = spec["argv"]
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")


main()
