"""One peer server as a subprocess: what to run (ServerSpec), starting it and waiting until it answers, and
stopping its whole process group so no worker outlives the row it was measured for."""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerSpec:
    engine: str
    cmd: list[str]
    env: dict[str, str]                      # set on top of this process's environment (recorded)
    port: int
    ready_path: str                          # GET returns 200 once the server takes requests
    dtype: str
    extra_body: dict = field(default_factory=dict)   # merged into every request body
    settings: dict = field(default_factory=dict)     # recorded choices (threads, KV, slots, ...)
    uuid_request_ids: bool = False                   # llama_cpp.server answers 400 to an x-request-id not a UUID


class ServerProcess:
    """One server in its own process group (vLLM forks workers), output to a log file; stop() ends the group."""

    def __init__(self, spec: ServerSpec, log_path: Path):
        self.spec, self.log_path = spec, log_path
        self.base_url = f"http://127.0.0.1:{spec.port}"
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None

    def start(self, timeout: float) -> None:
        import urllib.request

        env = dict(os.environ, **self.spec.env)
        self._log = open(self.log_path, "w")
        self._log.write("$ " + format_env(self.spec.env) + shlex.join(self.spec.cmd) + "\n")
        self._log.flush()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.spec.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        url = self.base_url + self.spec.ready_path
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.engine} server exited with status {self.proc.returncode} during "
                                   f"startup: {last_error_line(self.log_path)}\n--- last lines of "
                                   f"{self.log_path} ---\n{tail(self.log_path)}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:                                  # refused, not ready (HTTPError), timed out
                pass
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{self.spec.engine} server not ready after {timeout:.0f} s\n--- last lines of "
                                   f"{self.log_path} ---\n{tail(self.log_path)}")
            time.sleep(0.5)
        self.startup_s = time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)    # the group this Popen created (start_new_session)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.proc is not None and _group_members(self.proc.pid):
            # Workers of this server's group that outlived its leader.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if getattr(self, "_log", None) is not None:
            self._log.close()


def _group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid` (Linux /proc; empty elsewhere)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def last_error_line(path: Path) -> str:
    """The last `SomeError: ...` / `ERROR ...` line of a log (the cause of a failed startup), else its last line."""
    import re

    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    for line in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception)\b", line) or line.startswith("ERROR"):
            return line
    return lines[-1] if lines else "(empty log)"


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def format_env(env: dict[str, str]) -> str:
    return "".join(f"{k}={shlex.quote(v)} " for k, v in env.items())
